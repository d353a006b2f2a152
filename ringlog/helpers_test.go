package ringlog

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// openTest opens a log in a fresh directory and, at cleanup, closes it and
// runs bbolt's consistency check on the file.
func openTest(t testing.TB, o *Options) (*Log, string) {
	t.Helper()
	dir := t.TempDir()
	l := mustOpen(t, dir, o)
	t.Cleanup(func() {
		l.Close()
		checkConsistent(t, dir)
	})
	return l, dir
}

func mustOpen(t testing.TB, dir string, o *Options) *Log {
	t.Helper()
	l, err := Open(dir, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

// checkConsistent runs bbolt's own page-level check, and the log's own
// invariants: the meta counters equal a recount of the records, and the
// id sidecar is never below ring.db's reservation.
func checkConsistent(t testing.TB, dir string) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, "ring.db"), 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Errorf("consistency: open: %v", err)
		return
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		for e := range tx.Check() {
			return e
		}
		return nil
	})
	if err != nil {
		t.Errorf("consistency check: %v", err)
	}
	var reserved uint64
	err = db.View(func(tx *bolt.Tx) error {
		var n, bytes int64
		err := tx.Bucket(bucketRecords).ForEach(func(k, v []byte) error {
			n++
			bytes += int64(len(v)) + recordOverhead
			return nil
		})
		meta := tx.Bucket(bucketMeta)
		if c, b := getInt(meta, keyCount), getInt(meta, keyBytes); c != n || b != bytes {
			t.Errorf("meta counters drifted: count %d bytes %d, recount %d records of %d bytes", c, b, n, bytes)
		}
		reserved = uint64(getInt(meta, keyReserved))
		return err
	})
	if err != nil {
		t.Errorf("recount: %v", err)
	}
	if side, ok, err := readIDs(dir); err != nil || !ok || side < reserved {
		t.Errorf("id sidecar %d (present %v, %v) below ring.db's reservation %d", side, ok, err, reserved)
	}
}

func rec(topic string, v int) Record {
	return Record{Topic: topic, Kind: KindJSON, Value: []byte(fmt.Sprint(v)), Unit: "u"}
}

func appendN(t testing.TB, l *Log, n int, topic string) []uint64 {
	t.Helper()
	seqs := make([]uint64, 0, n)
	for i := range n {
		s, err := l.Append(rec(topic, i))
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
		seqs = append(seqs, s)
	}
	return seqs
}

func readAll(t testing.TB, l *Log, after uint64) []Record {
	t.Helper()
	var out []Record
	for {
		got, err := l.ReadAfter(nil, after, 777)
		if err != nil {
			t.Fatalf("ReadAfter: %v", err)
		}
		if len(got) == 0 {
			return out
		}
		out = append(out, got...)
		after = got[len(got)-1].Seq
	}
}

func assertIncreasing(t testing.TB, recs []Record) {
	t.Helper()
	for i := 1; i < len(recs); i++ {
		if recs[i].Seq <= recs[i-1].Seq {
			t.Fatalf("seq %d follows %d", recs[i].Seq, recs[i-1].Seq)
		}
	}
}

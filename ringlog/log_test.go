package ringlog

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestAppendReadOrder(t *testing.T) {
	l, _ := openTest(t, &Options{MemRecords: 64})
	seqs := appendN(t, l, 1000, "a/b")
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("seqs not contiguous within a run: %d then %d", seqs[i-1], seqs[i])
		}
	}
	// Visible before any commit.
	got := readAll(t, l, 0)
	if len(got) != 1000 || got[0].Seq != seqs[0] || got[999].Seq != seqs[999] {
		t.Fatalf("read %d records before commit, want 1000", len(got))
	}
	if err := l.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Now mostly from disk (MemRecords is 64).
	got = readAll(t, l, 0)
	if len(got) != 1000 {
		t.Fatalf("read %d records after commit, want 1000", len(got))
	}
	assertIncreasing(t, got)
	for i, r := range got {
		if string(r.Value) != strings.TrimSpace(string(rec("a/b", i).Value)) || r.Topic != "a/b" || r.Unit != "u" || r.Kind != KindJSON {
			t.Fatalf("record %d = %+v", i, r)
		}
	}
	// Resume from every position in the middle.
	for _, after := range []uint64{seqs[0] - 1, seqs[0], seqs[500], seqs[998], seqs[999]} {
		got := readAll(t, l, after)
		if want := int(seqs[999] - after); len(got) != want {
			t.Errorf("after %d: %d records, want %d", after, len(got), want)
		}
		if len(got) > 0 && got[0].Seq != after+1 {
			t.Errorf("after %d: first seq %d", after, got[0].Seq)
		}
	}
}

func TestAppendValidates(t *testing.T) {
	l, _ := openTest(t, nil)
	bad := []Record{
		{Topic: "", Kind: KindJSON, Value: []byte("1")},
		{Topic: strings.Repeat("x", MaxTopicLen+1), Kind: KindJSON},
		{Topic: "a", Kind: 0},
		{Topic: "a", Kind: KindText, Unit: strings.Repeat("u", MaxUnitLen+1)},
		{Topic: "a", Kind: KindBinary, Value: make([]byte, MaxValueLen+1)},
	}
	for _, r := range bad {
		if _, err := l.Append(r); err == nil {
			t.Errorf("Append(%.40q) accepted", r.Topic)
		}
	}
	if l.LastSeq() != 0 {
		t.Errorf("refused records consumed ids: LastSeq %d", l.LastSeq())
	}
}

func TestRestartContinuesAboveIssued(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, &Options{ReserveBlock: 100})
	seqs := appendN(t, l, 250, "t")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, dir, &Options{ReserveBlock: 100})
	defer l.Close()
	s, err := l.Append(rec("t", 0))
	if err != nil {
		t.Fatal(err)
	}
	if s <= seqs[len(seqs)-1] {
		t.Fatalf("after restart got seq %d, last issued before was %d", s, seqs[len(seqs)-1])
	}
	got := readAll(t, l, 0)
	if len(got) != 251 {
		t.Fatalf("got %d records after restart, want 251", len(got))
	}
	assertIncreasing(t, got)
	// Latest survives the restart.
	latest := l.Latest()
	if len(latest) != 1 || latest[0].Seq != s {
		t.Fatalf("Latest after restart = %+v", latest)
	}
}

func TestTrimBySize(t *testing.T) {
	const maxBytes = 1 << 20
	l, dir := openTest(t, &Options{MaxBytes: maxBytes, SyncInterval: time.Millisecond})
	val := strings.Repeat("v", 100)
	for i := range 40000 { // ~6 MiB of records through a 1 MiB log
		if _, err := l.Append(Record{Topic: "trim/size", Kind: KindText, Value: []byte(val)}); err != nil {
			t.Fatal(err)
		}
		if i%5000 == 0 {
			if err := l.Sync(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := l.Stats()
	if st.Bytes > maxBytes {
		t.Errorf("stored %d bytes, bound %d", st.Bytes, maxBytes)
	}
	if st.Trimmed == 0 || st.OldestSeq <= 1 {
		t.Errorf("nothing trimmed: %+v", st)
	}
	got := readAll(t, l, 0)
	if int64(len(got)) != st.Records || got[0].Seq != st.OldestSeq {
		t.Errorf("read %d records from %d; stats say %d from %d", len(got), got[0].Seq, st.Records, st.OldestSeq)
	}
	fi, err := os.Stat(filepath.Join(dir, "ring.db"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > maxBytes*13/10 {
		t.Errorf("file is %d bytes, over 1.3x max_bytes %d", fi.Size(), maxBytes)
	}
	// Resume from a trimmed id starts at the oldest record.
	after := st.OldestSeq - 10
	first, err := l.ReadAfter(nil, after, 1)
	if err != nil || len(first) != 1 || first[0].Seq != st.OldestSeq {
		t.Errorf("ReadAfter(trimmed %d) = %v, %v; want oldest %d", after, first, err, st.OldestSeq)
	}
}

func TestTrimByAge(t *testing.T) {
	now := time.Now() // any date: the log's clock is this test's
	clock := func() time.Time { return now }
	l, _ := openTest(t, &Options{MaxAge: time.Hour, Now: clock, SyncInterval: time.Millisecond})
	old := rec("age", 1)
	old.Time = now.Add(-2 * time.Hour)
	if _, err := l.Append(old); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 10, "age")
	if err := l.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, l, 0)
	if len(got) != 10 {
		t.Fatalf("%d records after age trim, want 10", len(got))
	}
	// Time passes with no appends: the idle writer still trims.
	now = now.Add(2 * time.Hour)
	deadline := time.Now().Add(10 * time.Second)
	for l.Stats().Records != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := l.Stats().Records; n != 0 {
		t.Fatalf("%d records left after they all aged out", n)
	}
}

func TestLatestAndHistory(t *testing.T) {
	l, _ := openTest(t, &Options{MemRecords: 16})
	// 300 minutes ending now: inside MaxAge on any date, since the age
	// trim follows the real clock.
	base := time.Now().Add(-300 * time.Minute)
	for i := range 300 {
		topic := []string{"s/pump1/pressure", "s/pump2/pressure", "s/pump1/temp"}[i%3]
		r := rec(topic, i)
		r.Time = base.Add(time.Duration(i) * time.Minute)
		if _, err := l.Append(r); err != nil {
			t.Fatal(err)
		}
		if i == 150 {
			if err := l.Sync(context.Background()); err != nil { // half on disk, half in memory
				t.Fatal(err)
			}
		}
	}
	latest := l.Latest()
	if len(latest) != 3 || latest[0].Topic != "s/pump1/pressure" || string(latest[1].Value) != "299" {
		t.Fatalf("Latest = %+v", latest)
	}
	var got []Record
	q := Query{Match: func(s string) bool { return strings.HasSuffix(s, "/pressure") }, Since: base.Add(100 * time.Minute), Limit: 1000}
	err := l.History(context.Background(), q, func(r Record) error { got = append(got, r); return nil })
	if err != nil {
		t.Fatal(err)
	}
	// minutes 100..299 that are pressure: i%3 != 2
	want := 0
	for i := 100; i < 300; i++ {
		if i%3 != 2 {
			want++
		}
	}
	if len(got) != want {
		t.Fatalf("history: %d records, want %d", len(got), want)
	}
	assertIncreasing(t, got)
	if got[0].Time.Before(q.Since) || strings.HasSuffix(got[0].Topic, "temp") {
		t.Errorf("history returned %+v", got[0])
	}
	got = got[:0]
	q = Query{FromSeq: 10, Limit: 5}
	if err := l.History(context.Background(), q, func(r Record) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 || got[0].Seq != 10 {
		t.Errorf("FromSeq 10 limit 5 gave %d records starting %d", len(got), got[0].Seq)
	}
}

func TestNotify(t *testing.T) {
	l, _ := openTest(t, nil)
	ch := l.Notify()
	select {
	case <-ch:
		t.Fatal("notified before any append")
	default:
	}
	appendN(t, l, 1, "n")
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no notification after append")
	}
}

func TestCorruptFileMovedAside(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ring.db")
	if err := os.WriteFile(path, []byte(strings.Repeat("not a bolt file ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	l := mustOpen(t, dir, nil)
	defer l.Close()
	if l.Stats().CorruptMovedAside != 1 {
		t.Errorf("CorruptMovedAside = %d", l.Stats().CorruptMovedAside)
	}
	matches, _ := filepath.Glob(path + ".corrupt-*")
	if len(matches) != 1 {
		t.Fatalf("corrupt file not moved aside: %v", matches)
	}
	if b, _ := os.ReadFile(matches[0]); !strings.HasPrefix(string(b), "not a bolt file") {
		t.Errorf("moved file was altered")
	}
	appendN(t, l, 3, "fresh")
	if len(readAll(t, l, 0)) != 3 {
		t.Errorf("fresh log not usable")
	}
}

func TestFormatVersionRefused(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, nil)
	appendN(t, l, 1, "x")
	l.Close()
	db, err := bolt.Open(filepath.Join(dir, "ring.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyFormat, []byte("99")) })
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir, nil)
	if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "99") {
		t.Fatalf("Open of a format-99 log: %v, want ErrFormat naming the version", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "ring.db")); err != nil {
		t.Errorf("a newer-format log must be left in place: %v", err)
	}
}

func TestLockedByAnother(t *testing.T) {
	l, dir := openTest(t, nil)
	_ = l
	_, err := Open(dir, nil)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
}

func TestCloseUnblocks(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, nil)
	appendN(t, l, 10, "c")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(rec("c", 1)); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: %v", err)
	}
	if err := l.WaitDurable(context.Background(), 1<<40); !errors.Is(err, ErrClosed) {
		t.Errorf("WaitDurable after Close: %v", err)
	}
	// Close flushed everything.
	l = mustOpen(t, dir, nil)
	defer l.Close()
	if n := len(readAll(t, l, 0)); n != 10 {
		t.Errorf("%d records after reopen, want 10", n)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	r := rec("sensors/x", 42)
	f.Add(appendRecord(nil, &r))
	f.Add([]byte{1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRecord(7, b)
		if err != nil {
			return
		}
		// A decoded record re-encodes to the same bytes.
		if got := appendRecord(nil, &r); string(got) != string(b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", got, b)
		}
	})
}

// TestMemBytesBound: large values are kept in memory only up to
// MemBytes once committed, however many MemRecords allows; the evicted
// ones are read back from disk.
func TestMemBytesBound(t *testing.T) {
	const n, size, budget = 200, 4 << 10, 64 << 10
	l, _ := openTest(t, &Options{MemRecords: 1024, MemBytes: budget})
	value := []byte(strings.Repeat("v", size))
	for range n {
		if _, err := l.Append(Record{Topic: "big", Kind: KindText, Value: value}); err != nil {
			t.Fatal(err)
		}
	}
	l.mu.Lock()
	before := l.mem.len()
	l.mu.Unlock()
	if before != n {
		t.Fatalf("%d records in memory before the commit, want all %d (uncommitted ones stay)", before, n)
	}
	if err := l.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	kept, bytes := l.mem.len(), l.mem.bytes
	l.mu.Unlock()
	if bytes > budget || kept >= n || kept == 0 {
		t.Errorf("after the commit: %d records, %d bytes in memory; want some, at most %d bytes", kept, bytes, budget)
	}
	got := readAll(t, l, 0)
	if len(got) != n || string(got[0].Value) != string(value) {
		t.Fatalf("read %d records after the commit, want %d with their values", len(got), n)
	}
}

package ringlog

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Benchmarks write 100-byte values under 50-byte topics, as the issue
// specifies; each has its baseline beside it in the same run (the *Raw*
// benchmarks: plain bbolt, one transaction per 1,000 records).
// BENCHMARKS.md says how the figures were produced.

var (
	benchValue = []byte(strings.Repeat("v", 100))
	benchTopic = "site-0001/building-07/floor-3/pump-12/pressure-xx" // 50 bytes
)

func benchRecord(i int) Record {
	return Record{Topic: benchTopic[:46] + fmt.Sprintf("%04d", i%100), Kind: KindText, Value: benchValue}
}

// BenchmarkAppend: ring log appends with sync_interval=100ms, including the
// final commit, so the figure is the durable rate.
func BenchmarkAppend(b *testing.B) {
	l, _ := openTest(b, &Options{SyncInterval: 100 * time.Millisecond})
	b.ResetTimer()
	for i := range b.N {
		if _, err := l.Append(benchRecord(i)); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkAppendRaw is the baseline: bbolt, one transaction per 1,000
// records, the same encoding.
func BenchmarkAppendRaw(b *testing.B) {
	db := openRaw(b)
	b.ResetTimer()
	for i := 0; i < b.N; i += 1000 {
		err := db.Update(func(tx *bolt.Tx) error {
			bk := tx.Bucket(bucketRecords)
			bk.FillPercent = 1.0
			for j := i; j < min(i+1000, b.N); j++ {
				r := benchRecord(j)
				r.Time = time.Now()
				if err := bk.Put(seqKey(uint64(j+1)), appendRecord(nil, &r)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func openRaw(b *testing.B) *bolt.DB {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "raw.db"), 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket(bucketRecords); return err }); err != nil {
		b.Fatal(err)
	}
	return db
}

const readN = 200_000

// BenchmarkResume: decoded records per second read with ReadAfter from the
// start of a committed log (what a resuming client costs).
func BenchmarkResume(b *testing.B) {
	l, _ := openTest(b, &Options{MemRecords: 1024})
	for i := range readN {
		if _, err := l.Append(benchRecord(i)); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	n := 0
	buf := make([]Record, 0, 1024)
	for n < b.N {
		var err error
		after := uint64(0)
		for {
			buf, err = l.ReadAfter(buf[:0], after, 1024)
			if err != nil {
				b.Fatal(err)
			}
			if len(buf) == 0 {
				break
			}
			n += len(buf)
			after = buf[len(buf)-1].Seq
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkResumeRaw is the baseline: a bbolt cursor over the same
// records, undecoded.
func BenchmarkResumeRaw(b *testing.B) {
	db := openRaw(b)
	err := db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketRecords)
		bk.FillPercent = 1.0
		for i := range readN {
			r := benchRecord(i)
			if err := bk.Put(seqKey(uint64(i+1)), appendRecord(nil, &r)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	n, sum := 0, 0
	for n < b.N {
		_ = db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketRecords).Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				sum += len(v)
				n++
			}
			return nil
		})
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkHistoryTopic: History for one topic out of 100 over a committed
// log; records/s counts the records scanned.
func BenchmarkHistoryTopic(b *testing.B) {
	l, _ := openTest(b, &Options{MemRecords: 1024})
	for i := range readN {
		if _, err := l.Append(benchRecord(i)); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
	want := benchRecord(7).Topic
	b.ResetTimer()
	scanned, matched := 0, 0
	for scanned < b.N {
		q := Query{Match: func(s string) bool { return s == want }, Limit: readN}
		err := l.History(context.Background(), q, func(Record) error { matched++; return nil })
		if err != nil {
			b.Fatal(err)
		}
		scanned += readN
	}
	if matched != scanned/100 {
		b.Fatalf("matched %d of %d", matched, scanned)
	}
	b.ReportMetric(float64(scanned)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkChurnFileSize writes 10x max_bytes through a 32 MiB log and
// reports the file size as a multiple of max_bytes (target: under 1.3).
func BenchmarkChurnFileSize(b *testing.B) {
	const maxBytes = 32 << 20
	for range b.N {
		l, _ := openTest(b, &Options{MaxBytes: maxBytes})
		per := int64(len(benchValue) + len(benchTopic) + 12 + recordOverhead)
		total := 10 * maxBytes / per
		for i := range total {
			if _, err := l.Append(benchRecord(int(i))); err != nil {
				b.Fatal(err)
			}
		}
		if err := l.Sync(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(l.Stats().FileBytes)/maxBytes, "file/max_bytes")
		l.Close()
	}
}

// BenchmarkWriteAmplification appends 1,000 records/s for 10 s and
// reports bytes written to disk (/proc/self/io write_bytes) per byte of
// record appended: per payload byte (topic and value) and per stored byte
// (the encoded record and its key). It runs with the default sync interval
// (100ms) and, for comparison, with 1s. Run it with -benchtime=1x; set
// EDDY_BENCH_DIR to a directory on the disk to measure (the default
// temporary directory may be on tmpfs).
func BenchmarkWriteAmplification(b *testing.B) {
	for _, sync := range []time.Duration{100 * time.Millisecond, time.Second} {
		b.Run("sync="+sync.String(), func(b *testing.B) { writeAmplification(b, sync) })
	}
}

func writeAmplification(b *testing.B, sync time.Duration) {
	dir := os.Getenv("EDDY_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	} else {
		var err error
		if dir, err = os.MkdirTemp(dir, "wa-"); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
	}
	l := mustOpen(b, dir, &Options{SyncInterval: sync})
	defer l.Close()
	for range b.N {
		before := procWriteBytes(b)
		var recBytes, encBytes int64
		tick := time.NewTicker(time.Millisecond)
		for i := range 10_000 {
			<-tick.C
			r := benchRecord(i)
			recBytes += int64(len(r.Topic) + len(r.Value))
			r.Time = time.Now()
			encBytes += int64(8 + encodedLen(&r))
			if _, err := l.Append(r); err != nil {
				b.Fatal(err)
			}
		}
		tick.Stop()
		if err := l.Sync(context.Background()); err != nil {
			b.Fatal(err)
		}
		written := procWriteBytes(b) - before
		b.ReportMetric(float64(written)/float64(recBytes), "disk/payload-byte")
		b.ReportMetric(float64(written)/float64(encBytes), "disk/stored-byte")
	}
}

func procWriteBytes(b *testing.B) int64 {
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	b.Fatal("no write_bytes in /proc/self/io")
	return 0
}

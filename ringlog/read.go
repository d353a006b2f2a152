package ringlog

import (
	"context"
	"math"
	"os"
	"time"
	"unsafe"

	bolt "go.etcd.io/bbolt"
)

// readChunk is how many records one read transaction visits at most, so
// that no reader pins pages or holds the mmap lock for long; memVisit how
// many in-memory records a reader visits per hold of the log's lock.
const (
	readChunk = 1024
	memVisit  = 256
)

// ReadAfter appends to dst up to max records with seq > after, oldest
// first, and returns the extended slice. Records below Oldest() are gone:
// a reader that asks for them gets the oldest ones there are, and can tell
// what it missed by comparing the first seq returned with after+1. The
// returned records' Value must not be modified.
func (l *Log) ReadAfter(dst []Record, after uint64, limit int) ([]Record, error) {
	return l.scan(dst, after, limit, nil)
}

// keep decides from a stored record's raw fields whether a scan returns
// it; nil keeps everything.
type keep func(topic string, nanos int64) bool

func (l *Log) scan(dst []Record, after uint64, limit int, k keep) ([]Record, error) {
	for len(dst) < limit {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return dst, ErrClosed
		}
		memStart, memEnd := l.mem.start, l.mem.end()
		if l.mem.len() > 0 && after+1 >= memStart {
			// At most memVisit records per hold of the lock: a sparse
			// filter must not stall appends while it looks.
			stop := min(memEnd, after+1+memVisit)
			seq := after + 1
			for ; seq < stop && len(dst) < limit; seq++ {
				r := l.mem.at(seq).rec
				if k == nil || k(r.Topic, r.Time.UnixNano()) {
					dst = append(dst, r)
				}
			}
			l.mu.Unlock()
			if seq >= memEnd || len(dst) >= limit {
				return dst, nil
			}
			after = seq - 1
			continue
		}
		empty := l.mem.len() == 0
		l.mu.Unlock()

		// Every record below memStart was committed before we looked, so
		// a read transaction begun now sees all of them.
		var visited int
		var err error
		dst, after, visited, err = l.readDisk(dst, after, limit, k)
		if err != nil {
			return dst, err
		}
		if visited == 0 {
			if empty || after+1 >= memStart {
				return dst, nil
			}
			after = memStart - 1 // a hole: lost in a crash, or trimmed
		}
	}
	return dst, nil
}

// readDisk reads one chunk after 'after' from bbolt. It returns how many
// stored records it visited (kept or not) and the last seq visited.
func (l *Log) readDisk(dst []Record, after uint64, limit int, k keep) ([]Record, uint64, int, error) {
	visited := 0
	err := l.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRecords).Cursor()
		var slab []byte
		intern := map[string]string{}
		for key, v := c.Seek(seqKeyArr(after + 1)); key != nil && visited < readChunk && len(dst) < limit; key, v = c.Next() {
			visited++
			after = keySeq(key)
			view, err := decodeView(v)
			if err != nil {
				continue // counted at open; a bad record is skipped, not fatal
			}
			// The view aliases the mmap; the topic string is only borrowed
			// for the duration of the keep call.
			if k != nil && !k(unsafe.String(unsafe.SliceData(view.topic), len(view.topic)), view.nanos) {
				continue
			}
			if len(slab)+len(view.value) > cap(slab) {
				slab = make([]byte, 0, max(32<<10, len(view.value)))
			}
			off := len(slab)
			slab = append(slab, view.value...)
			topic := internString(intern, view.topic)
			dst = append(dst, Record{
				Seq:   after,
				Time:  time.Unix(0, view.nanos).UTC(),
				Topic: topic,
				Kind:  view.kind,
				Value: slab[off:len(slab):len(slab)],
				Unit:  internString(intern, view.unit),
			})
		}
		return nil
	})
	return dst, after, visited, err
}

// internString returns one string per distinct topic or unit in a chunk,
// so that reading a chunk allocates per distinct string, not per record.
func internString(m map[string]string, b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if s, ok := m[string(b)]; ok {
		return s
	}
	s := string(b)
	m[s] = s
	return s
}

func seqKeyArr(seq uint64) []byte {
	var k [8]byte
	putSeq(k[:], seq)
	return k[:]
}

// Query selects records for History.
type Query struct {
	Match   func(topic string) bool // nil: every topic
	FromSeq uint64                  // first seq to consider; 0: the oldest
	Since   time.Time               // skip records observed before; zero: no bound
	Limit   int                     // at most this many; must be > 0
}

// History calls fn with the records matching q, oldest first, reading the
// log in short chunks. It stops early when fn returns an error or ctx ends.
func (l *Log) History(ctx context.Context, q Query, fn func(Record) error) error {
	after := uint64(0)
	if q.FromSeq > 0 {
		after = q.FromSeq - 1
	}
	var since int64
	if !q.Since.IsZero() {
		since = unixNano(q.Since)
		after = max(after, l.seekTime(since))
	}
	k := func(topic string, nanos int64) bool {
		return nanos >= since && (q.Match == nil || q.Match(topic))
	}
	var buf []Record
	for sent := 0; sent < q.Limit; {
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		buf, err = l.scan(buf[:0], after, min(readChunk, q.Limit-sent), k)
		if err != nil {
			return err
		}
		if len(buf) == 0 {
			return nil
		}
		for _, r := range buf {
			if err := fn(r); err != nil {
				return err
			}
		}
		sent += len(buf)
		after = buf[len(buf)-1].Seq
	}
	return nil
}

// unixNano is t.UnixNano clamped to what it can represent (1678 to 2262),
// instead of overflowing.
func unixNano(t time.Time) int64 {
	switch {
	case t.Before(time.Unix(0, math.MinInt64)):
		return math.MinInt64
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// timeSlack allows for records observed slightly out of order when
// History binary-searches by time.
const timeSlack = time.Minute

// seekTime returns a seq after which every record observed at or after
// nanos (minus timeSlack) lies, by binary search over the stored keys.
func (l *Log) seekTime(nanos int64) uint64 {
	target := nanos - int64(timeSlack)
	if target > nanos { // overflowed below MinInt64
		target = math.MinInt64
	}
	lo, hi := l.Oldest(), l.LastSeq()+1
	_ = l.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRecords).Cursor()
		for lo < hi {
			mid := lo + (hi-lo)/2
			k, v := c.Seek(seqKeyArr(mid))
			if k == nil {
				hi = mid
				break
			}
			if len(v) >= 10 && int64(be64(v[2:10])) < target {
				lo = keySeq(k) + 1
			} else {
				hi = mid
			}
		}
		return nil
	})
	if lo == 0 {
		return 0
	}
	return lo - 1
}

// Stats is a snapshot of the log's counters.
type Stats struct {
	Appended          uint64 // records appended since Open
	AppendErrors      uint64 // appends that returned ErrNotDurable
	Commits           uint64
	CommitErrors      uint64
	Trimmed           uint64 // records deleted by the size or age bound
	Lost              uint64 // records given up while the disk failed
	DiskFull          uint64 // commits that failed for want of space
	ReserveWaits      uint64 // times an append waited for the writer to reserve ids
	NoIDs             uint64 // appends refused with ErrNoIDs (the disk kept failing)
	CorruptRecords    uint64 // undecodable records skipped at open
	CorruptMovedAside uint64 // corrupt files moved aside at open
	Records           int64  // records stored in the file
	Bytes             int64  // bytes those records account for
	FileBytes         int64  // size of ring.db
	Pending           uint64 // records appended but not yet committed
	OldestSeq         uint64
	LastSeq           uint64
	DurableSeq        uint64
	OldestTime        time.Time // zero when empty
}

// Stats returns the current counters.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	s := l.stats
	s.Records, s.Bytes = l.count, l.stored
	s.OldestSeq, s.LastSeq, s.DurableSeq = l.oldestLocked(), l.last, l.committed
	s.Pending = l.next - 1 - l.committed
	if l.oldestTime != 0 {
		s.OldestTime = time.Unix(0, l.oldestTime).UTC()
	}
	l.mu.Unlock()
	if fi, err := os.Stat(l.path); err == nil {
		s.FileBytes = fi.Size()
	}
	return s
}

package ringlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Errors callers act on.
var (
	// ErrClosed is returned by operations on a closed Log.
	ErrClosed = errors.New("ringlog: closed")
	// ErrNotDurable is wrapped by Append's error when the last commit failed
	// (disk full, I/O error): the record was accepted and is visible to
	// readers, but it is not on disk yet and may be lost.
	ErrNotDurable = errors.New("ringlog: not durable")
	// ErrFormat is returned by Open for a ring.db written in a format this
	// version cannot read.
	ErrFormat = errors.New("ringlog: unsupported format version")
	// ErrLocked is returned by Open when another process holds ring.db.
	ErrLocked = errors.New("ringlog: ring.db is locked by another process")
	// ErrNoIDs is returned by Append when no durable id reservation is
	// left, which happens only after about ReserveBlock/2 appends with every
	// commit failing: the record is refused rather than given an id that a
	// crash could reuse.
	ErrNoIDs = errors.New("ringlog: no durable id reservation (the disk is failing)")
)

// Options tunes a Log. The zero value of each field means its default.
type Options struct {
	MaxBytes     int64         // bound on stored record bytes; default 256 MiB
	MaxAge       time.Duration // records older than this are trimmed; default 168h
	SyncInterval time.Duration // group-commit period; default 100ms
	// MaxBatch commits early once this many records are pending; default 65536.
	MaxBatch int
	// MemRecords is how many recent records stay in memory for readers;
	// default 16384. Uncommitted records are always in memory.
	MemRecords int
	// MemBytes bounds the bytes of those committed records (values,
	// topics and about 128 bytes each); default 16 MiB.
	MemBytes int64
	// MaxPendingBytes bounds the uncommitted records held while the disk
	// fails; beyond it the oldest pending records are dropped from
	// durability (still delivered live). Default 32 MiB.
	MaxPendingBytes int64
	// ReserveBlock is how many ids are reserved durably ahead of use; a
	// crash leaves at most this many unused. Default 1<<20.
	ReserveBlock uint64
	// OnCommit, when set, is called by the writer after every commit
	// attempt (for metrics); it must not block.
	OnCommit func(records int, took time.Duration, err error)
	Logger   *slog.Logger     // default: discard
	Now      func() time.Time // default: time.Now
}

func (o *Options) withDefaults() Options {
	r := *o
	if r.MaxBytes <= 0 {
		r.MaxBytes = 256 << 20
	}
	if r.MaxAge <= 0 {
		r.MaxAge = 168 * time.Hour
	}
	if r.SyncInterval <= 0 {
		r.SyncInterval = 100 * time.Millisecond
	}
	if r.MaxBatch <= 0 {
		r.MaxBatch = 65536
	}
	if r.MemRecords <= 0 {
		r.MemRecords = 16384
	}
	if r.MemBytes <= 0 {
		r.MemBytes = 16 << 20
	}
	if r.MaxPendingBytes <= 0 {
		r.MaxPendingBytes = 32 << 20
	}
	if r.ReserveBlock == 0 {
		r.ReserveBlock = 1 << 20
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	return r
}

var (
	bucketRecords = []byte("records")
	bucketMeta    = []byte("meta")
	keyFormat     = []byte("format")
	keyReserved   = []byte("reserved")
	keyBytes      = []byte("bytes")
	keyCount      = []byte("count")
	keyLast       = []byte("last")  // highest seq appended, as of the last commit
	keyEpoch      = []byte("epoch") // random id of this file's numbering
)

// recordOverhead approximates bbolt's per-element cost (leaf element header
// and key) that the size bound counts beside the encoded value.
const recordOverhead = 16 + 8

// budgetFraction of MaxBytes is what records may occupy; the rest is room
// for bbolt's page slack, branch pages and freed pages awaiting reuse.
const budgetFraction = 0.8

// entry is one record in memory, with its encoding for the writer.
type entry struct {
	rec Record
	enc []byte // encoded value; rec.Value aliases its tail
}

// Log is an open ring log. All methods are safe for concurrent use.
type Log struct {
	db   *bolt.DB
	path string
	opt  Options
	log  *slog.Logger

	wake    chan struct{} // tells the writer a batch is large; cap 1
	closing chan struct{}
	done    chan struct{} // closed when the writer has ended
	once    sync.Once

	epoch string // random id of this ring.db's numbering; set by Open
	// failWrites, when set (by tests), is asked before each transaction
	// of n records and fails it with its error, as an I/O error, a full
	// disk or a read-only filesystem would.
	failWrites atomic.Pointer[func(n int) error]
	beat       atomic.Int64 // unix nanoseconds when the writer's loop last turned
	floor      uint64       // ids at or below it may have been issued by an earlier ring.db
	// The id sidecar's state; Open's, then the writer goroutine's.
	sidecar       uint64 // the reservation ring.ids holds
	sidecarFailed bool   // the last write of it failed (logged once)

	mu         sync.Mutex // protects everything below
	stopping   bool       // Close has begun: Append refuses
	closed     bool       // the writer has ended and the file is closed
	last       uint64     // highest seq appended (or, in a fresh file, the floor)
	next       uint64     // seq the next Append assigns; none at or above it was ever issued
	reserved   uint64     // highest seq durably reserved; Append never passes it
	committed  uint64     // highest seq whose commit finished (durable, or lost below)
	lostLo     uint64     // last range of seqs dropped from durability (disk failing)
	lostHi     uint64
	mem        ring   // recent records, including every uncommitted one
	oldest     uint64 // oldest seq stored (0: none)
	oldestTime int64  // its observation time, unix nanoseconds
	latest     map[string]Record
	notify     chan struct{} // closed by the next Append; nil when nobody waits
	durable    chan struct{} // closed by the next commit; nil when nobody waits
	writeErr   error         // last commit's error, nil after a success
	pendBytes  int64         // encoded bytes appended but not committed
	budget     int64         // current bound on stored bytes (shrinks on disk full)
	makeRoom   bool          // the disk was full: trim before the next write
	diskFullAt time.Time     // when a commit last failed for want of space
	reservedCh chan struct{} // closed when the reservation grows; nil when nobody waits
	stored     int64         // bytes stored in the file (persisted counter)
	count      int64         // records stored in the file (persisted counter)
	stats      Stats
}

// Open opens or creates <dir>/ring.db.
func Open(dir string, opts *Options) (*Log, error) {
	if opts == nil {
		opts = &Options{}
	}
	o := opts.withDefaults()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("ringlog: open %s: %w", dir, err)
	}
	l := &Log{
		path:    filepath.Join(dir, "ring.db"),
		opt:     o,
		log:     o.Logger,
		wake:    make(chan struct{}, 1),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
		latest:  map[string]Record{},
		budget:  int64(float64(o.MaxBytes) * budgetFraction),
	}
	l.mem.init(o.MemRecords, o.MemBytes)
	if err := l.openDB(); err != nil {
		return nil, err
	}
	go l.writer()
	return l, nil
}

func (l *Log) boltOptions() *bolt.Options {
	mmap := l.opt.MaxBytes * 3 / 2
	if ^uint(0)>>32 == 0 && mmap > 1<<30 {
		mmap = 1 << 30 // 32-bit: keep address space for the rest of the process
	}
	return &bolt.Options{
		Timeout:         time.Second,
		NoFreelistSync:  true, // rebuilt at open; saves a write per commit (SD wear)
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: int(mmap),
	}
}

// openDB opens the file, moving it aside when it is unreadable, and sets
// the id floor so that a fresh file numbers above every id issued before.
func (l *Log) openDB() error {
	dir := filepath.Dir(l.path)
	floor, haveFloor, ferr := readIDs(dir)
	if ferr != nil {
		l.log.Warn("ring log id sidecar unreadable; relying on ring.db", "err", ferr)
	}
	l.floor = floor
	err := l.tryOpen()
	if err == nil || errors.Is(err, ErrLocked) || errors.Is(err, ErrFormat) {
		return err
	}
	if _, statErr := os.Stat(l.path); statErr != nil {
		return err // nothing to move aside: the directory itself is unusable
	}
	aside := l.path + ".corrupt-" + l.opt.Now().UTC().Format("20060102T150405.000Z")
	l.log.Error("ring log is corrupt or unreadable; moving it aside and starting a fresh log",
		"path", l.path, "moved_to", aside, "err", err)
	if rerr := os.Rename(l.path, aside); rerr != nil {
		return fmt.Errorf("ringlog: move corrupt %s aside: %w (after %v)", l.path, rerr, err)
	}
	l.stats.CorruptMovedAside++
	if n, merr := readMovedMeta(aside); merr == nil {
		floor, haveFloor = max(floor, n), true
	} else {
		l.log.Warn("cannot read the ids of the moved ring.db", "path", aside, "err", merr)
	}
	if !haveFloor {
		floor = clockFloor(l.opt.Now())
		l.log.Warn("no record of the ids issued before; numbering from a clock-derived floor", "floor", floor)
	}
	l.floor = floor
	return l.tryOpen()
}

func (l *Log) tryOpen() (err error) {
	db, err := bolt.Open(l.path, 0o600, l.boltOptions())
	if errors.Is(err, bolt.ErrTimeout) {
		return fmt.Errorf("%w: %s", ErrLocked, l.path)
	}
	if err != nil {
		return fmt.Errorf("ringlog: open %s: %w", l.path, err)
	}
	// bbolt grows the file by AllocSize (16 MiB) at a time, and to the
	// whole mapping while that is below AllocSize: scale it to the bound so
	// that a small log's file stays near its bound.
	db.AllocSize = int(min(max(l.opt.MaxBytes/32, 64<<10), 16<<20))
	defer func() {
		// bbolt panics on some corrupt pages; treat that as an unreadable file.
		if p := recover(); p != nil {
			err = fmt.Errorf("ringlog: read %s: %v", l.path, p)
		}
		if err != nil {
			db.Close()
		}
	}()
	if err := l.load(db); err != nil {
		return err
	}
	l.db = db
	return nil
}

// load reads the meta, rebuilds the latest-per-topic map and durably
// reserves the first id range of this run.
func (l *Log) load(db *bolt.DB) error {
	var lastKey uint64
	err := db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		recs, err := tx.CreateBucketIfNotExists(bucketRecords)
		if err != nil {
			return err
		}
		if v := meta.Get(keyFormat); v != nil && string(v) != strconv.Itoa(formatVersion) {
			return fmt.Errorf("%w: %s has format %q, this eddy reads %d; run the eddy that wrote it, or move the file away",
				ErrFormat, l.path, v, formatVersion)
		}
		l.stored, l.count = getInt(meta, keyBytes), getInt(meta, keyCount)
		reserved := uint64(getInt(meta, keyReserved))
		if k, _ := recs.Cursor().Last(); k != nil {
			lastKey = keySeq(k)
		}
		if k, v := recs.Cursor().First(); k != nil {
			l.oldest = keySeq(k)
			if len(v) >= 10 {
				l.oldestTime = int64(be64(v[2:10]))
			}
		}
		l.last = max(uint64(getInt(meta, keyLast)), lastKey)
		if reserved == 0 && l.last == 0 {
			// A new file: its numbering starts above the floor, as if
			// every id up to it had been issued and trimmed.
			l.last = l.floor
		}
		l.next = max(reserved, l.last, l.floor) + 1
		l.reserved = l.next - 1 + l.opt.ReserveBlock
		l.committed = l.next - 1
		l.mem.start = l.next
		if e := meta.Get(keyEpoch); len(e) > 0 {
			l.epoch = string(e)
		} else {
			l.epoch = newEpoch()
			l.log.Info("ring log numbering starts a new epoch", "epoch", l.epoch, "first_seq", l.next)
		}
		if err := l.saveReservation(l.reserved); err != nil {
			// Not fatal: ring.db's own reservation still covers a restart;
			// only the loss of ring.db itself would need the sidecar.
			l.log.Warn("ring log: cannot record the id reservation beside ring.db", "err", err)
		}
		for _, kv := range [][2][]byte{
			{keyFormat, []byte(strconv.Itoa(formatVersion))},
			{keyEpoch, []byte(l.epoch)},
			{keyReserved, strconv.AppendUint(nil, l.reserved, 10)},
			{keyLast, strconv.AppendUint(nil, l.last, 10)},
		} {
			if err := meta.Put(kv[0], kv[1]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrFormat) {
			return err
		}
		return fmt.Errorf("ringlog: load %s: %w", l.path, err)
	}
	return l.rebuildLatest(db, lastKey)
}

// saveReservation writes the id sidecar before a reservation up to
// reserved is used, unless it holds that already (a commit that keeps
// failing retries the same reservation).
func (l *Log) saveReservation(reserved uint64) error {
	if reserved == l.sidecar {
		return nil
	}
	if err := writeIDs(filepath.Dir(l.path), reserved); err != nil {
		return err
	}
	l.sidecar = reserved
	return nil
}

// rebuildLatest scans the log in chunks to find each topic's latest record.
func (l *Log) rebuildLatest(db *bolt.DB, last uint64) error {
	newest := map[string]uint64{}
	after := uint64(0)
	for {
		n := 0
		err := db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketRecords).Cursor()
			for k, v := c.Seek(seqKey(after + 1)); k != nil && n < readChunk; k, v = c.Next() {
				after = keySeq(k)
				n++
				view, err := decodeView(v)
				if err != nil {
					l.stats.CorruptRecords++
					continue
				}
				newest[string(view.topic)] = after
			}
			return nil
		})
		if err != nil {
			return err
		}
		if n < readChunk || after >= last {
			break
		}
	}
	return db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRecords)
		for _, seq := range newest {
			if r, err := DecodeRecord(seq, b.Get(seqKey(seq))); err == nil {
				l.latest[r.Topic] = r
			}
		}
		return nil
	})
}

// Append adds r to the log and returns its seq. r.Seq is ignored; a zero
// r.Time is set to now. The record is visible to readers when Append
// returns. A non-nil error with a non-zero seq wraps ErrNotDurable: the
// record is live but the disk is failing. Append never waits for the
// disk: when the durable id reservation runs out (only after about
// ReserveBlock/2 appends with every commit failing) it refuses the record
// with ErrNoIDs.
func (l *Log) Append(r Record) (uint64, error) {
	if err := checkRecord(&r); err != nil {
		return 0, err
	}
	if r.Time.IsZero() {
		r.Time = l.opt.Now()
	}
	enc := appendRecord(make([]byte, 0, encodedLen(&r)), &r)
	r.Value = enc[len(enc)-len(r.Value):]

	l.mu.Lock()
	if l.stopping {
		l.mu.Unlock()
		return 0, ErrClosed
	}
	if l.next > l.reserved && !l.waitReservation() {
		l.stats.NoIDs++
		l.mu.Unlock()
		return 0, ErrNoIDs
	}
	r.Seq = l.next
	l.last = r.Seq
	l.next++
	l.mem.push(entry{rec: r, enc: enc}, l.committed)
	l.latest[r.Topic] = r
	l.pendBytes += int64(len(enc))
	l.stats.Appended++
	if l.notify != nil {
		close(l.notify)
		l.notify = nil
	}
	if l.next-1-l.committed >= uint64(l.opt.MaxBatch) || l.next+l.opt.ReserveBlock/2 > l.reserved {
		l.signalWriter()
	}
	err := l.writeErr
	if err != nil {
		l.stats.AppendErrors++
	}
	l.mu.Unlock()
	if err != nil {
		return r.Seq, fmt.Errorf("%w: %v", ErrNotDurable, err)
	}
	return r.Seq, nil
}

// reserveWait bounds how long Append waits for a healthy writer to extend
// the id reservation; it never waits while commits are failing.
const reserveWait = time.Second

// waitReservation waits, with l.mu held, until ids are reserved again. It
// gives up at once while commits fail, and after reserveWait otherwise.
func (l *Log) waitReservation() bool {
	deadline := time.Now().Add(reserveWait)
	for l.next > l.reserved && !l.stopping && l.writeErr == nil && time.Now().Before(deadline) {
		l.stats.ReserveWaits++
		if l.reservedCh == nil {
			l.reservedCh = make(chan struct{})
		}
		ch := l.reservedCh
		l.signalWriter()
		l.mu.Unlock()
		select {
		case <-ch:
		case <-time.After(time.Until(deadline)):
		}
		l.mu.Lock()
	}
	return l.next <= l.reserved && !l.stopping
}

func checkRecord(r *Record) error {
	switch {
	case r.Topic == "" || len(r.Topic) > MaxTopicLen:
		return fmt.Errorf("ringlog: append: topic length %d is not 1 to %d", len(r.Topic), MaxTopicLen)
	case len(r.Unit) > MaxUnitLen:
		return fmt.Errorf("ringlog: append: unit longer than %d bytes", MaxUnitLen)
	case len(r.Value) > MaxValueLen:
		return fmt.Errorf("ringlog: append: value of %d bytes exceeds %d", len(r.Value), MaxValueLen)
	case r.Kind < KindJSON || r.Kind > KindBinary:
		return fmt.Errorf("ringlog: append: invalid kind %d", r.Kind)
	}
	return nil
}

// signalWriter asks the writer to commit now. Callers hold l.mu or not; it
// never blocks.
func (l *Log) signalWriter() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Notify returns a channel that is closed by the next Append. Take it
// before reading, then wait on it when the read found nothing new.
func (l *Log) Notify() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.notify == nil {
		l.notify = make(chan struct{})
	}
	return l.notify
}

// LastSeq is the highest seq appended to this file (0 when none ever
// was; in a file started over an earlier one's ids, that file's floor).
// Live fan-out starts above it. After a crash, ids between it and
// NextSeq may have been issued and lost.
func (l *Log) LastSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

// NextSeq is the seq the next Append assigns. Every id below it may have
// been issued; none at or above it ever was, by this file or any earlier
// ring.db in its directory.
func (l *Log) NextSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.next
}

// Epoch is a random id created with this ring.db: it names one numbering
// of seqs. A new file (after a lost or corrupt one) has a new epoch, and
// numbers above every seq of the earlier ones.
func (l *Log) Epoch() string { return l.epoch }

// Oldest is the lowest seq still stored; records below it were trimmed or
// lost. It is LastSeq()+1 when the log is empty.
func (l *Log) Oldest() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.oldestLocked()
}

func (l *Log) oldestLocked() uint64 {
	if l.oldest != 0 {
		return l.oldest
	}
	if l.mem.len() > 0 {
		return l.mem.start
	}
	return l.last + 1
}

// DurableSeq is the highest seq whose commit has finished: every record up
// to it is on disk, except those given up while the disk failed (counted
// in Stats.Lost; WaitDurable reports them as not durable).
func (l *Log) DurableSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.committed
}

// WaitDurable blocks until seq is on disk, the context ends or the log
// closes. It returns an error wrapping ErrNotDurable when seq was dropped
// from the pending records while the disk kept failing.
func (l *Log) WaitDurable(ctx context.Context, seq uint64) error {
	for {
		l.mu.Lock()
		if seq >= l.lostLo && seq <= l.lostHi {
			l.mu.Unlock()
			return fmt.Errorf("%w: seq %d was dropped while the disk failed", ErrNotDurable, seq)
		}
		if l.committed >= seq {
			l.mu.Unlock()
			return nil
		}
		if l.closed {
			l.mu.Unlock()
			return ErrClosed
		}
		if l.durable == nil {
			l.durable = make(chan struct{})
		}
		ch := l.durable
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Sync commits everything appended so far and waits for it to be durable.
func (l *Log) Sync(ctx context.Context) error {
	seq := l.LastSeq()
	l.signalWriter()
	return l.WaitDurable(ctx, seq)
}

// Err is the last commit's error, nil when the last commit succeeded: a
// non-nil Err means the log is not writable at the moment.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.writeErr
}

// Latest returns the latest record of every topic, sorted by topic.
func (l *Log) Latest() []Record {
	l.mu.Lock()
	out := make([]Record, 0, len(l.latest))
	for _, r := range l.latest {
		out = append(out, r)
	}
	l.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Topic < out[j].Topic })
	return out
}

// Close refuses further appends, commits what is pending, gives back the
// unused id reservation (so a clean restart continues at LastSeq()+1),
// stops the writer and closes the file. WaitDurable calls for records
// that did not become durable return ErrClosed.
func (l *Log) Close() error {
	var err error
	l.once.Do(func() {
		l.mu.Lock()
		l.stopping = true
		l.mu.Unlock()
		close(l.closing)
		<-l.done
		l.mu.Lock()
		l.closed = true
		if l.durable != nil {
			close(l.durable)
			l.durable = nil
		}
		werr := l.writeErr
		l.mu.Unlock()
		err = l.db.Close()
		if err == nil && werr != nil {
			err = fmt.Errorf("ringlog: close with records not durable: %w", werr)
		}
	})
	return err
}

// Beat is when the writer goroutine's loop last turned: at least
// every SyncInterval while it is healthy, and also while commits fail (a
// full disk). A writer stuck in a commit (a hung disk) stops it.
func (l *Log) Beat() time.Time { return time.Unix(0, l.beat.Load()) }

// Path is the ring.db file's path.
func (l *Log) Path() string { return l.path }

func getInt(b *bolt.Bucket, k []byte) int64 {
	v := b.Get(k)
	if v == nil {
		return 0
	}
	n, _ := strconv.ParseInt(string(v), 10, 64)
	return n
}

func putInt(b *bolt.Bucket, k []byte, n int64) error {
	return b.Put(k, strconv.AppendInt(nil, n, 10))
}

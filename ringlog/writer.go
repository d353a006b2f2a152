package ringlog

import (
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// pendingRec is what the writer needs of a record.
type pendingRec struct {
	seq uint64
	enc []byte
}

// commitResult is the state a successful transaction leaves.
type commitResult struct {
	stored, count int64
	oldest        uint64
	oldestTime    int64
	trimmed       int64
}

// writer is the single goroutine that commits to bbolt. It is owned by the
// Log and ends when Close closes l.closing, after a final commit.
func (l *Log) writer() {
	defer close(l.done)
	t := time.NewTicker(l.opt.SyncInterval)
	defer t.Stop()
	var batch []pendingRec
	for {
		l.beat.Store(time.Now().UnixNano())
		select {
		case <-t.C:
		case <-l.wake:
		case <-l.closing:
			for more := true; more; {
				batch, more = l.commit(batch[:0])
			}
			l.giveBack()
			return
		}
		for more := true; more; {
			batch, more = l.commit(batch[:0])
		}
	}
}

// commit writes the records appended since the last commit, trims, and
// extends the id reservation when it runs low. One transaction writes at
// most an eighth of the size budget, because the pages it frees are reused
// only by later transactions: bigger ones would grow the file past the
// bound. It returns batch for reuse, and whether a successful commit left
// records pending.
func (l *Log) commit(batch []pendingRec) ([]pendingRec, bool) {
	l.mu.Lock()
	from, to := l.committed+1, l.next-1
	limit := max(l.budget/8, 64<<10)
	var size int64
	for seq := from; seq <= to; seq++ {
		e := l.mem.at(seq)
		if size += int64(len(e.enc)) + recordOverhead; size > limit && seq > from {
			to = seq - 1
			break
		}
		batch = append(batch, pendingRec{seq: seq, enc: e.enc})
	}
	more := to < l.next-1
	reserve := l.reserved
	if l.next+l.opt.ReserveBlock/2 > l.reserved {
		reserve = l.next - 1 + l.opt.ReserveBlock
	}
	now := l.opt.Now()
	cutoff := now.Add(-l.opt.MaxAge).UnixNano()
	ageDue := l.oldest != 0 && l.oldestTime < cutoff
	in := commitResult{stored: l.stored, count: l.count, oldest: l.oldest, oldestTime: l.oldestTime}
	budget := l.budget

	makeRoom := l.makeRoom
	l.makeRoom = false
	l.mu.Unlock()

	if len(batch) == 0 && reserve == l.reserved && !ageDue {
		return batch, false
	}
	if reserve != l.reserved {
		l.recordReservation(reserve)
	}
	start := time.Now()
	var res commitResult
	var err error
	if makeRoom {
		// The disk is full: a transaction that only deletes frees pages
		// that the next one, which adds, can reuse without growing the file.
		// Its result is stored at once: the add may still fail.
		if res, err = l.write(nil, 0, l.reserved, budget, cutoff, in); err == nil {
			l.applyWrite(res, l.reserved)
			in, in.trimmed = res, 0
		}
	}
	if err == nil {
		res, err = l.write(batch, to, reserve, budget, cutoff, in)
	}
	took := time.Since(start)
	if l.opt.OnCommit != nil {
		l.opt.OnCommit(len(batch), took, err)
	}
	if err != nil {
		// Records cannot be stored; ids must keep flowing (Append never
		// waits), so extend the reservation alone when it runs low: a
		// transaction that writes three small keys may still fit.
		if reserve != l.reserved {
			if res, rerr := l.write(nil, 0, reserve, budget, cutoff, in); rerr == nil {
				l.applyWrite(res, reserve)
			}
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		defer clear(batch)
		l.commitFailed(err, from, l.next-1)
		return batch, false
	}
	l.applyWrite(res, reserve)
	l.restoreBudget()

	l.mu.Lock()
	defer l.mu.Unlock()
	// The batch is kept for reuse, not its values: they are the records'
	// own, and memory holds committed ones only up to MemBytes. (Pending
	// ones stay in l.mem for the next try.)
	defer clear(batch)
	var bytes int64
	for _, p := range batch {
		bytes += int64(len(p.enc))
	}
	l.pendBytes -= bytes
	if to >= from {
		l.committed = to
	}
	l.writeErr = nil
	l.stats.Commits++
	if l.oldest != 0 {
		l.mem.evictBelow(min(l.oldest, l.committed+1))
	}
	l.mem.trim(l.committed)
	l.mem.shrink(l.committed)
	if l.durable != nil {
		close(l.durable)
		l.durable = nil
	}
	return batch, more
}

// applyWrite stores what a successful transaction left in the file: the
// counters, the oldest record and the reservation.
func (l *Log) applyWrite(res commitResult, reserve uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if reserve > l.reserved {
		l.reserved = reserve
		if l.reservedCh != nil {
			close(l.reservedCh)
			l.reservedCh = nil
		}
	}
	l.stored, l.count, l.oldest, l.oldestTime = res.stored, res.count, res.oldest, res.oldestTime
	l.stats.Trimmed += uint64(res.trimmed)
	if l.oldest != 0 {
		l.mem.evictBelow(min(l.oldest, l.committed+1))
	}
}

// recordReservation writes the id sidecar before a reservation is used.
// A failure is logged once until the next success: ring.db's own
// reservation still covers restarts.
func (l *Log) recordReservation(reserve uint64) {
	err := l.saveReservation(reserve)
	if err != nil && !l.sidecarFailed {
		l.log.Warn("ring log: cannot record the id reservation beside ring.db", "err", err)
	}
	l.sidecarFailed = err != nil
}

// giveBack returns the unused id reservation when the log closes cleanly,
// so that the next Open continues at LastSeq()+1 with no hole. It lowers
// ring.db's reservation before the sidecar's: the sidecar must never be
// below it.
func (l *Log) giveBack() {
	l.mu.Lock()
	next, reserved, committed, werr := l.next, l.reserved, l.committed, l.writeErr
	l.mu.Unlock()
	if werr != nil || committed != next-1 || reserved == next-1 {
		return // records not durable: keep every id above them reserved
	}
	err := l.db.Update(func(tx *bolt.Tx) error {
		return putInt(tx.Bucket(bucketMeta), keyReserved, int64(next-1))
	})
	if err == nil {
		err = l.saveReservation(next - 1)
	}
	if err != nil {
		l.log.Warn("ring log: could not give back the unused ids; the next start skips them", "err", err)
		return
	}
	l.mu.Lock()
	l.reserved = next - 1
	l.mu.Unlock()
}

// budgetProbe is how long after a full disk the log waits before it
// checks whether space has returned.
const budgetProbe = time.Minute

// restoreBudget raises the size bound back to MaxBytes once a full disk
// has room again, so the log does not stay at its emergency size until a
// restart. The writer calls it after a successful commit; it asks the
// filesystem at most once a budgetProbe, without holding l.mu.
func (l *Log) restoreBudget() {
	full := int64(float64(l.opt.MaxBytes) * budgetFraction)
	l.mu.Lock()
	due := l.budget < full && l.opt.Now().Sub(l.diskFullAt) >= budgetProbe
	if due {
		l.diskFullAt = l.opt.Now() // probe at most once a period
	}
	missing := full - l.budget
	l.mu.Unlock()
	if !due {
		return
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(l.path), &st); err != nil {
		return
	}
	if free := int64(st.Bavail) * int64(st.Bsize); free > 2*missing { // Bsize is int32 on linux/arm
		l.log.Info("ring log: disk space is back; restoring the size bound", "bytes", full)
		l.mu.Lock()
		l.budget = full
		l.mu.Unlock()
	}
}

// commitFailed keeps the batch pending for the next try. On a full disk it
// lowers the size bound so that trimming frees pages for reuse; when the
// pending records outgrow MaxPendingBytes the oldest are given up (they
// were delivered live, but will not be on disk).
func (l *Log) commitFailed(err error, from, to uint64) {
	if l.writeErr == nil {
		l.log.Error("ring log commit failed; records stay in memory and live, retrying",
			"err", err, "pending_records", to-from+1)
	}
	l.writeErr = err
	l.stats.CommitErrors++
	if isDiskFull(err) {
		// Make room for what is pending (and some) by trimming the oldest
		// records; the lower bound stays until restart.
		floor := int64(64 << 10)
		l.budget = max(floor, min(l.budget, l.stored-2*l.pendBytes))
		l.makeRoom = true
		l.diskFullAt = l.opt.Now()
		l.stats.DiskFull++
	}
	for seq := from; seq <= to && l.pendBytes > l.opt.MaxPendingBytes; seq++ {
		l.pendBytes -= int64(len(l.mem.at(seq).enc))
		if l.lostHi+1 != seq {
			l.lostLo = seq
		}
		l.lostHi = seq
		l.committed = seq
		l.stats.Lost++
	}
	if l.durable != nil {
		close(l.durable) // wake waiters on lost records
		l.durable = nil
	}
}

func isDiskFull(err error) bool {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EFBIG) || errors.Is(err, syscall.EDQUOT) {
		return true
	}
	// bbolt formats some I/O errors with %s ("file resize error: ..."),
	// which drops the errno: match its text too.
	msg := err.Error()
	for _, e := range []syscall.Errno{syscall.ENOSPC, syscall.EFBIG, syscall.EDQUOT} {
		if strings.Contains(msg, e.Error()) {
			return true
		}
	}
	return false
}

// write runs one bbolt transaction: put the batch, trim the oldest records
// past the size budget or the age cutoff, and persist the counters and the
// reservation alongside.
// last is the batch's highest seq (0 with no batch).
func (l *Log) write(batch []pendingRec, last, reserve uint64, budget, cutoff int64, res commitResult) (commitResult, error) {
	if f := l.failWrites.Load(); f != nil {
		if err := (*f)(len(batch)); err != nil {
			return res, err
		}
	}
	keys := make([]byte, 8*len(batch)) // bbolt holds keys until commit
	err := l.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRecords)
		b.FillPercent = 1.0 // sequential keys: pack leaves full
		for i, p := range batch {
			k := keys[8*i : 8*i+8 : 8*i+8]
			putSeq(k, p.seq)
			if err := b.Put(k, p.enc); err != nil {
				return err
			}
			res.stored += int64(len(p.enc)) + recordOverhead
			res.count++
		}
		if err := trim(b, budget, cutoff, &res); err != nil {
			return err
		}
		meta := tx.Bucket(bucketMeta)
		for _, kv := range []struct {
			k []byte
			v int64
		}{{keyReserved, int64(reserve)}, {keyBytes, res.stored}, {keyCount, res.count}} {
			if err := putInt(meta, kv.k, kv.v); err != nil {
				return err
			}
		}
		if last != 0 {
			return putInt(meta, keyLast, int64(last))
		}
		return nil
	})
	return res, err
}

// trim deletes the oldest records while the log is over budget or they are
// older than cutoff, and records the new oldest seq and time in res.
func trim(b *bolt.Bucket, budget, cutoff int64, res *commitResult) error {
	c := b.Cursor()
	k, v := c.First()
	for ; k != nil; k, v = c.First() {
		ts := int64(0)
		if len(v) >= 10 {
			ts = int64(be64(v[2:10]))
		}
		if res.stored <= budget && ts >= cutoff {
			res.oldest, res.oldestTime = keySeq(k), ts
			return nil
		}
		if err := c.Delete(); err != nil {
			return err
		}
		res.stored -= int64(len(v)) + recordOverhead
		res.count--
		res.trimmed++
	}
	res.oldest, res.oldestTime, res.stored, res.count = 0, 0, 0, 0
	return nil
}

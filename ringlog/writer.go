package ringlog

import (
	"errors"
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
		select {
		case <-t.C:
		case <-l.wake:
		case <-l.closing:
			l.commit(batch[:0])
			return
		}
		batch = l.commit(batch[:0])
	}
}

// commit writes every record appended since the last commit, trims, and
// extends the id reservation when it runs low. It returns batch for reuse.
func (l *Log) commit(batch []pendingRec) []pendingRec {
	l.mu.Lock()
	from, to := l.committed+1, l.next-1
	for seq := from; seq <= to; seq++ {
		batch = append(batch, pendingRec{seq: seq, enc: l.mem.at(seq).enc})
	}
	reserve := l.reserved
	if l.next+l.opt.ReserveBlock/2 > l.reserved {
		reserve = l.next - 1 + l.opt.ReserveBlock
	}
	now := l.opt.Now()
	cutoff := now.Add(-l.opt.MaxAge).UnixNano()
	ageDue := l.oldest != 0 && l.oldestTime < cutoff
	in := commitResult{stored: l.stored, count: l.count, oldest: l.oldest, oldestTime: l.oldestTime}
	budget := l.budget
	l.mu.Unlock()

	if len(batch) == 0 && reserve == l.reserved && !ageDue {
		return batch
	}
	start := time.Now()
	res, err := l.write(batch, reserve, budget, cutoff, in)
	took := time.Since(start)
	if l.opt.OnCommit != nil {
		l.opt.OnCommit(len(batch), took, err)
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.commitFailed(err, from, to)
		return batch
	}
	var bytes int64
	for _, p := range batch {
		bytes += int64(len(p.enc))
	}
	l.pendBytes -= bytes
	if to >= from {
		l.committed = to
	}
	l.reserved = reserve
	l.writeErr = nil
	l.stored, l.count, l.oldest, l.oldestTime = res.stored, res.count, res.oldest, res.oldestTime
	l.stats.Commits++
	l.stats.Trimmed += uint64(res.trimmed)
	if l.oldest != 0 {
		l.mem.evictBelow(min(l.oldest, l.committed+1))
	}
	l.mem.shrink(l.committed)
	l.canAppend.Broadcast()
	if l.durable != nil {
		close(l.durable)
		l.durable = nil
	}
	return batch
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
		floor := int64(64 << 10)
		l.budget = max(floor, min(l.budget, l.stored)*9/10)
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
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EFBIG) || errors.Is(err, syscall.EDQUOT)
}

// write runs one bbolt transaction: put the batch, trim the oldest records
// past the size budget or the age cutoff, and persist the counters and the
// reservation alongside.
func (l *Log) write(batch []pendingRec, reserve uint64, budget, cutoff int64, res commitResult) (commitResult, error) {
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

package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/eddy-iot/eddy/backoff"
	"github.com/eddy-iot/eddy/ringlog"
	"github.com/eddy-iot/eddy/sse"
)

// Source is what push reads: a device's ring log. *ringlog.Log satisfies
// it (Epoch arrives with the ring log's epoch; cmd/eddy adapts until then).
type Source interface {
	// ReadAfter appends to dst up to limit records with seq > after.
	ReadAfter(dst []ringlog.Record, after uint64, limit int) ([]ringlog.Record, error)
	// Notify returns a channel closed by the next append.
	Notify() <-chan struct{}
	// Oldest is the lowest seq still stored.
	Oldest() uint64
	// LastSeq is the highest seq appended.
	LastSeq() uint64
	// Epoch identifies the log's numbering: a new ring.db has a new one.
	Epoch() string
}

// PushOptions configure a Pusher.
type PushOptions struct {
	Device string // subject token; see ValidDevice
	Batch  int    // records read from the log at once; default 512
	Logger *slog.Logger
	Stats  *Stats // counters; nil: a new one (see Pusher.Stats)
}

// Pusher forwards one ring log into the stream: from the stream's resume
// point, reading the log (not the live fan-out), so an outage is caught up
// at the speed of the log and live records follow without a seam.
//
// It publishes records as soon as they are in the log, before they are
// durable on the device: ids are never reused, so a record the device
// loses in a crash after publishing it stays upstream and conflicts with
// nothing, and waiting for the device's fsync would only add latency.
type Pusher struct {
	c     *Conn
	src   Source
	opt   PushOptions
	log   *slog.Logger
	stats *Stats
}

// NewPusher returns a Pusher; Run starts it.
func NewPusher(c *Conn, src Source, o PushOptions) (*Pusher, error) {
	if err := ValidDevice(o.Device); err != nil {
		return nil, err
	}
	if o.Batch <= 0 {
		o.Batch = 512
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Stats == nil {
		o.Stats = &Stats{}
	}
	return &Pusher{c: c, src: src, opt: o, log: o.Logger, stats: o.Stats}, nil
}

// Stats returns the pusher's counters.
func (p *Pusher) Stats() *Stats { return p.stats }

// Lag is how far upstream is behind the log: records appended and not
// acknowledged, and the time between the newest record's observation and
// the last acknowledged one's.
func (p *Pusher) Lag() (records uint64, seconds float64) {
	last, acked := p.src.LastSeq(), p.stats.AckedSeq.Load()
	if last > acked {
		records = last - acked
	}
	if records > 0 {
		if t := p.stats.AckedTime.Load(); t > 0 {
			seconds = max(0, time.Since(time.Unix(0, t)).Seconds())
		}
	}
	return records, seconds
}

// Run pushes until ctx ends; it returns nil then. A stream that does not
// cover eddy.> is an error it returns at once.
func (p *Pusher) Run(ctx context.Context) error {
	bo := backoff.Backoff{First: 100 * time.Millisecond, Max: 5 * time.Second}
	for ctx.Err() == nil {
		if err := p.c.EnsureStream(ctx); err != nil {
			if errors.Is(err, ErrStreamSubjects) {
				return err
			}
			continue // ctx ended
		}
		err := p.session(ctx)
		if ctx.Err() != nil {
			break
		}
		wait := bo.Next()
		p.log.Warn("upstream: push session ended; resuming from the stream", "err", err, "in", wait)
		backoff.SleepFor(ctx, wait)
	}
	return nil
}

// errReconnected ends a session so that the next resumes from the stream.
var errReconnected = errors.New("upstream: reconnected")

// session resumes from the stream and forwards the log until the epoch
// changes, the connection is re-established, or ctx ends.
func (p *Pusher) session(ctx context.Context) error {
	epoch := p.src.Epoch()
	reconnects := p.c.Reconnects()
	s := p.c.NewSender(p.opt.Device, epoch, p.stats)
	defer s.Close()
	after, same, err := s.Resume(ctx)
	if err != nil {
		return err
	}
	p.stats.AckedSeq.Store(after)
	p.log.Info("upstream: pushing", "device", p.opt.Device, "epoch", epoch, "after", after, "same_epoch", same)
	buf := make([]ringlog.Record, 0, p.opt.Batch)
	var body []byte
	idle := time.NewTicker(time.Second)
	defer idle.Stop()
	for {
		if p.c.Reconnects() != reconnects {
			if err := s.Flush(ctx); err != nil {
				return err
			}
			return errReconnected
		}
		if e := p.src.Epoch(); e != epoch {
			if err := s.Flush(ctx); err != nil {
				return err
			}
			return fmt.Errorf("upstream: epoch changed from %s to %s", epoch, e)
		}
		notify := p.src.Notify()
		if oldest := p.src.Oldest(); same && after+1 < oldest {
			if after, err = p.trimmed(ctx, s, after, oldest); err != nil {
				return err
			}
		}
		recs, err := p.src.ReadAfter(buf[:0], after, p.opt.Batch)
		if err != nil {
			return fmt.Errorf("upstream: read the log after %d: %w", after, err)
		}
		if len(recs) > 0 && same && recs[0].Seq > after+1 {
			// A hole: trimmed between Oldest and the read (a hole
			// below Oldest is ids a crash never issued, not records).
			if oldest := min(p.src.Oldest(), recs[0].Seq); oldest > after+1 {
				if after, err = p.trimmed(ctx, s, after, oldest); err != nil {
					return err
				}
			}
		}
		for i := range recs {
			r := &recs[i]
			body = sse.AppendRecordJSON(body[:0], r)
			m := &Message{Seq: r.Seq, Topic: r.Topic, Time: r.Time, Unit: r.Unit, Body: append([]byte(nil), body...)}
			if err := s.Send(ctx, m); err != nil {
				return err
			}
			after = r.Seq
		}
		if len(recs) > 0 {
			same = true // from here on, after is this epoch's
			continue
		}
		// Caught up: wait for the log, settling the unit in flight
		// (and starting the next) as soon as it is answered.
		select {
		case <-notify:
		case <-s.Ready():
			if err := s.Poll(ctx); err != nil {
				return err
			}
		case <-idle.C: // notice reconnects and epoch changes while idle
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// trimmed publishes, once and in order, that the records after 'after'
// and below oldest were trimmed from the log before they went upstream,
// and returns the new 'after'.
func (p *Pusher) trimmed(ctx context.Context, s *Sender, after, oldest uint64) (uint64, error) {
	if err := s.Send(ctx, &Message{Seq: oldest - 1, GapFrom: after + 1, Time: time.Now()}); err != nil {
		return after, err
	}
	p.log.Warn("upstream: records trimmed from the log before they went upstream", "from_seq", after+1, "to_seq", oldest-1)
	return oldest - 1, nil
}

package sse

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/eddy-iot/eddy/ringlog"
)

// connKey is the context key of WithConn.
type connKey struct{}

// WithConn marks ctx as belonging to the client connection id (any
// comparable value unique per connection, e.g. the net.Conn). The server
// calls it from http.Server.ConnContext and http3.Server.ConnContext.
// The live events of a connection's streams are then written by one
// goroutine (see connWriter); without the mark each stream writes its
// own.
func WithConn(ctx context.Context, id any) context.Context {
	return context.WithValue(ctx, connKey{}, id)
}

// replayBatch is how many records a stream reads from the log at once
// while it catches up; replayChunk how many bytes of them it encodes
// before writing.
const (
	replayBatch = 256
	replayChunk = 32 << 10
)

// ServeHTTP serves GET /events (see DESIGN.md). Bad parameters get 400
// with the reason, a hub shutting down 503.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "sse: /events takes GET", http.StatusMethodNotAllowed)
		return
	}
	p, err := parseParams(r, h.log.NextSeq())
	if err != nil {
		h.m.Rejected.Add(1)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if !h.enter() {
		w.Header().Set("Retry-After", "5")
		http.Error(w, "sse: shutting down", http.StatusServiceUnavailable)
		return
	}
	defer h.leave()
	kind := &h.m.Streams[protoIndex(r.ProtoMajor)][p.modeIndex()]
	kind.Add(1)
	defer kind.Add(-1)
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	s := &stream{h: h, dst: newDst(w), c: newClient(p, h.opt.ClientBuffer, h.m), back: make(chan struct{}, 1), armed: make(chan struct{}, 1)}
	defer func() { s.dst.close(errors.Is(err, errWrite)) }()
	// HTTP/1.1 carries one stream per connection: nothing to share.
	if key := r.Context().Value(connKey{}); key != nil && p.interval == 0 && r.ProtoMajor >= 2 {
		s.cw = h.connWriter(key)
		defer h.releaseWriter(key, s.cw)
	}
	err = s.run(r.Context())
	h.detach(s.c)
	switch {
	case err == nil:
	case errors.Is(err, errWrite):
		// The client left or stopped reading: counted in WriteErrors.
		h.lg.Debug("sse: stream ended", "remote", r.RemoteAddr, "err", err)
	default:
		// Not the client's doing: a broken invariant or a failing log.
		h.lg.Warn("sse: stream ended", "remote", r.RemoteAddr, "err", err)
	}
}

// protoIndex maps HTTP/1.x, 2 and 3 to StreamProtos.
func protoIndex(major int) int {
	return min(max(major, 1), 3) - 1
}

// stream is one response being written. Its methods run on the handler's
// goroutine, except writeLive, which runs on the connection's writer
// while the stream is handed over to it; mu keeps them apart.
type stream struct {
	h    *Hub
	dst  dst // the response's bytes go here
	c    *client
	cw   *connWriter   // the connection's writer; nil: the stream writes its own
	back chan struct{} // cap 1: the writer handed the stream back
	// armed (cap 1) tells the handler that the connection's writer armed a
	// write deadline, so that its idle timer lifts it in time: HTTP/2
	// resets a stream whose deadline passes even with no write pending,
	// and a stream waits without writing while its writer serves others.
	armed chan struct{}

	queued bool // in cw's ready list; under cw.mu

	// mu is held by whoever writes while the stream is handed over, and
	// protects handed and err; the fields below it are the writer's
	// while handed is set and the handler's otherwise.
	mu         sync.Mutex
	handed     bool
	err        error            // why the writer handed the stream back, if it failed
	buf        []byte           // small frames, replayed events
	out        []*event         // the writer's half of the client's queue
	recs       []ringlog.Record // replay scratch
	take       int              // bytes of queued events to take per write (takeLimit); 0: maxTake
	lastWrite  time.Time        // when the last flush succeeded
	deadline   time.Time        // write deadline in force; zero: none
	noDeadline bool             // the ResponseWriter cannot set deadlines
}

// errWrite wraps a failed write; the client is gone or too slow.
var errWrite = errors.New("sse: write")

func (s *stream) run(ctx context.Context) error {
	// A fresh stream attaches before its first byte goes out, so a client
	// that has seen the preamble gets every record appended after that.
	if !s.c.p.resume {
		s.h.attach(s.c, true)
	}
	if ctx.Err() != nil {
		// Reset before it began (HTTP/2 rapid reset): arming a write
		// deadline now would leave HTTP/2 a timer, and an RST_STREAM when
		// it fires, for a stream the client already cancelled.
		return nil
	}
	s.buf = appendRetry(s.buf[:0], s.h.opt.Retry, "eddy events")
	if err := s.flushBuf(time.Now()); err != nil {
		return err
	}
	if s.c.p.unknownID != 0 {
		if err := s.resetUnknown(); err != nil {
			return err
		}
	}
	if s.c.p.resume {
		if err := s.catchUp(ctx); err != nil {
			return err
		}
	}
	// One timer does the idle work: heartbeats, and lifting the write
	// deadline before it expires on a quiet stream.
	idleAt := s.idleAt()
	idle := time.NewTimer(time.Until(idleAt))
	defer idle.Stop()
	rate := time.NewTimer(time.Hour)
	rate.Stop()
	defer rate.Stop()
	var rateC <-chan time.Time
	handed := false // the handler's view: set by handOver, cleared by back or takeBack
	for {
		wake := s.c.wake
		if s.cw != nil {
			if !handed {
				s.handOver()
				handed = true
			}
			wake = nil // the writer is told instead
		}
		select {
		case <-ctx.Done():
			s.takeBack()
			return nil
		case <-s.h.closing:
			if handed {
				// Bound a write the writer may be blocked in, too.
				_ = s.dst.SetWriteDeadline(time.Now().Add(goodbyeTimeout))
			}
			s.takeBack()
			return s.goodbye()
		case <-idle.C:
			s.mu.Lock()
			err := s.idle()
			idleAt = s.idleAt()
			s.mu.Unlock()
			if err != nil {
				s.takeBack()
				return err
			}
			idle.Reset(time.Until(idleAt))
			continue
		case <-s.armed:
			s.mu.Lock()
			at := s.idleAt()
			s.mu.Unlock()
			if at.Before(idleAt) {
				idleAt = at
				idle.Reset(time.Until(at))
			}
			continue
		case <-s.back:
			handed = false
			s.mu.Lock()
			err := s.err
			s.mu.Unlock()
			if err != nil {
				return err
			}
		case <-wake:
		case <-rateC:
			rateC = nil
		}
		wait, err := s.drain(ctx)
		if err != nil {
			return err
		}
		if wait > 0 {
			rate.Reset(wait)
			rateC = rate.C
		}
		if at := s.idleAt(); at.Before(idleAt) {
			idleAt = at
			idle.Reset(time.Until(at))
		}
	}
}

// handOver gives the stream's live writes to its connection's writer.
func (s *stream) handOver() {
	s.mu.Lock()
	s.handed = true
	s.mu.Unlock()
	s.c.live.Store(s)
	s.cw.enqueue(s) // for what was queued before
}

// takeBack ends a hand-over, if the writer has not ended it already,
// waiting for a write in progress.
func (s *stream) takeBack() {
	s.mu.Lock()
	s.handed = false
	s.c.live.Store(nil)
	s.mu.Unlock()
}

// handBack returns the stream to its handler goroutine, which learns of
// it from back (once per hand-over); s.mu is held.
func (s *stream) handBack(err error) {
	s.handed = false
	s.err = err
	s.c.live.Store(nil)
	s.back <- struct{}{} // cannot block: one hand-back per hand-over, and the handler takes it before the next
}

// writeLive runs on the connection's writer: it writes what the queue
// holds, and hands the stream back when it failed or must catch up from
// the log.
func (s *stream) writeLive(w *connWriter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.handed {
		return
	}
	// The connection's streams share the writer's buffer: a Write copies
	// or sends what it is given before it returns.
	own := s.buf
	s.buf = w.buf
	detached, _, err := s.writeQueued(time.Now())
	w.buf, s.buf = s.buf[:0], own
	if cap(w.buf) > maxWriterBuf {
		w.buf = nil
	}
	if err != nil || detached {
		s.handBack(err)
	}
}

// idleAt is when the stream next has idle work: a heartbeat Heartbeat
// after the last write, or lifting the deadline a quarter of
// WriteTimeout before it expires.
func (s *stream) idleAt() time.Time {
	at := s.lastWrite.Add(s.h.opt.Heartbeat)
	if !s.deadline.IsZero() {
		if lift := s.deadline.Add(-s.h.opt.WriteTimeout / 4); lift.Before(at) {
			at = lift
		}
	}
	return at
}

// idle sends a heartbeat when the stream has been quiet for Heartbeat,
// and lifts the write deadline when it is about to expire: HTTP/2 resets
// a stream whose deadline passes even when no write is pending, and a
// stream may rightly be quiet for longer than WriteTimeout.
func (s *stream) idle() error {
	now := time.Now()
	if now.Sub(s.lastWrite) >= s.h.opt.Heartbeat {
		s.buf = append(s.buf[:0], heartbeat...)
		if err := s.flushBuf(now); err != nil {
			return err
		}
	}
	if !s.deadline.IsZero() && !now.Before(s.deadline.Add(-s.h.opt.WriteTimeout/4)) {
		s.deadline = time.Time{}
		if err := s.dst.SetWriteDeadline(time.Time{}); err != nil {
			return s.writeErr(err)
		}
	}
	return nil
}

// drain writes what the client's queue holds, then, if the stream fell
// out of live fan-out, catches up from the log.
func (s *stream) drain(ctx context.Context) (time.Duration, error) {
	detached, wait, err := s.writeQueued(time.Now())
	if err != nil {
		return 0, err
	}
	if detached {
		return 0, s.catchUp(ctx)
	}
	return wait, nil
}

// writeQueued writes what the client's queue holds and reports whether
// the client left live fan-out and, in rate mode, how long until more
// may go.
func (s *stream) writeQueued(now time.Time) (detached bool, wait time.Duration, err error) {
	evs, g, detached, wait, more := s.c.takeUpTo(s.out, now, s.takeLimit())
	s.out = evs
	gapDue := false
	if len(evs) > 0 || g.dropped > 0 {
		err = s.writeEvents(g, evs, now)
		gapDue = s.c.wrote(time.Since(now))
		s.h.m.Delivered.Add(uint64(len(evs)))
		clear(s.out) // release the frames
	}
	s.adaptTake(g.dropped > 0, more)
	if (more || gapDue) && err == nil {
		s.c.signal() // the rest, after the connection's other streams
	}
	return detached, wait, err
}

// What a stream commits to one write is bounded, so that a slow client
// is sent values that were the latest when it could take them, not a
// backlog taken long before. A downsampled stream takes at most
// downsampleTake bytes of queued events per write, and minTake once its
// client fell behind (its queue collapsed: a gap); each write that
// empties its queue doubles the limit back. An exact-mode stream never
// drops, so it takes everything queued (at most ClientBuffer events).
const (
	minTake        = 4 << 10
	downsampleTake = 16 << 10
)

func (s *stream) takeLimit() int {
	switch {
	case s.c.p.mode == modeExact:
		return math.MaxInt
	case s.take == 0:
		return downsampleTake
	}
	return s.take
}

// adaptTake sets the next take limit: minTake after a gap, growing
// again once the client keeps up.
func (s *stream) adaptTake(behind, more bool) {
	switch {
	case behind:
		s.take = minTake
	case !more && s.take != 0:
		s.take = min(downsampleTake, 2*s.take)
	}
}

// writeEvents writes a gap (if any) and the events with one Write, then
// flushes once. One Write matters: HTTP/3's ResponseWriter does not
// buffer, so each Write becomes its own DATA frame and a wake-up of the
// QUIC connection's sender.
func (s *stream) writeEvents(g gap, evs []*event, now time.Time) error {
	s.buf = s.buf[:0]
	if g.dropped > 0 {
		s.h.m.Gaps.Add(1)
		s.buf = appendGap(s.buf, g)
	}
	for _, ev := range evs {
		if len(s.buf) >= replayChunk {
			if err := s.writeBuf(now); err != nil {
				return err
			}
			s.buf = s.buf[:0]
			now = time.Now() // the write may have waited
		}
		s.buf = append(s.buf, ev.frame...)
	}
	return s.flushBuf(now)
}

// catchUp reads the log after the client's cursor and writes what
// matches, until the cursor reaches what the hub has published; then it
// attaches the client to live fan-out. Records the log no longer holds
// are announced by a gap; dropped counts their ids, matching or not.
func (s *stream) catchUp(ctx context.Context) error {
	log := s.h.log
	for !s.h.attach(s.c, false) {
		select {
		case <-ctx.Done():
			return nil // run sees it
		case <-s.h.closing:
			return nil
		default:
		}
		cursor := s.c.position()
		var err error
		s.recs, err = log.ReadAfter(s.recs[:0], cursor, replayBatch)
		if err != nil {
			return fmt.Errorf("sse: replay after %d: %w", cursor, err)
		}
		var g gap
		lostTo := log.Oldest() - 1 // every seq below Oldest is trimmed or lost
		if len(s.recs) > 0 {
			lostTo = min(lostTo, s.recs[0].Seq-1)
		}
		if lostTo > cursor {
			g.add(lostTo-cursor, cursor+1, lostTo)
		}
		if len(s.recs) == 0 && g.dropped == 0 {
			return fmt.Errorf("sse: replay after %d: the log holds nothing newer, yet the hub published more", cursor)
		}
		end := lostTo
		if len(s.recs) > 0 {
			end = max(end, s.recs[len(s.recs)-1].Seq)
		}
		if err := s.writeReplay(g); err != nil {
			return err
		}
		s.c.advance(end)
	}
	return nil
}

// resetUnknown answers a Last-Event-ID the log never issued like a lost
// one: a gap that names it and covers the ids before the oldest record,
// then the stream goes on from that record.
func (s *stream) resetUnknown() error {
	oldest := s.h.log.Oldest()
	g := gap{unknownID: s.c.p.unknownID}
	if oldest > 1 {
		g.add(oldest-1, 1, oldest-1)
	}
	s.h.m.Gaps.Add(1)
	s.buf = appendGap(s.buf[:0], g)
	if err := s.flushBuf(time.Now()); err != nil {
		return err
	}
	s.c.advance(oldest - 1)
	return nil
}

// writeReplay encodes the matching records of s.recs after gap g and
// writes them at once.
func (s *stream) writeReplay(g gap) error {
	s.buf = s.buf[:0]
	if g.dropped > 0 {
		s.h.m.Gaps.Add(1)
		s.buf = appendGap(s.buf, g)
	}
	n := 0
	defer func() {
		clear(s.recs)
		s.h.m.Delivered.Add(uint64(n))
		s.h.m.Replayed.Add(uint64(n))
	}()
	for i := range s.recs {
		if !s.c.p.filters.Match(s.recs[i].Topic) {
			continue
		}
		s.buf = appendReading(s.buf, &s.recs[i])
		n++
		if len(s.buf) >= replayChunk {
			// Write as we go: values can be large, the buffer stays small.
			if err := s.writeBuf(time.Now()); err != nil {
				return err
			}
			s.buf = s.buf[:0]
		}
	}
	if n == 0 && g.dropped == 0 {
		return nil
	}
	return s.flushBuf(time.Now())
}

// goodbye ends the stream at shutdown with a retry hint between 1x and 3x
// Options.Retry, so that clients do not all come back at the same moment.
// The write gets at most goodbyeTimeout, so that a stalled client cannot
// hold up shutdown for a whole WriteTimeout.
func (s *stream) goodbye() error {
	r := s.h.opt.Retry
	s.buf = appendRetry(s.buf[:0], r+rand.N(2*r), "eddy is shutting down")
	if !s.noDeadline {
		if err := s.dst.SetWriteDeadline(time.Now().Add(min(s.h.opt.WriteTimeout, goodbyeTimeout))); err != nil {
			return s.writeErr(err)
		}
	}
	if _, err := s.dst.Write(s.buf); err != nil {
		return s.writeErr(err)
	}
	return s.flush(time.Now())
}

// goodbyeTimeout bounds the last write of a stream at shutdown.
const goodbyeTimeout = time.Second

// flushBuf writes s.buf and flushes.
func (s *stream) flushBuf(now time.Time) error {
	if err := s.writeBuf(now); err != nil {
		return err
	}
	if cap(s.buf) > maxIdleBuf && !s.handed {
		s.buf = nil // an idle stream should not keep a replay-sized buffer
	}
	return s.flush(now)
}

// maxIdleBuf is the largest buffer a stream keeps between writes;
// maxWriterBuf the largest a connection's writer keeps, for all its
// streams.
const (
	maxIdleBuf   = 4 << 10
	maxWriterBuf = 64 << 10
)

// writePiece is the most a blocking write of an exact-mode stream hands
// the transport at once, minTake that of any other: a client is dropped
// when it accepts less than that in WriteTimeout. Exact streams move
// more data; smaller pieces would cost HTTP/3 a DATA frame and a wait
// for QUIC's sender each.
const writePiece = 16 << 10

func (s *stream) piece() int {
	if s.c.p.mode == modeExact {
		return writePiece
	}
	return minTake
}

// writeBuf writes s.buf under a write deadline. A write that must wait
// goes in pieces, and each piece the client accepts moves the deadline
// on: a client is dropped when it makes no progress for WriteTimeout,
// not when a large write takes longer than that over a slow link.
func (s *stream) writeBuf(now time.Time) error {
	if err := s.arm(now); err != nil {
		return err
	}
	// A slow stream does not queue ahead in QUIC: what waits there can no
	// longer be replaced by a fresher value.
	if s.takeLimit() > minTake {
		if ok, err := s.dst.tryWrite(s.buf); err != nil {
			return s.writeErr(err)
		} else if ok {
			return nil
		}
	}
	for p := s.buf; len(p) > 0; {
		n := min(len(p), s.piece())
		if _, err := s.dst.Write(p[:n]); err != nil {
			return s.writeErr(err)
		}
		if p = p[n:]; len(p) > 0 {
			if err := s.rearm(time.Now()); err != nil {
				return err
			}
		}
	}
	return nil
}

// arm makes sure a write deadline at least 3/4 of WriteTimeout away is in
// force, so a client that accepts nothing for that long is dropped.
// Setting a deadline costs a message to the HTTP/2 connection's
// goroutine, so a busy stream re-arms only every quarter WriteTimeout,
// not on every write, and never lifts it between writes (see idle).
func (s *stream) arm(now time.Time) error {
	if s.noDeadline {
		return nil
	}
	wt := s.h.opt.WriteTimeout
	if !s.deadline.IsZero() && s.deadline.Sub(now) >= wt*3/4 {
		return nil
	}
	err := s.dst.SetWriteDeadline(now.Add(wt))
	if errors.Is(err, http.ErrNotSupported) {
		s.noDeadline = true
		s.h.lg.Warn("sse: this connection cannot set write deadlines; a stalled client will be noticed only when it disconnects")
		return nil
	}
	if err != nil {
		return s.writeErr(err)
	}
	s.deadline = now.Add(wt)
	if s.handed {
		select {
		case s.armed <- struct{}{}:
		default:
		}
	}
	return nil
}

// rearm moves the write deadline to WriteTimeout from now: the client
// accepted a piece of a write that had to wait.
func (s *stream) rearm(now time.Time) error {
	if s.noDeadline {
		return nil
	}
	s.deadline = time.Time{}
	return s.arm(now)
}

// flush sends what was written.
func (s *stream) flush(now time.Time) error {
	if err := s.dst.Flush(); err != nil {
		return s.writeErr(err)
	}
	s.h.m.Flushes.Add(1)
	s.lastWrite = now
	return nil
}

func (s *stream) writeErr(err error) error {
	s.h.m.WriteErrors.Add(1)
	return fmt.Errorf("%w: %w", errWrite, err)
}

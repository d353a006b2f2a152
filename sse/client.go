package sse

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// event is one record encoded once by the hub and shared, read-only, by
// every stream it is queued for.
type event struct {
	seq   uint64
	topic string
	frame []byte // the complete SSE event, blank line included
}

// client is one stream's queue: the hub pushes into it, the stream's
// writer takes from it. It is a cursor into the log: every seq up to
// cursor has been queued, written or deliberately skipped, so the hub's
// pushes at or below it are ignored and ids stay strictly increasing.
type client struct {
	p      params
	buffer int           // queue bound, Options.ClientBuffer
	wake   chan struct{} // cap 1: the queue changed
	m      *Metrics
	// live is the stream while it is handed over to its connection's
	// writer, which is then told of changes instead of wake.
	live atomic.Pointer[stream]

	mu       sync.Mutex // protects everything below
	cursor   uint64
	queue    []*event // seq order; in rate mode it may hold superseded events
	gap      gap      // dropped events to announce before the queue
	detached bool     // exact mode: the queue overflowed, read the log after cursor

	// Rate mode only.
	pending  map[string]uint64    // topic -> seq of its latest queued event
	lastSent map[string]time.Time // topic -> when its last event was taken
	// skipped: events superseded since the writer last took. They are
	// the rate cap's doing unless the writer's write meanwhile took
	// longer than an interval (wrote): then the client could not take
	// the rate it asked for, and they are announced as a gap.
	skipped gap
}

func newClient(p params, buffer int, m *Metrics) *client {
	c := &client{p: p, buffer: buffer, wake: make(chan struct{}, 1), m: m, cursor: p.lastID}
	if p.interval > 0 {
		c.pending = map[string]uint64{}
		c.lastSent = map[string]time.Time{}
	}
	return c
}

// push queues evs (in seq order, all matching the client's filters). It
// never blocks on the writer. It reports false when an exact-mode client
// overflowed and must leave live fan-out.
func (c *client) push(evs []*event) bool {
	c.mu.Lock()
	stay := true
	changed := false
	for _, ev := range evs {
		if ev.seq <= c.cursor {
			continue
		}
		if !c.add(ev) {
			c.detached, stay = true, false
			changed = true
			c.m.Detached.Add(1)
			break
		}
		changed = true
	}
	c.mu.Unlock()
	if changed {
		c.signal()
	}
	return stay
}

func (c *client) signal() {
	if s := c.live.Load(); s != nil {
		s.cw.enqueue(s)
		return
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// add queues one event; false means an exact-mode queue is full.
func (c *client) add(ev *event) bool {
	if c.p.interval > 0 {
		c.addRated(ev)
		return true
	}
	if len(c.queue) >= c.buffer {
		if c.p.mode == modeExact {
			return false
		}
		c.collapse()
	}
	c.queue = append(c.queue, ev)
	c.cursor = ev.seq
	return true
}

// collapse keeps the latest event of each topic, at most half the buffer
// of them (the newest), and records the rest as a gap. Keeping only half
// makes collapsing amortized O(1) per event however many topics there are.
func (c *client) collapse() {
	q := c.queue
	keep := c.buffer / 2
	seen := make(map[string]struct{}, min(len(q), keep))
	w := len(q)
	var g gap
	for i := len(q) - 1; i >= 0; i-- {
		ev := q[i]
		if _, dup := seen[ev.topic]; dup || len(seen) >= keep {
			g.add(1, ev.seq, ev.seq)
			continue
		}
		seen[ev.topic] = struct{}{}
		w--
		q[w] = ev
	}
	n := copy(q, q[w:])
	clear(q[n:])
	c.queue = q[:n]
	c.gap.add(g.dropped, g.from, g.to)
	c.m.Dropped.Add(g.dropped)
}

// addRated queues ev as its topic's latest; an earlier event of the topic
// still queued is superseded (latest wins). The queue stays in seq order,
// so taking from its head keeps ids increasing.
func (c *client) addRated(ev *event) {
	if len(c.queue) >= c.buffer {
		c.compactRated()
	}
	if len(c.queue) >= c.buffer {
		// More topics are waiting than the buffer holds: drop the older half.
		drop := c.queue[:len(c.queue)-c.buffer/2]
		var g gap
		for _, old := range drop {
			g.add(1, old.seq, old.seq)
			delete(c.pending, old.topic)
		}
		c.gap.add(g.dropped, g.from, g.to)
		c.m.Dropped.Add(g.dropped)
		n := copy(c.queue, c.queue[len(drop):])
		clear(c.queue[n:])
		c.queue = c.queue[:n]
	}
	if old, ok := c.pending[ev.topic]; ok {
		c.m.Dropped.Add(1)
		c.skipped.add(1, old, old)
	}
	c.pending[ev.topic] = ev.seq
	c.queue = append(c.queue, ev)
	c.cursor = ev.seq
}

// fitting is how many events from the head of q fit in maxBytes of
// frames; at least one.
func fitting(q []*event, maxBytes int) int {
	size := 0
	for n, ev := range q {
		if size += len(ev.frame); size > maxBytes && n > 0 {
			return n
		}
	}
	return len(q)
}

// compactRated removes superseded events from the queue.
func (c *client) compactRated() {
	q := c.queue[:0]
	for _, ev := range c.queue {
		if c.pending[ev.topic] == ev.seq {
			q = append(q, ev)
		}
	}
	clear(c.queue[len(q):])
	c.queue = q
}

// take hands the writer what it may write now: the pending gap, the
// queued events (appended to out, which it gives back in exchange), and
// whether the stream must catch up from the log afterwards. In rate mode,
// wait is how long until the head of the queue may go.
func (c *client) take(out []*event, now time.Time) (evs []*event, g gap, detached bool, wait time.Duration) {
	evs, g, detached, wait, _ = c.takeUpTo(out, now, math.MaxInt)
	return evs, g, detached, wait
}

// takeUpTo is take for a writer that writes at most maxBytes of frames
// at once (and at least one event): the rest stays queued, where it goes
// on collapsing to the latest value of each topic, and more reports it.
// A slow client so gets fresh values rather than a backlog it took long
// ago. A detached client takes everything: it then reads the log after
// the cursor, past every queued event.
func (c *client) takeUpTo(out []*event, now time.Time, maxBytes int) (evs []*event, g gap, detached bool, wait time.Duration, more bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	g, c.gap = c.gap, gap{}
	out = out[:0]
	if c.p.interval > 0 {
		evs, wait = c.takeRated(out, now)
		return evs, g, false, wait, false
	}
	q := c.queue
	n := len(q)
	if maxBytes != math.MaxInt && !c.detached {
		n = fitting(q, maxBytes)
	}
	if n == len(q) {
		// Swap buffers: the writer's spare becomes the queue.
		evs, c.queue = q, out
		return evs, g, c.detached, 0, false
	}
	out = append(out, q[:n]...)
	k := copy(q, q[n:])
	clear(q[k:])
	c.queue = q[:k]
	return out, g, false, 0, true
}

// takeRated takes events from the head of the queue while their topic's
// slot is open, and stops at the first that must wait, so that ids stay
// in order. Every event waits at most one interval.
func (c *client) takeRated(out []*event, now time.Time) ([]*event, time.Duration) {
	c.skipped = gap{}
	var wait time.Duration
	i := 0
	for ; i < len(c.queue); i++ {
		ev := c.queue[i]
		if c.pending[ev.topic] != ev.seq {
			continue // superseded
		}
		if last, ok := c.lastSent[ev.topic]; ok && now.Sub(last) < c.p.interval {
			wait = c.p.interval - now.Sub(last)
			break
		}
		out = append(out, ev)
		c.lastSent[ev.topic] = now
		delete(c.pending, ev.topic)
	}
	n := copy(c.queue, c.queue[i:])
	clear(c.queue[n:])
	c.queue = c.queue[:n]
	if len(c.lastSent) > 2*c.buffer {
		// Forget topics whose slot is open anyway, to bound the map.
		for t, last := range c.lastSent {
			if now.Sub(last) >= c.p.interval {
				delete(c.lastSent, t)
			}
		}
	}
	return out, wait
}

// slowWrite is how long a rate-mode write may take before the client
// counts as behind: one interval, and never less than 100 ms.
func (c *client) slowWrite() time.Duration {
	return max(c.p.interval, 100*time.Millisecond)
}

// wrote tells a rate-mode client how long the writer's last write took.
// Events superseded during a write slower than slowWrite were skipped
// because the client could not take them, not because of its cap: they
// go into the next gap, and wrote reports that one is due.
func (c *client) wrote(d time.Duration) (gapDue bool) {
	if c.p.interval == 0 {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d >= c.slowWrite() && c.skipped.dropped > 0 {
		c.gap.add(c.skipped.dropped, c.skipped.from, c.skipped.to)
		gapDue = true
	}
	c.skipped = gap{}
	return gapDue
}

// position is the client's cursor.
func (c *client) position() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cursor
}

// advance moves the cursor of a detached or not yet attached client past
// what it read from the log.
func (c *client) advance(seq uint64) {
	c.mu.Lock()
	c.cursor = max(c.cursor, seq)
	c.mu.Unlock()
}

package sse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eddy-iot/eddy/ringlog"
	"github.com/eddy-iot/eddy/topic"
)

// Options tunes a Hub. The zero value of each field means its default.
type Options struct {
	ClientBuffer int           // events queued per stream before backpressure applies; default 1024
	Heartbeat    time.Duration // comment sent on a stream quiet this long; default 15s
	WriteTimeout time.Duration // a stream that accepts no write for this long is dropped; default 10s
	Retry        time.Duration // reconnect hint; at shutdown 1x to 3x this, jittered; default 2s
	Logger       *slog.Logger  // default: discard
	Metrics      *Metrics      // counters the hub updates; nil: kept internally, unexported
	// ObserveLag, when set, is called for every record the hub fans out
	// with the time from its observation to the fan-out (for a latency
	// histogram); it must be cheap and must not block.
	ObserveLag func(time.Duration)
	// Linger caps how long the hub waits after a fan-out before the
	// next one, so that records arriving close together reach the
	// streams in one wake-up rather than one each. The wait is 5µs per
	// open stream (about what waking one costs), at least 1ms after a
	// fan-out of several records (they are arriving faster than
	// fan-outs run), up to this cap: 1,000 streams wait the default
	// cap, a handful of streams fed a record at a time not at all. A
	// record arriving after a quiet spell goes out at once. Default 5ms;
	// negative: none.
	Linger time.Duration
}

func (o Options) withDefaults() Options {
	if o.ClientBuffer <= 0 {
		o.ClientBuffer = 1024
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = 15 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.Retry <= 0 {
		o.Retry = 2 * time.Second
	}
	if o.Linger == 0 {
		o.Linger = 5 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = &Metrics{}
	}
	return o
}

// Metrics are the hub's counters. They are plain atomics so that this
// package needs no metrics library; the server exports them (for
// example as Prometheus CounterFuncs) and Hub.Clients as a gauge.
type Metrics struct {
	Published   atomic.Uint64 // records the hub fanned out live
	Delivered   atomic.Uint64 // reading events written to streams, live or replayed
	Flushes     atomic.Uint64 // writes flushed to streams; Delivered/Flushes is how well they batch
	Replayed    atomic.Uint64 // of Delivered, those read from the ring log (resume, exact catch-up)
	Dropped     atomic.Uint64 // events dropped for slow streams (downsample, rate)
	Gaps        atomic.Uint64 // gap events written
	Detached    atomic.Uint64 // times an exact-mode stream fell behind and switched to the log
	WriteErrors atomic.Uint64 // streams ended by a failed or timed-out write
	Rejected    atomic.Uint64 // requests answered 400
	// Streams counts the open streams by protocol (StreamProtos) and mode
	// (StreamModes).
	Streams [3][3]atomic.Int64
}

// StreamProtos and StreamModes name the indexes of Metrics.Streams.
var (
	StreamProtos = [3]string{"h1", "h2", "h3"}
	StreamModes  = [3]string{"downsample", "exact", "rate"}
)

// ErrRunning is returned by a second concurrent Run.
var ErrRunning = errors.New("sse: hub is already running")

// fanoutBatch is how many records the hub reads and publishes at once.
const fanoutBatch = 512

// Hub fans the ring log out to streams. Create it with NewHub, run Run in
// one goroutine, mount it at GET /events, and call Shutdown before (or
// while) shutting the HTTP servers down: streams never go idle on their
// own, so http.Server.Shutdown would otherwise wait for them in vain.
type Hub struct {
	log     *ringlog.Log
	opt     Options
	lg      *slog.Logger
	m       *Metrics
	running atomic.Bool
	beat    atomic.Int64  // unix nanoseconds when Run's loop last turned
	closing chan struct{} // closed when shutdown begins; every stream watches it

	mu        sync.Mutex // protects everything below
	published uint64     // highest seq handed to live fan-out
	groups    map[string]*group
	closed    bool          // closing is closed
	streams   int           // streams being served
	idle      chan struct{} // closed once closed and streams == 0

	cmu   sync.Mutex          // protects conns
	conns map[any]*connWriter // by WithConn key
}

// NewHub returns a hub over log. Live fan-out starts with the records
// appended after this call, once Run runs.
func NewHub(log *ringlog.Log, opt Options) *Hub {
	opt = opt.withDefaults()
	return &Hub{
		log:       log,
		opt:       opt,
		lg:        opt.Logger,
		m:         opt.Metrics,
		closing:   make(chan struct{}),
		published: log.LastSeq(),
		groups:    map[string]*group{},
		idle:      make(chan struct{}),
		conns:     map[any]*connWriter{},
	}
}

// Run follows the log and fans each new record out to the matching
// streams, encoding it once. It never blocks on a stream. It returns nil
// when ctx ends, or an error when the log fails; either way every stream
// is then ended as by Shutdown.
func (h *Hub) Run(ctx context.Context) error {
	if !h.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer h.beginShutdown()
	h.mu.Lock()
	after := h.published
	h.mu.Unlock()
	var recs []ringlog.Record
	var enc encoder
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	defer linger.Stop()
	tick := time.NewTicker(beatInterval)
	defer tick.Stop()
	for {
		h.beat.Store(time.Now().UnixNano())
		notify := h.log.Notify()
		var err error
		recs, err = h.log.ReadAfter(recs[:0], after, fanoutBatch)
		if err != nil {
			return fmt.Errorf("sse: run: read after %d: %w", after, err)
		}
		if len(recs) == 0 {
			select {
			case <-notify:
				continue
			case <-tick.C:
				continue // beat while the log is quiet
			case <-ctx.Done():
				return nil
			}
		}
		after = recs[len(recs)-1].Seq
		if h.opt.ObserveLag != nil {
			now := time.Now()
			for i := range recs {
				h.opt.ObserveLag(now.Sub(recs[i].Time))
			}
		}
		streams := h.publish(enc.encode(recs))
		n := len(recs)
		clear(recs) // do not pin values until the next batch
		if ctx.Err() != nil {
			return nil
		}
		if wait := h.linger(streams, n); wait > 0 && n < fanoutBatch {
			// Each fan-out wakes every matching stream; at a thousand
			// records a second one wake-up per record would cost more
			// than the records themselves.
			linger.Reset(wait)
			select {
			case <-linger.C:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// beatInterval is how often Run's loop turns while the log is quiet.
const beatInterval = time.Second

// Beat is when Run's loop last turned: at least every second while it
// runs; it stops when Run returns or hangs.
func (h *Hub) Beat() time.Time { return time.Unix(0, h.beat.Load()) }

// encoder turns a batch of records into events whose frames share
// freshly allocated chunks of at most frameChunk bytes (frames are
// shared with streams, so a chunk is never reused). A queued event keeps
// its whole chunk alive: chunks, rather than one buffer per batch, keep
// what a stalled stream's queue holds near its own size (a batch of 512
// large records is megabytes).
type encoder struct{}

// frameChunk is the size of the chunks frames are encoded into; a frame
// larger than that gets a buffer of its own.
const frameChunk = 4 << 10

func (e *encoder) encode(recs []ringlog.Record) []event {
	evs := make([]event, len(recs))
	var buf []byte
	for i := range recs {
		r := &recs[i]
		// Enough for most frames, base64 values included; one that takes
		// more (escaped strings) makes append move the chunk.
		need := 128 + len(r.Topic) + len(r.Value)*4/3 + len(r.Unit)
		if cap(buf)-len(buf) < need {
			buf = make([]byte, 0, max(frameChunk, need))
		}
		start := len(buf)
		buf = appendReading(buf, r)
		evs[i] = event{seq: r.Seq, topic: r.Topic, frame: buf[start:len(buf):len(buf)]}
	}
	return evs
}

// lingerPerStream is about the CPU time one stream's wake-up costs;
// lingerCrowded the least wait after a fan-out of several records;
// lingers shorter than minLinger are not worth a timer.
const (
	lingerPerStream = 5 * time.Microsecond
	lingerCrowded   = time.Millisecond
	minLinger       = 100 * time.Microsecond
)

// linger is how long to wait after a fan-out of records records to
// streams streams.
func (h *Hub) linger(streams, records int) time.Duration {
	if h.opt.Linger <= 0 {
		return 0
	}
	d := time.Duration(streams) * lingerPerStream
	if records > 1 {
		d = max(d, lingerCrowded)
	}
	d = min(d, h.opt.Linger)
	if d < minLinger {
		return 0
	}
	return d
}

// publish hands evs to every matching attached stream and returns the
// number of streams being served.
func (h *Hub) publish(evs []event) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	for key, g := range h.groups {
		g.deliver(evs)
		if len(g.clients) == 0 {
			delete(h.groups, key)
		}
	}
	h.published = evs[len(evs)-1].seq
	h.m.Published.Add(uint64(len(evs)))
	return h.streams
}

// group is the attached streams that share one filter set, so that each
// record is matched once per distinct filter set, not once per stream.
type group struct {
	filters topic.Set
	clients []*client
	matched []*event // scratch for deliver
}

// deliver pushes the matching events to every client of g and removes
// the exact-mode clients that overflowed.
func (g *group) deliver(evs []event) {
	g.matched = g.matched[:0]
	for i := range evs {
		if g.filters.Match(evs[i].topic) {
			g.matched = append(g.matched, &evs[i])
		}
	}
	if len(g.matched) > 0 {
		for i := len(g.clients) - 1; i >= 0; i-- {
			if !g.clients[i].push(g.matched) {
				g.remove(i)
			}
		}
	}
	clear(g.matched) // do not pin this batch's frames
}

func (g *group) remove(i int) {
	last := len(g.clients) - 1
	g.clients[i] = g.clients[last]
	g.clients[last] = nil
	g.clients = g.clients[:last]
}

// attach adds c to live fan-out if its cursor has reached what the hub
// has published, atomically with respect to publish: from then on the hub
// delivers every later record and none earlier. When it reports false the
// stream must read more of the log first.
func (h *Hub) attach(c *client, fresh bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	c.mu.Lock()
	if fresh {
		c.cursor = h.published
	}
	ok := c.cursor >= h.published
	if ok {
		c.detached = false
	}
	c.mu.Unlock()
	if !ok {
		return false
	}
	g := h.groups[c.p.key]
	if g == nil {
		g = &group{filters: c.p.filters}
		h.groups[c.p.key] = g
	}
	g.clients = append(g.clients, c)
	return true
}

// detach removes c from live fan-out, if it is there.
func (h *Hub) detach(c *client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	g := h.groups[c.p.key]
	if g == nil {
		return
	}
	for i, x := range g.clients {
		if x == c {
			g.remove(i)
			break
		}
	}
	if len(g.clients) == 0 {
		delete(h.groups, c.p.key)
	}
}

// enter counts a new stream, unless shutdown has begun.
func (h *Hub) enter() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.streams++
	return true
}

func (h *Hub) leave() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.streams--
	if h.closed && h.streams == 0 {
		close(h.idle)
	}
}

// Clients is the number of streams being served.
func (h *Hub) Clients() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.streams
}

func (h *Hub) beginShutdown() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	close(h.closing)
	if h.streams == 0 {
		close(h.idle)
	}
}

// Shutdown refuses new streams (503), ends every stream with a jittered
// retry hint, and waits for them to finish or ctx to end. Run keeps
// running until its own context ends.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.beginShutdown()
	select {
	case <-h.idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("sse: shutdown with %d streams still open: %w", h.Clients(), ctx.Err())
	}
}

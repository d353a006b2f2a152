package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	devtls "github.com/eddy-iot/eddy/tls"
)

// proto is how a group of streams reaches the server.
type proto string

const (
	protoH2 proto = "h2" // HTTP/2 over TLS/TCP, a Chromium-like client (h2conn)
	protoH3 proto = "h3" // quic-go's http3.Transport over QUIC
)

// streamStats is what one SSE stream's reader saw. The reader goroutine
// writes it; the counters are atomic and the histograms sit under mu so
// that phases can take them while the stream runs.
type streamStats struct {
	proto    proto
	events   atomic.Uint64 // reading events received
	gaps     atomic.Uint64 // gap events received
	jumps    atomic.Uint64 // readings whose seq was not the previous seq + 1
	disorder atomic.Uint64 // readings whose seq was not above the previous one
	lastSeq  atomic.Uint64
	lastRecv atomic.Int64 // unix ns when the last reading arrived
	lat      *latencies   // shared by the streams of one connection
}

func newStreamStats(p proto, lat *latencies) *streamStats {
	if lat == nil {
		lat = new(latencies)
	}
	return &streamStats{proto: p, lat: lat}
}

// takeHists returns the histograms gathered so far by st's connection
// and starts new ones: the first stream of a connection asked gets them,
// the others nil.
func (st *streamStats) takeHists() (pub, app *hist) {
	return st.lat.take()
}

// latencies are the latency histograms of the streams of one connection.
// One pair per connection rather than per stream: a thousand streams'
// histograms do not stay in the CPU's caches, and adding to them was a
// twentieth of the load generator's CPU.
type latencies struct {
	mu  sync.Mutex // protects pub and app
	pub *hist      // publish (payload) -> receive
	app *hist      // record ts (eddy's receipt, ms precision) -> receive
}

// add records a stream's latencies, in nanoseconds.
func (l *latencies) add(pubLat, appLat []int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pub == nil {
		l.pub, l.app = new(hist), new(hist)
	}
	for _, d := range pubLat {
		l.pub.add(d)
	}
	for _, d := range appLat {
		l.app.add(d)
	}
}

func (l *latencies) take() (pub, app *hist) {
	l.mu.Lock()
	defer l.mu.Unlock()
	pub, app = l.pub, l.app
	l.pub, l.app = nil, nil
	return pub, app
}

// clientSet is many SSE streams to one server, in groups of perConn
// streams sharing one connection. Its context ends every stream; close
// waits for the readers.
type clientSet struct {
	ctx     context.Context
	cancel  context.CancelFunc
	record  recordWindow
	sMu     sync.Mutex // protects streams
	streams []*streamStats
	ended   atomic.Uint64 // streams that ended before close
	errMu   sync.Mutex    // protects first
	first   error         // first reader error
	wg      sync.WaitGroup
	closeMu sync.Mutex // protects closers
	closers []func()
	quic    []*quic.Conn // the HTTP/3 connections, for their packet counts; under closeMu
}

// recordWindow selects the readings whose latencies are recorded: those
// published (by the payload's send time) in [from, to), whenever they
// arrive, so that a window's late arrivals count too. The zero value
// records nothing.
type recordWindow struct {
	from, to atomic.Int64 // unix ns
}

func (w *recordWindow) set(from, to int64) {
	w.to.Store(0) // never a moment when a stale bound admits too much
	w.from.Store(from)
	w.to.Store(to)
}

func (w *recordWindow) has(sent int64) bool { return sent >= w.from.Load() && sent < w.to.Load() }

// connectSpec says what streams to open.
type connectSpec struct {
	n       int     // streams
	perConn int     // streams per connection
	protos  []proto // connection i uses protos[i % len]
	query   string  // /events query, e.g. "topic=load/%23"
	limit   time.Duration
}

// connect opens spec.n streams to srv, each ready (its retry line read)
// when connect returns. On error every stream is closed.
func connect(ctx context.Context, srv *server, spec connectSpec) (*clientSet, error) {
	tc, err := devtls.ClientConfig(devtls.ClientOptions{CAFile: srv.caFile})
	if err != nil {
		return nil, fmt.Errorf("load: client TLS: %w", err)
	}
	cs := &clientSet{}
	cs.ctx, cs.cancel = context.WithCancel(ctx)
	url := srv.base + "/events?" + spec.query
	groups := (spec.n + spec.perConn - 1) / spec.perConn
	sem := make(chan struct{}, 4) // groups connecting at once
	errs := make(chan error, groups)
	var ready sync.WaitGroup
	timer := time.AfterFunc(spec.limit, cs.cancel)
	defer timer.Stop()
	for g := range groups {
		n := min(spec.perConn, spec.n-g*spec.perConn)
		p := spec.protos[g%len(spec.protos)]
		ready.Add(1)
		go func() {
			defer ready.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errs <- cs.openGroup(url, p, tc, n)
		}()
	}
	ready.Wait()
	close(errs)
	for e := range errs {
		err = errors.Join(err, e)
	}
	if err == nil && cs.ctx.Err() != nil {
		err = fmt.Errorf("load: connecting %d streams took longer than %s", spec.n, spec.limit)
	}
	if err != nil {
		cs.close()
		return nil, err
	}
	return cs, nil
}

// openGroup opens n streams over one new connection, one at a time so that
// they share it, and waits until each is ready.
func (cs *clientSet) openGroup(url string, p proto, tc *tls.Config, n int) error {
	if p == protoH2 {
		return cs.openH2Group(url, tc, n)
	}
	return cs.openH3Group(url, tc, n)
}

// openH3Group is openGroup for HTTP/3.
func (cs *clientSet) openH3Group(url string, tc *tls.Config, n int) error {
	hc, err := dialH3(cs.ctx, url, tc.Clone())
	if err != nil {
		if cs.ctx.Err() != nil {
			return nil // connect reports the timeout
		}
		return fmt.Errorf("load: open h3 connection: %w", err)
	}
	cs.addCloser(hc.close)
	cs.closeMu.Lock()
	cs.quic = append(cs.quic, hc.conn)
	cs.closeMu.Unlock()
	cs.wg.Add(1)
	go func() {
		defer cs.wg.Done()
		hc.accept()
	}()
	lat := new(latencies)
	for range n {
		str, err := hc.open(cs.ctx)
		if err != nil {
			if cs.ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("load: open h3 stream: %w", err)
		}
		st := newStreamStats(protoH3, lat)
		ready, ended := make(chan struct{}), make(chan struct{})
		cs.sMu.Lock()
		cs.streams = append(cs.streams, st)
		cs.sMu.Unlock()
		var readErr error
		cs.wg.Add(1)
		go func() {
			defer cs.wg.Done()
			defer close(ended)
			readErr = readH3(str, &sseLines{st: st, record: &cs.record, ready: ready})
			str.CancelRead(quic.StreamErrorCode(h3NoError))
			if cs.ctx.Err() == nil {
				cs.ended.Add(1)
				cs.setErr(fmt.Errorf("load: h3 stream ended: %w", readErr))
			}
		}()
		select {
		case <-ready:
		case <-ended:
			return fmt.Errorf("load: open h3 stream: %w", readErr)
		case <-cs.ctx.Done():
			return nil // connect reports the timeout
		}
	}
	return nil
}

// openH2Group is openGroup for HTTP/2.
func (cs *clientSet) openH2Group(url string, tc *tls.Config, n int) error {
	hc, err := dialH2(cs.ctx, url, tc.Clone(), func(err error) {
		if cs.ctx.Err() == nil {
			cs.ended.Add(1)
			cs.setErr(fmt.Errorf("load: h2 stream ended: %w", err))
		}
	})
	if err != nil {
		if cs.ctx.Err() != nil {
			return nil // connect reports the timeout
		}
		return fmt.Errorf("load: open h2 connection: %w", err)
	}
	cs.addCloser(hc.close)
	cs.wg.Add(1)
	go func() {
		defer cs.wg.Done()
		hc.readLoop()
	}()
	lat := new(latencies)
	for range n {
		st := newStreamStats(protoH2, lat)
		ready := make(chan struct{})
		s, err := hc.open(st, &cs.record, ready)
		if err != nil {
			return fmt.Errorf("load: open h2 stream: %w", err)
		}
		cs.sMu.Lock()
		cs.streams = append(cs.streams, st)
		cs.sMu.Unlock()
		select {
		case <-ready:
		case <-s.ended:
			return fmt.Errorf("load: open h2 stream: %w", s.err)
		case <-cs.ctx.Done():
			return nil // connect reports the timeout
		}
	}
	return nil
}

func (cs *clientSet) addCloser(f func()) {
	cs.closeMu.Lock()
	defer cs.closeMu.Unlock()
	cs.closers = append(cs.closers, f)
}

func (cs *clientSet) setErr(err error) {
	cs.errMu.Lock()
	defer cs.errMu.Unlock()
	if cs.first == nil {
		cs.first = err
	}
}

// err is the first error of a stream that ended on its own.
func (cs *clientSet) err() error {
	cs.errMu.Lock()
	defer cs.errMu.Unlock()
	return cs.first
}

// close ends every stream, closes the connections and waits for the
// readers.
func (cs *clientSet) close() {
	cs.cancel()
	cs.closeMu.Lock()
	for _, c := range cs.closers {
		c()
	}
	cs.closeMu.Unlock()
	cs.wg.Wait()
}

// sseLines interprets one stream's lines. It tallies what it sees
// locally and publishes the tallies to st at the end of each feed: a
// chunk holds many events, and atomic operations and a lock per event
// were a fifth of the load generator's CPU.
type sseLines struct {
	st      *streamStats
	record  *recordWindow
	ready   chan struct{} // closed at the first line
	ts      tsParser
	gap     bool   // in a gap event
	partial []byte // feed: the start of a line that has not ended yet
	long    bool   // feed: that line is longer than maxLine

	// Since the last publish, except lastSeq (the stream's).
	events, gaps, jumps, disorder uint64
	lastSeq                       uint64
	lastRecv                      int64
	pubLat, appLat                []int64 // latencies of recorded readings, ns
}

// line handles one line, "\n" included, received at now (unix ns).
func (p *sseLines) line(line []byte, now int64) {
	if p.ready != nil {
		close(p.ready)
		p.ready = nil
	}
	switch {
	case bytes.HasPrefix(line, dataPrefix):
		if p.gap {
			p.gaps++
			return
		}
		p.reading(line, now)
	case bytes.HasPrefix(line, gapEvent):
		p.gap = true
	case len(line) <= 2: // "\n" or "\r\n": end of event
		p.gap = false
	}
}

// feed handles a chunk of the stream, whose lines may begin or end in
// other chunks, and publishes what it saw.
func (p *sseLines) feed(b []byte, now int64) {
	defer p.publish()
	if len(p.partial) > 0 || p.long {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			p.keep(b)
			return
		}
		p.keep(b[:i+1])
		if !p.long {
			p.line(p.partial, now)
		}
		p.partial, p.long = p.partial[:0], false
		b = b[i+1:]
	}
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			p.keep(b)
			return
		}
		p.line(b[:i+1], now)
		b = b[i+1:]
	}
}

// keep holds the start of an unfinished line, up to maxLine bytes: a
// longer line is no reading of ours.
func (p *sseLines) keep(b []byte) {
	if p.long || len(p.partial)+len(b) > maxLine {
		p.partial, p.long = p.partial[:0], true
		return
	}
	p.partial = append(p.partial, b...)
}

const maxLine = 8 << 10

// timedReader notes when each Read returned: the receive time of what it
// read. (Asking the clock once per read rather than once per event keeps
// the load generator's share of the CPU down.)
type timedReader struct {
	r  io.Reader
	at int64 // unix ns
}

func (t *timedReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.at = time.Now().UnixNano()
	return n, err
}

var (
	dataPrefix = []byte("data: ")
	gapEvent   = []byte("event: gap")
	seqField   = []byte(`{"seq":`)
	topicField = []byte(`,"topic":"`)
	tsField    = []byte(`,"ts":"`)
	valueField = []byte(`,"value":`)
)

// reading handles one reading's data line:
// {"seq":N,"topic":"...","ts":"2026-11-23T17:00:00.123Z","value":SENT_NS}
// It runs a million times a second, so it expects eddy's field order and
// checks each field where it should be before searching for it.
func (p *sseLines) reading(line []byte, now int64) {
	data := line[len(dataPrefix):]
	rest := after(data, seqField)
	seqDigits := leadingDigits(rest)
	rest = rest[len(seqDigits):]
	seq, _ := atoi(seqDigits)
	if prev := p.lastSeq; prev != 0 && seq != prev+1 {
		p.jumps++
		if seq <= prev {
			p.disorder++
		}
	}
	p.lastSeq, p.lastRecv = seq, now
	p.events++
	if bytes.HasPrefix(rest, topicField) {
		// Skip the topic: a quote inside it would be escaped as \".
		topic := rest[len(topicField):]
		if i := bytes.IndexByte(topic, '"'); i > 0 && topic[i-1] != '\\' {
			rest = topic[i+1:]
		}
	}
	var appAt int64
	if rest = after(rest, tsField); len(rest) > 0 {
		if appAt = p.ts.parse(rest); appAt > 0 {
			rest = rest[len(tsLayout)+1:] // past the closing quote
		}
	}
	value := after(rest, valueField)
	if value == nil {
		value = after(data, valueField) // before ts, then
	}
	sent, ok := atoi(leadingDigits(value))
	if !ok || !p.record.has(int64(sent)) {
		return // not a value the tool published, or not in the window
	}
	p.pubLat = append(p.pubLat, now-int64(sent))
	if appAt > 0 {
		p.appLat = append(p.appLat, now-appAt)
	}
}

// publish adds the tallies since the last publish to st.
func (p *sseLines) publish() {
	st := p.st
	if p.events > 0 {
		st.events.Add(p.events)
		st.lastSeq.Store(p.lastSeq)
		st.lastRecv.Store(p.lastRecv)
	}
	if p.gaps > 0 {
		st.gaps.Add(p.gaps)
	}
	if p.jumps > 0 {
		st.jumps.Add(p.jumps)
		st.disorder.Add(p.disorder)
	}
	if len(p.pubLat) > 0 || len(p.appLat) > 0 {
		st.lat.add(p.pubLat, p.appLat)
	}
	p.events, p.gaps, p.jumps, p.disorder = 0, 0, 0, 0
	p.pubLat, p.appLat = p.pubLat[:0], p.appLat[:0]
}

// after returns what follows key in b: at once when b starts with key,
// by searching otherwise; nil when key is absent.
func after(b, key []byte) []byte {
	if bytes.HasPrefix(b, key) {
		return b[len(key):]
	}
	i := bytes.Index(b, key)
	if i < 0 {
		return nil
	}
	return b[i+len(key):]
}

// leadingDigits returns the decimal digits b starts with.
func leadingDigits(b []byte) []byte {
	n := 0
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		n++
	}
	return b[:n]
}

// atoi parses decimal digits (at most 19, so that they fit an int64)
// without allocating.
func atoi(d []byte) (uint64, bool) {
	if len(d) == 0 || len(d) > 19 {
		return 0, false
	}
	var v uint64
	for _, c := range d {
		v = v*10 + uint64(c-'0')
	}
	return v, true
}

const tsLayout = "2006-01-02T15:04:05.000Z"

// tsParser parses eddy's "2006-01-02T15:04:05.000Z" timestamps into unix
// nanoseconds, caching the day so that the common case is arithmetic.
type tsParser struct {
	day   [10]byte
	dayNs int64
}

// parse returns 0 when b does not start with such a timestamp.
func (p *tsParser) parse(b []byte) int64 {
	if len(b) <= len(tsLayout) || b[10] != 'T' || b[19] != '.' || b[23] != 'Z' || b[24] != '"' {
		return 0
	}
	if !bytes.Equal(p.day[:], b[:10]) {
		d, err := time.Parse("2006-01-02", string(b[:10]))
		if err != nil {
			return 0
		}
		copy(p.day[:], b[:10])
		p.dayNs = d.UnixNano()
	}
	n := func(i, w int) int64 {
		v := int64(0)
		for _, c := range b[i : i+w] {
			v = v*10 + int64(c-'0')
		}
		return v
	}
	ms := n(11, 2)*3600000 + n(14, 2)*60000 + n(17, 2)*1000 + n(20, 3)
	return p.dayNs + ms*int64(time.Millisecond)
}

package main

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// Server kinds under test.
const (
	kindEddy     = "eddy"
	kindBaseline = "baseline"
)

// streamResult is one measured window of the stream scenario.
type streamResult struct {
	kind       string
	run, rate  int
	clients    int
	perSec     float64         // deliveries per second in the window
	app, pub   hist            // latency from the record's ts / from the publish
	appByProto map[proto]*hist // app, per protocol
	published  int
	publishFor time.Duration // how long the publisher ran
	appended   float64       // records/s eddy appended in the window; -1: not eddy
	missing    int64         // deliveries owed but not received after the drain
	gaps       uint64        // gap events
	jumps      uint64        // seq discontinuities
	serverDrop float64       // eddy_stream_dropped_total delta; -1: not eddy
	perFlush   float64       // eddy's events per flushed write; -1: not eddy
	quicIn     float64       // HTTP/3 packets received per second by the clients
	quicSize   float64       // their mean size, bytes
	quicOut    float64       // HTTP/3 packets the clients sent per second (acknowledgements)
	// HTTP/3 packets eddy sent per second, and declared lost in the
	// window; -1 when not known
	quicServerSent, quicServerLost float64
	drained                        bool
	serverCPU                      time.Duration
	cpuPerDel                      time.Duration // server CPU per delivery
	cores                          [3]float64    // server, tool, broker CPU cores in use
	// the share of the server's and the tool's goroutine wake-ups that
	// waited over lateWake for a CPU; -1 when not known
	lateServer, lateTool float64
	rss                  int64  // server RSS at the window's end
	ended                uint64 // streams that ended on their own
}

// memResult is the server's memory with clients connected and idle.
type memResult struct {
	kind      string
	clients   int
	before    int64 // RSS before the clients connected
	after     int64 // RSS with them connected
	perClient float64
}

func (e *env) stream(ctx context.Context) error {
	kinds := []string{kindEddy}
	if e.f.baseline {
		kinds = append(kinds, kindBaseline)
	}
	var results []streamResult
	var mems []memResult
	for _, k := range kinds {
		rs, m, err := e.streamKind(ctx, k)
		if err != nil {
			return err
		}
		results, mems = append(results, rs...), append(mems, m)
	}
	if e.f.idle > 0 {
		for _, k := range kinds {
			m, err := e.idleKind(ctx, k)
			if err != nil {
				return err
			}
			mems = append(mems, m)
		}
	}
	printStreamReport(e.f, results, mems)
	return nil
}

// target is a server under test with its source of records: eddy fed
// by mosquitto and an MQTT publisher, or the baseline, which makes its
// own.
type target struct {
	kind   string
	srv    *server
	broker *child     // nil for the baseline
	pub    *publisher // nil for the baseline
}

// startTarget starts a server of kind, with room for streams clients.
func (e *env) startTarget(ctx context.Context, kind, dir string, streams int) (*target, error) {
	t := &target{kind: kind}
	var err error
	if kind == kindBaseline {
		if t.srv, err = startBaseline(ctx, dir); err != nil {
			return nil, err
		}
		return t, nil
	}
	var extra []string
	if e.f.inflight > 0 {
		extra = append(extra, fmt.Sprintf("max_inflight_messages %d", e.f.inflight))
	}
	mq, broker, err := startMosquitto(ctx, dir, extra...)
	if err != nil {
		return nil, err
	}
	t.broker = mq
	t.srv, err = startEddy(ctx, e.bin, dir, eddySpec{broker: broker, filter: "load/#", qos: 1, maxStreams: streams + 100, debug: e.f.debugListen})
	if err == nil {
		t.pub, err = newPublisher(broker, "eddy-load-pub")
	}
	if err != nil {
		t.close()
		return nil, err
	}
	return t, nil
}

// close stops the publisher, the server and the broker, in that order.
func (t *target) close() {
	if t.pub != nil {
		t.pub.close()
	}
	if t.srv != nil {
		t.srv.stop(10 * time.Second)
	}
	if t.broker != nil {
		t.broker.stop(5 * time.Second)
	}
}

// publish makes rate records/s over topics for d and returns how many.
func (t *target) publish(ctx context.Context, rate, topics int, d time.Duration) (int, error) {
	if t.pub == nil {
		return t.srv.generate(ctx, rate, topics, d)
	}
	pctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	n, _, err := t.pub.run(pctx, publishSpec{prefix: "load/", topics: topics, rate: rate})
	return n, err
}

type usage3 [3]procUsage // server, tool, broker

// usage reads the CPU and memory of the server, the tool and the broker
// (zero when there is none).
func (t *target) usage() (usage3, error) {
	var u usage3
	var err error
	pids := []int{t.srv.pid(), os.Getpid(), 0}
	if t.broker != nil {
		pids[2] = t.broker.pid()
	}
	for i, pid := range pids {
		if pid == 0 {
			continue
		}
		if u[i], err = readUsage(pid); err != nil {
			return u, err
		}
	}
	return u, nil
}

// protosOf: eddy's connections take -protos in turn (default half
// HTTP/2, half HTTP/3); the baseline serves HTTP/2 only.
func (e *env) protosOf(kind string) []proto {
	if kind == kindBaseline {
		return []proto{protoH2}
	}
	return e.f.protos
}

// streamKind measures one server kind at every rate, runs times.
func (e *env) streamKind(ctx context.Context, kind string) ([]streamResult, memResult, error) {
	mem := memResult{kind: kind, clients: e.f.clients}
	dir, err := e.subdir("stream-" + kind)
	if err != nil {
		return nil, mem, err
	}
	t, err := e.startTarget(ctx, kind, dir, e.f.clients)
	if err != nil {
		return nil, mem, err
	}
	defer t.close()
	cs, err := e.connectMeasured(ctx, t, e.f.clients, &mem)
	if err != nil {
		return nil, mem, err
	}
	defer cs.close()
	var results []streamResult
	for run := 1; run <= e.f.runs; run++ {
		for _, rate := range e.f.rates {
			r, err := e.measure(ctx, t, cs, run, rate)
			if err != nil {
				return nil, mem, err
			}
			printStreamLine(e.f.out, &r)
			results = append(results, r)
		}
	}
	return results, mem, nil
}

// connectMeasured connects n clients to t and fills mem with the server's
// RSS before and (after a settle) with them.
func (e *env) connectMeasured(ctx context.Context, t *target, n int, mem *memResult) (*clientSet, error) {
	if err := sleepCtx(ctx, 2*time.Second); err != nil {
		return nil, err
	}
	u, err := readUsage(t.srv.pid())
	if err != nil {
		return nil, err
	}
	mem.before = u.rss
	e.lg.Info("connecting", "server", t.kind, "clients", n, "per_conn", e.f.perConn, "server_nofile", nofileOf(t.srv.pid()))
	cs, err := connect(ctx, t.srv, connectSpec{n: n, perConn: e.f.perConn, protos: e.protosOf(t.kind),
		query: "topic=load/%23", limit: 5 * time.Minute})
	if err != nil {
		return nil, err
	}
	if err := sleepCtx(ctx, 5*time.Second); err != nil {
		cs.close()
		return nil, err
	}
	if u, err = readUsage(t.srv.pid()); err == nil {
		err = cs.err()
	}
	if err != nil {
		cs.close()
		return nil, err
	}
	mem.after = u.rss
	mem.perClient = float64(mem.after-mem.before) / float64(n)
	return cs, nil
}

// totals sums the streams' counters.
type totals struct{ events, gaps, jumps uint64 }

func (cs *clientSet) totals() totals {
	cs.sMu.Lock()
	defer cs.sMu.Unlock()
	var t totals
	for _, st := range cs.streams {
		t.events += st.events.Load()
		t.gaps += st.gaps.Load()
		t.jumps += st.jumps.Load()
	}
	return t
}

// quicCounts sums the HTTP/3 connections' packet counters.
type quicCounts struct{ pktsIn, bytesIn, pktsOut uint64 }

func (cs *clientSet) quicCounts() quicCounts {
	cs.closeMu.Lock()
	defer cs.closeMu.Unlock()
	var q quicCounts
	for _, c := range cs.quic {
		st := c.ConnectionStats()
		q.pktsIn += st.PacketsReceived
		q.bytesIn += st.BytesReceived
		q.pktsOut += st.PacketsSent
	}
	return q
}

// takeHists merges and resets every stream's histograms; byProto holds
// the append-to-receive latencies per protocol.
func (cs *clientSet) takeHists() (pub, app hist, byProto map[proto]*hist) {
	cs.sMu.Lock()
	defer cs.sMu.Unlock()
	byProto = map[proto]*hist{}
	for _, st := range cs.streams {
		p, a := st.takeHists()
		pub.merge(p)
		app.merge(a)
		if byProto[st.proto] == nil {
			byProto[st.proto] = new(hist)
		}
		byProto[st.proto].merge(a)
	}
	return pub, app, byProto
}

// waitQuiet waits until no stream has received anything for a second, or
// limit passes; it reports whether the streams went quiet.
func (cs *clientSet) waitQuiet(ctx context.Context, limit time.Duration) bool {
	prev, still := cs.totals().events, 0
	err := waitFor(ctx, limit, "streams to catch up", func() bool {
		time.Sleep(200 * time.Millisecond)
		cur := cs.totals().events
		if cur == prev {
			still++
		} else {
			prev, still = cur, 0
		}
		return still >= 4
	})
	return err == nil
}

// measure publishes at rate for warmup+window and measures the window,
// then waits for the streams to catch up and counts what went missing.
func (e *env) measure(ctx context.Context, t *target, cs *clientSet, run, rate int) (streamResult, error) {
	r := streamResult{kind: t.kind, run: run, rate: rate, serverDrop: -1, appended: -1, perFlush: -1,
		quicServerSent: -1, quicServerLost: -1}
	r.clients = len(cs.streams)
	before := t.srv.figures(t.kind) // the run's drops count from here
	tot0 := cs.totals()
	pctx, stopPub := context.WithCancel(ctx)
	defer stopPub()
	type pubOut struct {
		sent int
		err  error
	}
	pubDone := make(chan pubOut, 1)
	r.publishFor = e.f.warmup + e.f.window
	go func() {
		n, err := t.publish(pctx, rate, e.f.topics, r.publishFor)
		pubDone <- pubOut{n, err}
	}()
	if err := sleepCtx(ctx, e.f.warmup); err != nil {
		return r, err
	}
	cs.takeHists() // start empty
	w0, q0 := cs.totals(), cs.quicCounts()
	f0, own0 := t.srv.figures(t.kind), ownSched()
	u0, err := t.usage()
	if err != nil {
		return r, err
	}
	t0 := time.Now()
	cs.record.set(t0.UnixNano(), math.MaxInt64)
	err = sleepCtx(ctx, e.f.window)
	t1 := time.Now()
	cs.record.set(t0.UnixNano(), t1.UnixNano())
	elapsed := t1.Sub(t0)
	w1, q1 := cs.totals(), cs.quicCounts()
	u1, uerr := t.usage()
	f1 := t.srv.figures(t.kind)
	r.lateServer, r.lateTool = schedOver(f0.sched, f1.sched, lateWake), schedOver(own0, ownSched(), lateWake)
	r.perFlush = f1.ratio(f0, evSent, evFlushes)
	if err = firstErr(err, uerr); err != nil {
		return r, err
	}
	var po pubOut
	select {
	case po = <-pubDone:
	case <-time.After(time.Minute):
		return r, fmt.Errorf("load: the %s publisher did not end", t.kind)
	}
	if po.err != nil {
		return r, po.err
	}
	r.drained = cs.waitQuiet(ctx, e.f.maxDrain)
	tot1 := cs.totals()
	r.pub, r.app, r.appByProto = cs.takeHists() // every reading published in the window
	cs.record.set(0, 0)
	deliveries := w1.events - w0.events
	r.perSec = float64(deliveries) / elapsed.Seconds()
	if in := q1.pktsIn - q0.pktsIn; in > 0 {
		r.quicIn = float64(in) / elapsed.Seconds()
		r.quicSize = float64(q1.bytesIn-q0.bytesIn) / float64(in)
		r.quicOut = float64(q1.pktsOut-q0.pktsOut) / elapsed.Seconds()
		r.quicServerSent = f1.delta(f0, h3Sent) / elapsed.Seconds()
		r.quicServerLost = f1.delta(f0, h3Lost)
	}
	if d := f1.delta(f0, appended); d >= 0 {
		r.appended = d / elapsed.Seconds()
	}
	r.published = po.sent
	r.missing = int64(po.sent)*int64(r.clients) - int64(tot1.events-tot0.events)
	r.gaps, r.jumps = tot1.gaps-tot0.gaps, tot1.jumps-tot0.jumps
	r.ended = cs.ended.Load()
	after := t.srv.figures(t.kind)
	r.serverDrop = after.delta(before, dropped)
	r.serverCPU = u1[0].cpu - u0[0].cpu
	if deliveries > 0 {
		r.cpuPerDel = r.serverCPU / time.Duration(deliveries)
	}
	for i := range r.cores {
		r.cores[i] = (u1[i].cpu - u0[i].cpu).Seconds() / elapsed.Seconds()
	}
	r.rss = u1[0].rss
	return r, nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// idleKind measures the server's RSS per idle client with e.f.idle
// streams connected and nothing published.
func (e *env) idleKind(ctx context.Context, kind string) (memResult, error) {
	mem := memResult{kind: kind, clients: e.f.idle}
	dir, err := e.subdir("idle-" + kind)
	if err != nil {
		return mem, err
	}
	t, err := e.startTarget(ctx, kind, dir, e.f.idle)
	if err != nil {
		return mem, err
	}
	defer t.close()
	cs, err := e.connectMeasured(ctx, t, e.f.idle, &mem)
	if err != nil {
		return mem, err
	}
	cs.close()
	fmt.Fprintf(e.f.out, "idle %-8s %5d clients: RSS %.1f -> %.1f MiB, %.1f KiB per client\n",
		kind, e.f.idle, mib(mem.before), mib(mem.after), mem.perClient/1024)
	return mem, nil
}

// figure is one of eddy's counters the tool reads around a window.
type figure int

const (
	appended figure = iota
	evSent
	evFlushes
	h3Sent
	h3Lost
	dropped
	nFigures
)

var figureNames = [nFigures]string{
	appended:  "eddy_ringlog_appended_total",
	evSent:    "eddy_stream_events_sent_total",
	evFlushes: "eddy_stream_flushes_total",
	h3Sent:    "eddy_http3_packets_sent_total",
	h3Lost:    "eddy_http3_packets_lost_total",
	dropped:   "eddy_stream_dropped_total",
}

// figures are eddy's counters and scheduling latencies from one scrape;
// a counter not read is -1.
type figures struct {
	v     [nFigures]float64
	sched schedHist
}

// delta is f's counter minus the earlier from's; -1 when either is
// unknown.
func (f *figures) delta(from figures, c figure) float64 {
	if f.v[c] < 0 || from.v[c] < 0 {
		return -1
	}
	return f.v[c] - from.v[c]
}

// ratio is delta(num) / delta(den); -1 when unknown or den did not grow.
func (f *figures) ratio(from figures, num, den figure) float64 {
	n, d := f.delta(from, num), f.delta(from, den)
	if n < 0 || d <= 0 {
		return -1
	}
	return n / d
}

// figures scrapes eddy's /metrics once; all unknown when the server is
// not eddy.
func (s *server) figures(kind string) figures {
	var lines []string
	s.scrape(kind, func(line string) { lines = append(lines, line) })
	return parseFigures(lines)
}

// parseFigures reads the figures from a Prometheus text exposition.
func parseFigures(lines []string) figures {
	var f figures
	for i := range f.v {
		f.v[i] = -1
	}
	for _, line := range lines {
		for i, name := range figureNames {
			if rest, ok := strings.CutPrefix(line, name+" "); ok {
				if v, err := strconv.ParseFloat(rest, 64); err == nil {
					f.v[i] = v
				}
			}
		}
	}
	f.sched = parseSched(lines)
	return f
}

// scrape calls each with every line of eddy's /metrics.
func (s *server) scrape(kind string, each func(line string)) {
	if kind != kindEddy {
		return
	}
	c, err := s.httpClient()
	if err != nil {
		return
	}
	defer c.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, s.base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+loadToken)
	resp, err := c.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		each(sc.Text())
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

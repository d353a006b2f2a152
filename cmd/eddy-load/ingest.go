package main

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// ingestResult is one run of the ingest scenario for one subscriber.
type ingestResult struct {
	kind      string // kindEddy or "paho" (the plain subscriber)
	run, rate int    // rate 0: as fast as the broker goes
	n         int
	perSec    float64       // n / (last receipt - first publish)
	pubPerSec float64       // the publisher's own rate
	lat       hist          // publish -> receipt
	app       hist          // eddy's receipt (the record's ts) -> receipt; eddy only
	cpuPerMsg time.Duration // eddy's CPU per message; 0 for paho
}

const kindPaho = "paho"

// ingestTopics is how many topics the ingest scenario publishes to.
const ingestTopics = 10

// ingest runs the scenario once per broker in-flight window.
func (e *env) ingest(ctx context.Context) error {
	for _, inflight := range e.f.ingestInflight {
		if err := e.ingestWith(ctx, inflight); err != nil {
			return err
		}
	}
	return nil
}

// ingestWith measures with mosquitto's max_inflight_messages set to
// inflight (0: mosquitto's default, 20). eddy acknowledges a QoS 1
// message only once it is durable, so the window bounds how many messages
// the broker sends ahead of a commit.
func (e *env) ingestWith(ctx context.Context, inflight int) error {
	dir, err := e.subdir("ingest")
	if err != nil {
		return err
	}
	var extra []string
	if inflight > 0 {
		extra = append(extra, fmt.Sprintf("max_inflight_messages %d", inflight))
	}
	mq, broker, err := startMosquitto(ctx, dir, extra...)
	if err != nil {
		return err
	}
	defer mq.stop(5 * time.Second)
	srv, err := startEddy(ctx, e.bin, dir, eddySpec{broker: broker, filter: "ingest/#", qos: e.f.ingestQoS, maxStreams: 10, debug: e.f.debugListen})
	if err != nil {
		return err
	}
	defer srv.stop(10 * time.Second)
	// mode=exact: the one client must see every message, even if it
	// falls behind at the maximum rate.
	cs, err := connect(ctx, srv, connectSpec{n: 1, perConn: 1, protos: []proto{protoH2},
		query: "topic=ingest/%23&mode=exact", limit: time.Minute})
	if err != nil {
		return err
	}
	defer cs.close()
	plain, err := newPlainSub(broker, "base/#")
	if err != nil {
		return err
	}
	defer plain.c.Disconnect(250)
	pub, err := newPublisher(broker, "eddy-load-ingest-pub")
	if err != nil {
		return err
	}
	defer pub.close()
	var rs []ingestResult
	for run := 1; run <= e.f.runs; run++ {
		for _, rate := range []int{e.f.ingestRate, 0} {
			n := e.f.ingestN
			if rate > 0 {
				n = e.f.ingestPaced
			}
			b, err := e.ingestPlain(ctx, plain, pub, run, rate, n)
			if err != nil {
				return err
			}
			r, err := e.ingestEddy(ctx, srv, cs, pub, run, rate, n)
			if err != nil {
				return err
			}
			for _, x := range []*ingestResult{&b, &r} {
				printIngestLine(e.f, x)
			}
			rs = append(rs, b, r)
		}
	}
	printIngestReport(e.f, inflight, rs)
	return nil
}

// ingestPlain publishes n messages to base/... and waits for the plain
// subscriber to receive them all.
func (e *env) ingestPlain(ctx context.Context, s *plainSub, pub *publisher, run, rate, n int) (ingestResult, error) {
	r := ingestResult{kind: kindPaho, run: run, rate: rate, n: n}
	s.reset()
	sent, first, err := pub.run(ctx, publishSpec{prefix: "base/", topics: ingestTopics, rate: rate, n: n})
	if err != nil {
		return r, err
	}
	r.pubPerSec = float64(sent) / time.Since(first).Seconds()
	if err := waitFor(ctx, time.Minute, "the plain subscriber to receive every message", func() bool { return s.count() >= n }); err != nil {
		return r, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r.perSec = float64(n) / s.last.Sub(first).Seconds()
	r.lat = s.h
	return r, nil
}

// ingestEddy publishes n messages to ingest/... and waits for eddy's SSE
// client to receive them all.
func (e *env) ingestEddy(ctx context.Context, srv *server, cs *clientSet, pub *publisher, run, rate, n int) (ingestResult, error) {
	r := ingestResult{kind: kindEddy, run: run, rate: rate, n: n}
	st := cs.streams[0]
	cs.takeHists()
	ev0 := st.events.Load()
	u0, err := readUsage(srv.pid())
	if err != nil {
		return r, err
	}
	cs.record.set(0, math.MaxInt64)
	defer cs.record.set(0, 0)
	sent, first, err := pub.run(ctx, publishSpec{prefix: "ingest/", topics: ingestTopics, rate: rate, n: n})
	if err != nil {
		return r, err
	}
	r.pubPerSec = float64(sent) / time.Since(first).Seconds()
	err = waitFor(ctx, time.Minute, "eddy's SSE client to receive every message", func() bool {
		return st.events.Load()-ev0 >= uint64(n) || cs.err() != nil
	})
	if err = firstErr(cs.err(), err); err != nil {
		return r, err
	}
	u1, err := readUsage(srv.pid())
	if err != nil {
		return r, err
	}
	r.perSec = float64(n) / time.Unix(0, st.lastRecv.Load()).Sub(first).Seconds()
	r.cpuPerMsg = (u1.cpu - u0.cpu) / time.Duration(n)
	r.lat, r.app, _ = cs.takeHists()
	return r, nil
}

// plainSub is the baseline subscriber: paho with default options,
// acknowledging at once, storing nothing.
type plainSub struct {
	c    paho.Client
	mu   sync.Mutex // protects the fields below
	h    hist
	n    int
	last time.Time
}

func newPlainSub(broker, filter string) (*plainSub, error) {
	s := &plainSub{}
	s.c = paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID("eddy-load-plain").
		SetCleanSession(true).SetAutoReconnect(false))
	if tok := s.c.Connect(); !tok.WaitTimeout(mqttTimeout) || tok.Error() != nil {
		return nil, fmt.Errorf("load: plain subscriber connect: %v", tok.Error())
	}
	if tok := s.c.Subscribe(filter, 1, s.onMessage); !tok.WaitTimeout(mqttTimeout) || tok.Error() != nil {
		s.c.Disconnect(250)
		return nil, fmt.Errorf("load: plain subscriber subscribe: %v", tok.Error())
	}
	return s, nil
}

func (s *plainSub) onMessage(_ paho.Client, m paho.Message) {
	now := time.Now()
	sent, err := strconv.ParseInt(string(m.Payload()), 10, 64)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.h.add(now.UnixNano() - sent)
	s.n++
	s.last = now
}

func (s *plainSub) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.h, s.n = hist{}, 0
}

func (s *plainSub) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func rateName(rate int) string {
	if rate == 0 {
		return "max"
	}
	return strconv.Itoa(rate) + "/s"
}

func printIngestLine(f flags, r *ingestResult) {
	fmt.Fprintf(f.out, "ingest %-5s run %d rate %-7s: %d msgs, %8.0f msgs/s received (publisher %8.0f/s), publish->recv p50 %.2f p99 %.2f ms",
		r.kind, r.run, rateName(r.rate), r.n, r.perSec, r.pubPerSec, ms(r.lat.quantile(.5)), ms(r.lat.quantile(.99)))
	if r.kind == kindEddy {
		fmt.Fprintf(f.out, ", append->recv p50 %.2f p99 %.2f ms, eddy CPU %.1f µs/msg",
			ms(r.app.quantile(.5)), ms(r.app.quantile(.99)), float64(r.cpuPerMsg)/1e3)
	}
	if r.rate > 0 && r.pubPerSec < 0.9*float64(r.rate) {
		fmt.Fprintf(f.out, " (PUBLISHER BEHIND its rate: the machine is overloaded)")
	}
	fmt.Fprintln(f.out)
}

func printIngestReport(f flags, inflight int, rs []ingestResult) {
	w := f.out
	window := "20 (mosquitto's default)"
	if inflight > 0 {
		window = strconv.Itoa(inflight)
	}
	fmt.Fprintf(w, "\n### Ingest: published at QoS 1, eddy subscribed at QoS %d, via mosquitto (max_inflight_messages %s), %d topics, one SSE client (HTTP/2, mode=exact); median [min–max] of %d runs\n\n",
		f.ingestQoS, window, ingestTopics, f.runs)
	fmt.Fprintln(w, "| subscriber | rate | messages | msgs/s received | publish→recv p50 ms | p99 ms | eddy CPU µs/msg |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	get := func(kind string, rate int, g func(*ingestResult) float64) []float64 {
		var out []float64
		for i := range rs {
			if rs[i].kind == kind && rs[i].rate == rate {
				out = append(out, g(&rs[i]))
			}
		}
		return out
	}
	rates := []int{f.ingestRate, 0}
	for _, rate := range rates {
		for _, k := range []string{kindPaho, kindEddy} {
			n := f.ingestN
			if rate > 0 {
				n = f.ingestPaced
			}
			cpu := "–"
			if k == kindEddy {
				cpu = spread("%.1f", get(k, rate, func(r *ingestResult) float64 { return float64(r.cpuPerMsg) / 1e3 }))
			}
			fmt.Fprintf(w, "| %s | %s | %d | %s | %s | %s | %s |\n", map[string]string{kindPaho: "plain paho", kindEddy: "eddy → SSE"}[k],
				rateName(rate), n,
				spread("%.0f", get(k, rate, func(r *ingestResult) float64 { return r.perSec })),
				spread("%.2f", get(k, rate, func(r *ingestResult) float64 { return ms(r.lat.quantile(.5)) })),
				spread("%.1f", get(k, rate, func(r *ingestResult) float64 { return ms(r.lat.quantile(.99)) })), cpu)
		}
	}
	fmt.Fprintln(w)
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	for _, rate := range rates {
		e := median(get(kindEddy, rate, func(r *ingestResult) float64 { return r.perSec }))
		b := median(get(kindPaho, rate, func(r *ingestResult) float64 { return r.perSec }))
		fmt.Fprintf(w, "- %s: eddy / plain subscriber rate %.2fx", rateName(rate), e/b)
		if rate == 0 {
			fmt.Fprintf(w, " (target at least 0.7x: %s)", verdict(e/b >= 0.7))
		} else {
			p99 := median(get(kindEddy, rate, func(r *ingestResult) float64 { return ms(r.lat.quantile(.99)) }))
			fmt.Fprintf(w, "; eddy p99 %.1f ms (target under 20 ms: %s)", p99, verdict(p99 < 20))
		}
		fmt.Fprintln(w)
	}
}

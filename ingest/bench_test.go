package ingest

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eddy-iot/eddy/ringlog"
)

// BenchmarkMQTTIngest publishes b.N QoS 1 messages to a real broker and
// measures two subscribers of the same stream, in the same run:
//
//   - eddy: MQTT ingest appending to a ring log (default 100ms sync, acks
//     after durability), observed by a Notify/ReadAfter reader standing in
//     for the SSE hub;
//   - base: a plain paho subscriber that acks at once (the baseline).
//
// Reported: messages/s of each (first publish to last receipt), their ratio,
// and publish-to-receipt latency p50/p99 in ms. rate=max publishes as fast
// as the broker takes it; rate=1000 paces to 1,000 msgs/s.
//
//	go test -run XXX -bench BenchmarkMQTTIngest -benchtime 5000x ./ingest/
func BenchmarkMQTTIngest(b *testing.B) {
	brokers := []struct {
		name  string
		start func(b *testing.B) string
	}{
		{"mochi", func(b *testing.B) string { return startBroker(b, "127.0.0.1:0").url }},
		{"mosquitto", func(b *testing.B) string {
			mq := newMosquitto(b)
			mq.start()
			return mq.url()
		}},
		// A larger in-flight window than mosquitto's default 20 lets
		// acknowledgements lag by a whole group commit without stalling.
		{"mosquitto-inflight1000", func(b *testing.B) string {
			mq := newMosquitto(b, "max_inflight_messages 1000")
			mq.start()
			return mq.url()
		}},
	}
	for _, br := range brokers {
		for _, rate := range []int{0, 1000} {
			name := fmt.Sprintf("broker=%s/rate=max", br.name)
			if rate > 0 {
				name = fmt.Sprintf("broker=%s/rate=%d", br.name, rate)
			}
			b.Run(name, func(b *testing.B) { benchIngest(b, br.start(b), rate) })
		}
	}
}

func benchIngest(b *testing.B, url string, rate int) {
	l := openLog(b, 100*time.Millisecond)
	cfg := testConfig(url, "eddy-bench", "bench/#")
	cfg.AckDelay = nil // the default, as a user gets it
	m, stop := runMQTT(b, cfg, l)
	defer stop()
	waitConnected(b, m, 1)
	base := newBaseline(b, url, b.N)
	eddy := newLatencies(b.N)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		readLog(ctx, l, eddy)
	}()

	pub := newPublisher(b, url)
	b.ResetTimer()
	start := time.Now()
	publishN(b, pub.c, b.N, rate)
	waitFor(b, 60*time.Second, "both subscribers to receive every message", func() bool {
		return eddy.count() >= b.N && base.lat.count() >= b.N
	})
	b.StopTimer()
	cancel()
	<-readerDone

	eRate := float64(b.N) / eddy.last().Sub(start).Seconds()
	bRate := float64(b.N) / base.lat.last().Sub(start).Seconds()
	b.ReportMetric(eRate, "eddy_msgs/s")
	b.ReportMetric(bRate, "base_msgs/s")
	b.ReportMetric(eRate/bRate, "eddy/base")
	b.ReportMetric(eddy.quantile(0.50), "eddy_p50_ms")
	b.ReportMetric(eddy.quantile(0.99), "eddy_p99_ms")
	b.ReportMetric(base.lat.quantile(0.50), "base_p50_ms")
	b.ReportMetric(base.lat.quantile(0.99), "base_p99_ms")
}

// publishN publishes n messages whose payload is the send time in unix
// nanoseconds, keeping at most 256 unacknowledged.
func publishN(b *testing.B, c paho.Client, n, rate int) {
	var tick *time.Ticker
	if rate > 0 {
		tick = time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
	}
	window := make([]paho.Token, 0, 256)
	for i := range n {
		if tick != nil {
			<-tick.C
		}
		if len(window) == cap(window) {
			if !window[0].WaitTimeout(30*time.Second) || window[0].Error() != nil {
				b.Fatalf("publish: %v", window[0].Error())
			}
			window = append(window[:0], window[1:]...)
		}
		payload := strconv.AppendInt(nil, time.Now().UnixNano(), 10)
		window = append(window, c.Publish("bench/"+strconv.Itoa(i%10), 1, false, payload))
	}
	for _, tok := range window {
		if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			b.Fatalf("publish: %v", tok.Error())
		}
	}
}

// readLog follows the log like the SSE hub will, recording each record's
// latency from its publish time (the payload) to when the reader saw it.
func readLog(ctx context.Context, l *ringlog.Log, lat *latencies) {
	var after uint64
	var buf []ringlog.Record
	for {
		ch := l.Notify()
		buf, _ = l.ReadAfter(buf[:0], after, 1024)
		now := time.Now()
		for _, r := range buf {
			lat.add(r.Value, now)
			after = r.Seq
		}
		if len(buf) > 0 {
			continue
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

// baseline is a plain paho subscriber: auto-ack, no storage.
type baseline struct {
	c   paho.Client
	lat *latencies
}

func newBaseline(b *testing.B, url string, n int) *baseline {
	base := &baseline{lat: newLatencies(n)}
	o := paho.NewClientOptions().AddBroker(url).SetClientID("bench-baseline").SetCleanSession(true)
	base.c = paho.NewClient(o)
	if tok := base.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("baseline connect: %v", tok.Error())
	}
	b.Cleanup(func() { base.c.Disconnect(100) })
	tok := base.c.Subscribe("bench/#", 1, func(_ paho.Client, msg paho.Message) {
		base.lat.add(msg.Payload(), time.Now())
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("baseline subscribe: %v", tok.Error())
	}
	return base
}

// latencies collects publish-to-receipt delays.
type latencies struct {
	mu     sync.Mutex // protects everything below
	ms     []float64
	lastAt time.Time
}

func newLatencies(n int) *latencies { return &latencies{ms: make([]float64, 0, n)} }

func (l *latencies) add(payload []byte, at time.Time) {
	sent, err := strconv.ParseInt(string(payload), 10, 64)
	if err != nil {
		return
	}
	l.mu.Lock()
	l.ms = append(l.ms, float64(at.UnixNano()-sent)/1e6)
	l.lastAt = at
	l.mu.Unlock()
}

func (l *latencies) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ms)
}

func (l *latencies) last() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastAt
}

func (l *latencies) quantile(q float64) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.ms) == 0 {
		return 0
	}
	s := slices.Clone(l.ms)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1))]
}

package server

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/ringlog"
	"github.com/eddy-iot/eddy/sse"
)

// benchEnv reads an integer knob from the environment.
func benchEnv(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkFanout runs the real server and hub with SSE clients, half over
// HTTP/2 and half over HTTP/3, PER_CONN streams per connection, each
// following every topic, while records are appended at RATE per second
// (one record per b.N iteration). It reports deliveries per second,
// append-to-receive latency (p50, p99) and process CPU per delivery (the
// clients' CPU included: they run in this process). Knobs:
// EDDY_BENCH_CLIENTS (default 200), EDDY_BENCH_PER_CONN (50),
// EDDY_BENCH_RATE (records/s, 100), EDDY_BENCH_TOPICS (100).
//
//	go test -run '^$' -bench Fanout -benchtime 5s ./server/
func BenchmarkFanout(b *testing.B) {
	for _, coalesce := range []time.Duration{-1, DefaultWriteCoalesce} {
		name := "coalesce=off"
		if coalesce > 0 {
			name = "coalesce=" + coalesce.String()
		}
		b.Run(name, func(b *testing.B) { benchFanout(b, coalesce) })
	}
}

type benchClient struct {
	last    atomic.Uint64
	gaps    atomic.Uint64
	samples []int64 // latencies in ns; owned by the reading goroutine until it ends
}

func benchFanout(b *testing.B, coalesce time.Duration) {
	clients := benchEnv("EDDY_BENCH_CLIENTS", 200)
	perConn := benchEnv("EDDY_BENCH_PER_CONN", 50)
	rate := benchEnv("EDDY_BENCH_RATE", 100)
	topics := benchEnv("EDDY_BENCH_TOPICS", 100)

	var hub *sse.Hub
	e := startServer(b, func(o *Options) {
		hub = sse.NewHub(o.Log, sse.Options{ClientBuffer: 1024})
		o.Events, o.WriteCoalesce, o.MaxStreamsPerHost = hub, coalesce, 1<<20
		o.Logger = nil
	})
	hubCtx, stopHub := context.WithCancel(context.Background())
	hubDone := make(chan error, 1)
	go func() { hubDone <- hub.Run(hubCtx) }()
	defer func() { stopHub(); <-hubDone }()

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	cs := make([]*benchClient, clients)
	var httpClients []*http.Client
	for i := range cs {
		if i%perConn == 0 { // a new connection: a new transport
			p := protos[(i/perConn)%2]
			httpClients = append(httpClients, p.client(b, e))
		}
		cs[i] = &benchClient{}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url("/events"), nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := httpClients[len(httpClients)-1].Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("client %d: %v %v", i, err, resp)
		}
		wg.Add(1)
		go func(c *benchClient) {
			defer wg.Done()
			defer resp.Body.Close()
			readBench(resp, c)
		}(cs[i])
	}
	for hub.Clients() < clients {
		time.Sleep(10 * time.Millisecond)
	}

	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.ResetTimer()
	start := time.Now()
	tick := time.Second / time.Duration(rate)
	var last uint64
	for i := 0; b.Loop(); i++ {
		next := start.Add(time.Duration(i) * tick)
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		val := strconv.AppendInt(nil, time.Now().UnixNano(), 10)
		seq, err := e.log.Append(ringlog.Record{Topic: "bench/" + strconv.Itoa(i%topics), Kind: ringlog.KindJSON, Value: val})
		if err != nil {
			b.Fatal(err)
		}
		last = seq
	}
	// Wait for the clients to receive the last record (or give up).
	deadline := time.Now().Add(guard)
	for _, c := range cs {
		for c.last.Load() < last && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cancel()
	wg.Wait()

	var all []int64
	var gaps uint64
	for _, c := range cs {
		all = append(all, c.samples...)
		gaps += c.gaps.Load()
	}
	slices.Sort(all)
	cpu := time.Duration(syscall.TimevalToNsec(ru1.Utime) + syscall.TimevalToNsec(ru1.Stime) -
		syscall.TimevalToNsec(ru0.Utime) - syscall.TimevalToNsec(ru0.Stime))
	if n := len(all); n > 0 {
		b.ReportMetric(float64(n)/elapsed.Seconds(), "deliveries/s")
		b.ReportMetric(float64(all[n/2])/1e6, "p50-ms")
		b.ReportMetric(float64(all[n*99/100])/1e6, "p99-ms")
		b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-µs/delivery")
		b.ReportMetric(float64(gaps), "gaps")
	}
}

// readBench reads reading events, recording each one's latency from the
// append time carried in its value.
func readBench(resp *http.Response, c *benchClient) {
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	dataPrefix := []byte("data: ")
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return
		}
		if !bytes.HasPrefix(line, dataPrefix) {
			continue
		}
		if bytes.Contains(line, []byte(`"dropped"`)) {
			c.gaps.Add(1)
			continue
		}
		now := time.Now().UnixNano()
		seq, sent := benchFields(line)
		c.samples = append(c.samples, now-sent)
		c.last.Store(seq)
	}
}

// benchFields extracts seq and the integer value from a reading's JSON.
func benchFields(line []byte) (seq uint64, value int64) {
	if i := bytes.Index(line, []byte(`"seq":`)); i >= 0 {
		seq, _ = strconv.ParseUint(string(digits(line[i+6:])), 10, 64)
	}
	if i := bytes.Index(line, []byte(`"value":`)); i >= 0 {
		value, _ = strconv.ParseInt(string(digits(line[i+8:])), 10, 64)
	}
	return seq, value
}

func digits(b []byte) []byte {
	n := 0
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		n++
	}
	return b[:n]
}

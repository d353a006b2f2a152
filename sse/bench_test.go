package sse

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/ringlog"
)

func benchRecord() ringlog.Record {
	return ringlog.Record{
		Seq: 4711, Time: time.Date(2026, 11, 23, 17, 0, 0, 123e6, time.UTC),
		Topic: "sensors/pump1/pressure", Kind: ringlog.KindJSON, Value: []byte("2.31"), Unit: "bar",
	}
}

// BenchmarkEncode compares the hand-written encoder with encoding/json
// building the same event (the baseline).
func BenchmarkEncode(b *testing.B) {
	r := benchRecord()
	b.Run("eddy", func(b *testing.B) {
		var buf []byte
		b.ReportAllocs()
		for b.Loop() {
			buf = appendReading(buf[:0], &r)
		}
		b.SetBytes(int64(len(buf)))
	})
	b.Run("encoding_json", func(b *testing.B) {
		type envelope struct {
			Seq   uint64          `json:"seq"`
			Topic string          `json:"topic"`
			TS    string          `json:"ts"`
			Value json.RawMessage `json:"value"`
			Unit  string          `json:"unit,omitempty"`
		}
		var buf []byte
		b.ReportAllocs()
		for b.Loop() {
			data, err := json.Marshal(envelope{
				Seq: r.Seq, Topic: r.Topic, TS: r.Time.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
				Value: r.Value, Unit: r.Unit,
			})
			if err != nil {
				b.Fatal(err)
			}
			buf = append(buf[:0], "id: "...)
			buf = strconv.AppendUint(buf, r.Seq, 10)
			buf = append(buf, "\nevent: reading\ndata: "...)
			buf = append(buf, data...)
			buf = append(buf, "\n\n"...)
		}
		b.SetBytes(int64(len(buf)))
	})
}

// BenchmarkFanout measures the hub's side of live delivery: encoding a
// batch of records once and queueing it for 1,000 attached in-memory
// streams, whose writers (goroutines that take their queues and discard
// them) run at the same time. ns/op is per record; ns/delivery per record
// per stream.
func BenchmarkFanout(b *testing.B) {
	const clients, batch, topics = 1000, 100, 100
	h := NewHub(openLog(b, nil), Options{})
	var delivered atomic.Uint64
	var wg sync.WaitGroup
	done := make(chan struct{})
	for range clients {
		c := newClient(params{filters: mustSet("#"), key: "#"}, h.opt.ClientBuffer, h.m)
		h.attach(c, true)
		wg.Go(func() { drainClient(c, &delivered, done) })
	}
	recs := make([]ringlog.Record, batch)
	for i := range recs {
		recs[i] = benchRecord()
		recs[i].Topic = fmt.Sprintf("sensors/dev%d/value", i%topics)
	}
	var enc encoder
	seq := uint64(0)
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n += batch {
		for i := range recs {
			seq++
			recs[i].Seq = seq
		}
		h.publish(enc.encode(recs))
	}
	want := seq * clients
	for delivered.Load()+h.m.Dropped.Load() < want {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	close(done)
	wg.Wait()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(want), "ns/delivery")
	b.ReportMetric(float64(h.m.Dropped.Load())/float64(want), "dropped/delivery")
}

func drainClient(c *client, delivered *atomic.Uint64, done <-chan struct{}) {
	var out []*event
	for {
		select {
		case <-c.wake:
		case <-done:
			return
		}
		evs, _, _, _ := c.take(out, time.Now())
		delivered.Add(uint64(len(evs)))
		clear(evs)
		out = evs
	}
}

// BenchmarkStreamHTTP2 measures end-to-end live delivery over real
// HTTP/2 with TLS on loopback: 50 streams multiplexed on one connection
// (as a browser's tabs are), all following every topic, at 2,000
// records/s (100,000 deliveries/s). cpu-ns/delivery is the process's CPU
// time (server and client together, both in this process) per record
// per stream.
func BenchmarkStreamHTTP2(b *testing.B) {
	const streams = 50
	log := openLog(b, nil)
	h := NewHub(log, Options{})
	srv := newBenchServer(b, h)
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { defer close(runDone); h.Run(ctx) }()
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), guard)
		h.Shutdown(sctx)
		scancel()
		cancel()
		<-runDone
	}()
	var readers []*streamReader
	for range streams {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/events", nil)
		resp, err := srv.Client().Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		sr := newStreamReader(resp.Body)
		if err := sr.preamble(); err != nil {
			b.Fatal(err)
		}
		readers = append(readers, sr)
	}
	first := log.LastSeq() + 1
	last := first + uint64(b.N) - 1
	var wg sync.WaitGroup
	b.ResetTimer()
	for _, sr := range readers {
		wg.Go(func() {
			for {
				ev, err := sr.next()
				if err != nil {
					b.Error(err)
					return
				}
				if ev.lastID == strconv.FormatUint(last, 10) {
					return
				}
			}
		})
	}
	// 2,000 records/s: 100,000 deliveries/s, 10 records every 5ms.
	rec := benchRecord()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	cpu0 := cpuTime()
	for i := range b.N {
		if _, err := log.Append(rec); err != nil {
			b.Fatal(err)
		}
		if i%10 == 9 {
			<-tick.C
		}
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N*streams), "cpu-ns/delivery")
	b.ReportMetric(float64(h.m.Dropped.Load())/float64(b.N*streams), "dropped/delivery")
}

// cpuTime is the CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

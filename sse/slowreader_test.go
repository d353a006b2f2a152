package sse

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/eddy-iot/eddy/ringlog"
)

// slowReaderTime is how long the slow reader reads: at least 60 s, as a
// phone on weak Wi-Fi watches a dashboard. EDDY_SLOW_READER_SECS may
// lengthen it.
func slowReaderTime() time.Duration {
	if s, err := strconv.Atoi(os.Getenv("EDDY_SLOW_READER_SECS")); err == nil && s > 60 {
		return time.Duration(s) * time.Second
	}
	return 60 * time.Second
}

// TestSlowReaderKeepsReading: a downsample client that reads 20 events a
// second through a 16 KiB flow-control window, beside a flood on 200
// topics, is never cut while it keeps reading (the write timeout is 5 s,
// far below how long its writes take in all, and above how long the
// client takes to read the 8 KiB after which it returns flow-control
// credit), sees a gap, and ends with fresh values. Over HTTP/2 and
// HTTP/3 at once.
func TestSlowReaderKeepsReading(t *testing.T) {
	for _, p := range []struct {
		name   string
		serve  serveFunc
		window func(*http.Client)
	}{
		{"HTTP2", serveHTTP2, func(c *http.Client) {
			c.Transport.(*http.Transport).HTTP2 = &http.HTTP2Config{MaxReceiveBufferPerStream: 16 << 10}
		}},
		{"HTTP3", serveHTTP3, func(c *http.Client) {
			c.Transport.(*http3.Transport).QUICConfig = &quic.Config{
				InitialStreamReceiveWindow: 16 << 10, MaxStreamReceiveWindow: 16 << 10,
				InitialConnectionReceiveWindow: 64 << 10, MaxConnectionReceiveWindow: 64 << 10,
			}
		}},
	} {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			testSlowReader(t, p.serve, p.window)
		})
	}
}

func testSlowReader(t *testing.T, serve serveFunc, window func(*http.Client)) {
	e := newEnv(t, serve, nil, Options{WriteTimeout: 5 * time.Second})
	e.run(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stop)
	wg.Go(func() { flood(t, e.log, stop) })

	client := e.newClient()
	window(client)
	ctx, cancel := context.WithTimeout(context.Background(), slowReaderTime()+30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url+"/events", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sr := newStreamReader(resp.Body)
	if err := sr.preamble(); err != nil {
		t.Fatal(err)
	}
	tick := time.NewTicker(50 * time.Millisecond) // 20 events a second
	defer tick.Stop()
	end := time.Now().Add(slowReaderTime())
	var last reading
	var n, gaps int
	for time.Now().Before(end) {
		<-tick.C
		it, err := nextItem(sr)
		if err != nil {
			t.Fatalf("after %d events and %d gaps in %v the stream ended: %v", n, gaps, slowReaderTime()-time.Until(end), err)
		}
		if it.gap != nil {
			gaps++
			continue
		}
		if it.reading.Seq <= last.Seq {
			t.Fatalf("id %d after %d", it.reading.Seq, last.Seq)
		}
		last = *it.reading
		n++
	}
	if gaps == 0 {
		t.Error("no gap: the reader was never behind, so the test proves nothing")
	}
	ts, err := time.Parse(time.RFC3339Nano, last.TS)
	if err != nil {
		t.Fatal(err)
	}
	stale := time.Since(ts)
	t.Logf("%d events and %d gaps in %v; the last event was %v old (%d records appended in all)", n, gaps, slowReaderTime(), stale.Round(time.Millisecond), e.log.LastSeq())
	// What the client's 16 KiB window, its 4 KiB read buffer and the
	// transports' buffers hold is about 28 KiB, 12 s at this pace; the
	// server holds at most one take (minTake) beyond that. A server that
	// handed the client its whole queue (1024 events) would be 50 s behind.
	if stale > 15*time.Second {
		t.Errorf("the last event read was %v old: a downsampled reader must see fresh values", stale)
	}
}

// flood appends to 200 topics, 10 records a second each, until stop.
func flood(t *testing.T, l *ringlog.Log, stop <-chan struct{}) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		for k := range 200 {
			r := ringlog.Record{Topic: fmt.Sprintf("flood/%03d", k), Kind: ringlog.KindJSON, Value: strconv.AppendInt(nil, int64(i), 10)}
			if _, err := l.Append(r); err != nil {
				t.Error(err)
				return
			}
		}
	}
}

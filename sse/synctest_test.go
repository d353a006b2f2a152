package sse

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/eddy-iot/eddy/ringlog"
)

// memWriter is an in-memory http.ResponseWriter with Flush, for tests
// that run in a synctest bubble, where real sockets cannot.
type memWriter struct {
	mu        sync.Mutex
	hdr       http.Header
	buf       bytes.Buffer
	deadlines int // SetWriteDeadline calls
	flushes   int
	timer     *time.Timer // the deadline, emulated like HTTP/2's
	reset     bool        // the deadline passed: the stream is dead
}

// SetWriteDeadline emulates HTTP/2: when the deadline passes the stream
// is reset, whether or not a write is pending.
func (w *memWriter) SetWriteDeadline(d time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.deadlines++
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
	if !d.IsZero() {
		w.timer = time.AfterFunc(time.Until(d), func() {
			w.mu.Lock()
			w.reset = true
			w.mu.Unlock()
		})
	}
	return nil
}

func (w *memWriter) Header() http.Header {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.hdr == nil {
		w.hdr = http.Header{}
	}
	return w.hdr
}
func (w *memWriter) WriteHeader(int) {}
func (w *memWriter) Flush() {
	w.mu.Lock()
	w.flushes++
	w.mu.Unlock()
}
func (w *memWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.reset {
		return 0, errors.New("stream reset: write deadline passed")
	}
	return w.buf.Write(b)
}

// events parses everything written so far.
func (w *memWriter) events() ([]sseEvent, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	evs, _ := parseAll(w.buf.Bytes())
	return evs, strings.Count(w.buf.String(), heartbeat)
}

// serveMem runs one stream of h into a memWriter until the returned stop.
func serveMem(t *testing.T, h *Hub, url string) (*memWriter, func()) {
	return serveMemOn(t, h, url, nil)
}

// serveMemOn is serveMem on the connection conn (see WithConn); nil: none.
func serveMemOn(t *testing.T, h *Hub, url string, conn any) (*memWriter, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	if conn != nil {
		ctx = WithConn(ctx, conn)
	}
	w := &memWriter{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, url, nil).WithContext(ctx))
	}()
	return w, func() { cancel(); <-done }
}

// runHub runs h until the returned stop.
func runHub(h *Hub) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.Run(ctx) }()
	return func() { cancel(); <-done }
}

// connModes runs a test with a stream writing its own events and with
// one handed over to its connection's writer.
func connModes(t *testing.T, f func(t *testing.T, conn any)) {
	t.Run("own", func(t *testing.T) { synctest.Test(t, func(t *testing.T) { f(t, nil) }) })
	t.Run("conn", func(t *testing.T) { synctest.Test(t, func(t *testing.T) { f(t, "conn-1") }) })
}

func TestHeartbeatTiming(t *testing.T) {
	connModes(t, func(t *testing.T, conn any) {
		log := openLog(t, nil)
		h := NewHub(log, Options{Heartbeat: 15 * time.Second})
		defer runHub(h)()
		w, stop := serveMemOn(t, h, "/events", conn)
		defer stop()
		beats := func() int { synctest.Wait(); _, n := w.events(); return n }

		time.Sleep(15*time.Second - time.Millisecond)
		if n := beats(); n != 0 {
			t.Fatalf("%d heartbeats before 15s", n)
		}
		time.Sleep(time.Millisecond)
		if n := beats(); n != 1 {
			t.Fatalf("%d heartbeats at 15s, want 1", n)
		}
		time.Sleep(5 * time.Second) // 20s: a record resets the quiet time
		if _, err := log.Append(ringlog.Record{Topic: "a", Kind: ringlog.KindJSON, Value: []byte("1")}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(15*time.Second - time.Millisecond)
		if n := beats(); n != 1 {
			t.Fatalf("%d heartbeats 15s after a record, want still 1", n)
		}
		time.Sleep(time.Millisecond)
		if n := beats(); n != 2 {
			t.Fatalf("%d heartbeats, want 2", n)
		}
		if evs, _ := w.events(); len(evs) != 1 || evs[0].typ != "reading" {
			t.Fatalf("events %+v", evs)
		}
	})
}

func TestRateTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := openLog(t, nil)
		h := NewHub(log, Options{Linger: -1}) // records reach the stream the moment they are appended
		defer runHub(h)()
		w, stop := serveMem(t, h, "/events?rate=2")
		defer stop()
		synctest.Wait()
		add := func(topic string) uint64 {
			seq, err := log.Append(ringlog.Record{Topic: topic, Kind: ringlog.KindJSON, Value: []byte("1")})
			if err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
			return seq
		}
		seqs := func() []string {
			synctest.Wait()
			evs, _ := w.events()
			var ids []string
			for _, ev := range evs {
				ids = append(ids, ev.lastID)
			}
			return ids
		}
		add("a") // 1: sent at once
		add("a") // 2: waits for a's slot
		add("b") // 3: behind 2, so it waits too (ids stay in order)
		add("a") // 4: supersedes 2, and b's 3 may now go
		if got := strings.Join(seqs(), ","); got != "1,3" {
			t.Fatalf("at 0s sent %s, want 1,3", got)
		}
		time.Sleep(499 * time.Millisecond)
		if got := strings.Join(seqs(), ","); got != "1,3" {
			t.Fatalf("at 499ms sent %s, want 1,3", got)
		}
		time.Sleep(time.Millisecond)
		if got := strings.Join(seqs(), ","); got != "1,3,4" {
			t.Fatalf("at 500ms sent %s, want 1,3,4", got)
		}
		add("a") // 5: a's slot opens at 1s
		time.Sleep(499 * time.Millisecond)
		if got := strings.Join(seqs(), ","); got != "1,3,4" {
			t.Fatalf("at 999ms sent %s", got)
		}
		time.Sleep(time.Millisecond)
		if got := strings.Join(seqs(), ","); got != "1,3,4,5" {
			t.Fatalf("at 1s sent %s, want 1,3,4,5", got)
		}
	})
}

// TestQuietStreamOutlivesWriteTimeout checks the deadline bookkeeping: a
// stream quiet for many WriteTimeouts is not reset, and a busy stream does
// not set a deadline per write.
func TestQuietStreamOutlivesWriteTimeout(t *testing.T) {
	connModes(t, func(t *testing.T, conn any) {
		log := openLog(t, nil)
		h := NewHub(log, Options{Heartbeat: 15 * time.Second, WriteTimeout: 10 * time.Second})
		defer runHub(h)()
		w, stop := serveMemOn(t, h, "/events", conn)
		defer stop()
		synctest.Wait() // the stream is attached
		add := func() {
			if _, err := log.Append(ringlog.Record{Topic: "a", Kind: ringlog.KindJSON, Value: []byte("1")}); err != nil {
				t.Fatal(err)
			}
		}
		for range 100 { // busy: a record every 100ms for 10s
			add()
			time.Sleep(100 * time.Millisecond)
		}
		synctest.Wait()
		w.mu.Lock()
		busyDeadlines := w.deadlines
		w.mu.Unlock()
		if busyDeadlines > 10 {
			t.Errorf("%d SetWriteDeadline calls for 100 writes in 10s; want a few", busyDeadlines)
		}
		time.Sleep(time.Minute) // quiet: heartbeats only
		add()
		synctest.Wait()
		w.mu.Lock()
		reset := w.reset
		w.mu.Unlock()
		evs, beats := w.events()
		if reset || len(evs) != 101 || beats != 4 {
			w.mu.Lock()
			tail := w.buf.String()[max(0, w.buf.Len()-600):]
			w.mu.Unlock()
			t.Fatalf("after a quiet minute: reset %v, %d events (want 101), %d heartbeats (want 4); stream ends %q", reset, len(evs), beats, tail)
		}
	})
}

// TestLinger: a record after a quiet spell goes out at once; records
// appended while the hub lingers after a fan-out go out together when
// the linger ends, in one write per stream. 400 streams linger 2ms.
func TestLinger(t *testing.T) {
	connModes(t, func(t *testing.T, conn any) {
		log := openLog(t, nil)
		h := NewHub(log, Options{})
		defer runHub(h)()
		w, stop := serveMemOn(t, h, "/events", conn)
		defer stop()
		for range 399 {
			_, stop := serveMemOn(t, h, "/events", conn)
			defer stop()
		}
		synctest.Wait()
		if got := h.linger(h.Clients(), 1); got != 2*time.Millisecond {
			t.Fatalf("linger with %d streams: %v, want 2ms", h.Clients(), got)
		}
		add := func() {
			if _, err := log.Append(ringlog.Record{Topic: "a", Kind: ringlog.KindJSON, Value: []byte("1")}); err != nil {
				t.Fatal(err)
			}
		}
		state := func() (int, int) {
			synctest.Wait()
			evs, _ := w.events()
			w.mu.Lock()
			defer w.mu.Unlock()
			return len(evs), w.flushes
		}
		_, f0 := state()
		m0 := h.m.Flushes.Load()
		add()
		if n, f := state(); n != 1 || f != f0+1 {
			t.Fatalf("a first record: %d events in %d flushes, want 1 in 1", n, f-f0)
		}
		time.Sleep(time.Millisecond)
		add()
		add()
		if n, _ := state(); n != 1 {
			t.Fatalf("1ms into the linger: %d events, want still 1", n)
		}
		time.Sleep(time.Millisecond - time.Nanosecond)
		if n, _ := state(); n != 1 {
			t.Fatalf("just before the linger ends: %d events, want still 1", n)
		}
		time.Sleep(time.Nanosecond)
		if n, f := state(); n != 3 || f != f0+2 {
			t.Fatalf("when the linger ends: %d events in %d flushes, want 3 in 2", n, f-f0)
		}
		if m := h.m.Flushes.Load() - m0; m != 2*400 {
			t.Fatalf("Metrics.Flushes counted %d flushes of the 400 streams, want 800", m)
		}
		time.Sleep(time.Second) // quiet
		add()
		if n, _ := state(); n != 4 {
			t.Fatalf("after a quiet second: %d events, want 4 at once", n)
		}
	})
}

func TestLingerScales(t *testing.T) {
	h := &Hub{opt: Options{}.withDefaults()}
	for _, tc := range []struct {
		streams, records int
		want             time.Duration
	}{
		{0, 1, 0}, {1, 1, 0}, {19, 1, 0}, {20, 1, 100 * time.Microsecond},
		{400, 1, 2 * time.Millisecond}, {1000, 1, 5 * time.Millisecond}, {10000, 1, 5 * time.Millisecond},
		{1, 2, time.Millisecond}, {400, 2, 2 * time.Millisecond}, {1000, 50, 5 * time.Millisecond},
	} {
		if got := h.linger(tc.streams, tc.records); got != tc.want {
			t.Errorf("linger(%d streams, %d records) = %v, want %v", tc.streams, tc.records, got, tc.want)
		}
	}
	h.opt.Linger = 500 * time.Microsecond
	if got := h.linger(1, 2); got != 500*time.Microsecond {
		t.Errorf("Linger 500µs: linger(1, 2) = %v, want the cap", got)
	}
	h.opt.Linger = -1
	if got := h.linger(1000, 5); got != 0 {
		t.Errorf("Linger -1: linger(1000, 5) = %v, want 0", got)
	}
}

// TestHubBeat: the hub's loop turns at least every second while the log
// is quiet (the watchdog's sign of progress), and stops when Run returns.
func TestHubBeat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := openLog(t, nil)
		h := NewHub(log, Options{})
		stop := runHub(h)
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if age := time.Since(h.Beat()); age > beatInterval {
			t.Fatalf("a running hub's beat is %v old", age)
		}
		stop()
		time.Sleep(30 * time.Second)
		if age := time.Since(h.Beat()); age < 30*time.Second {
			t.Fatalf("a stopped hub still beats (%v old)", age)
		}
	})
}

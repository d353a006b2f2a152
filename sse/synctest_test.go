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
	deadlines int         // SetWriteDeadline calls
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
func (w *memWriter) Flush()          {}
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
	ctx, cancel := context.WithCancel(context.Background())
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

func TestHeartbeatTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := openLog(t, nil)
		h := NewHub(log, Options{Heartbeat: 15 * time.Second})
		defer runHub(h)()
		w, stop := serveMem(t, h, "/events")
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
		h := NewHub(log, Options{})
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
	synctest.Test(t, func(t *testing.T) {
		log := openLog(t, nil)
		h := NewHub(log, Options{Heartbeat: 15 * time.Second, WriteTimeout: 10 * time.Second})
		defer runHub(h)()
		w, stop := serveMem(t, h, "/events")
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

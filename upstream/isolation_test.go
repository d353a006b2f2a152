package upstream

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	devtls "github.com/eddy-iot/eddy/tls"
)

// countingHandler counts log records per device.
type countingHandler struct {
	mu sync.Mutex
	n  map[string]int
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *countingHandler) WithGroup(string) slog.Handler            { return h }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "device" {
			h.mu.Lock()
			h.n[a.Value.String()]++
			h.mu.Unlock()
		}
		return true
	})
	return nil
}

func (h *countingHandler) count(dev string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[dev]
}

// hostile starts an HTTPS device that answers with fn.
func hostile(t *testing.T, name string, fn http.HandlerFunc) Device {
	srv := httptest.NewUnstartedServer(fn)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	tc, err := devtls.ClientConfig(devtls.ClientOptions{Fingerprint: devtls.Fingerprint(srv.Certificate().Raw)})
	if err != nil {
		t.Fatal(err)
	}
	return Device{Name: name, URL: srv.URL, Token: testToken, TLS: tc, TrustKey: name}
}

// TestCollectorIsolation: devices that answer 401, send malformed or
// oversized events are logged once per interval and counted, publish
// nothing, and do not slow a good device; a new device list adds and
// removes devices without touching the ones that stay.
func TestCollectorIsolation(t *testing.T) {
	c := clusterTest(t, 3, "runs a 3-node cluster")
	good := newPullDevice(t, "good")
	defer func() { good.halt(); good.log.Close() }()
	devs := []Device{
		good.config(),
		hostile(t, "unauthorized", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusUnauthorized) }),
		hostile(t, "malformed", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "id: 1\nevent: reading\ndata: {not json\n\n")
		}),
		hostile(t, "oversized", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "id: 1\nevent: reading\ndata: "+strings.Repeat("x", 3<<20)+"\n\n")
		}),
	}
	logs := &countingHandler{n: map[string]int{}}
	o := testOptions(c, "iso")
	conn, err := Connect(o)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	col, err := NewCollector(conn, devs, CollectorOptions{ID: "iso", LeaseTTL: 2 * time.Second, Dial: time.Second,
		LogEvery: time.Minute, MaxEvent: 1 << 20, Logger: slog.New(logs), QUICAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- col.Run(ctx) }()
	defer func() { cancel(); <-done }()

	st := func(name string) *DeviceState { return col.Devices()[name] }
	eventually(t, 30*time.Second, "the good device publishing", func() bool { return st("good").Stats.Published.Load() > 200 })
	eventually(t, 30*time.Second, "each hostile device failing at least twice", func() bool {
		return st("unauthorized").Errors.Load() >= 1 && st("malformed").Errors.Load() >= 2 && st("oversized").Errors.Load() >= 2
	})
	for _, bad := range []string{"unauthorized", "malformed", "oversized"} {
		s := st(bad)
		if n := s.Stats.Published.Load(); n != 0 {
			t.Errorf("%s: %d records published", bad, n)
		}
		if n := logs.count(bad); n != 1 {
			t.Errorf("%s: logged %d times within the interval, want once (errors %d)", bad, n, s.Errors.Load())
		}
	}
	if st("malformed").Malformed.Load() == 0 {
		t.Error("malformed events not counted")
	}
	// The good device keeps up meanwhile: its lag stays small.
	time.Sleep(time.Second)
	if last, acked := good.lastRecord(), st("good").Stats.AckedSeq.Load(); last > acked+100 {
		t.Errorf("good device lags: last %d, acked %d", last, acked)
	}

	// A new list: the hostile devices go, a second good one comes; the
	// first good device's stream is not touched.
	good2 := newPullDevice(t, "good2")
	defer func() { good2.halt(); good2.log.Close() }()
	g := good.config()
	g.TLS, g.TrustKey = devs[0].TLS, devs[0].TrustKey
	reconnects := st("good").Reconnects.Load()
	if err := col.SetDevices([]Device{g, good2.config()}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "good2 publishing", func() bool {
		s := st("good2")
		return s != nil && s.Stats.Published.Load() > 100
	})
	if _, ok := col.Devices()["malformed"]; ok {
		t.Error("a removed device is still there")
	}
	if n := st("good").Reconnects.Load(); n != reconnects || !st("good").Connected.Load() {
		t.Errorf("the good device was disturbed by the reload: reconnects %d -> %d", reconnects, n)
	}
}

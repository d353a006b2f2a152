package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	devtls "github.com/eddy-iot/eddy/tls"
)

// The baseline is the simplest server that streams the same bytes: a
// generator encodes each record once, in eddy's event format, and hands
// it to every stream's channel (dropping when a channel is full); one
// goroutine per stream writes what its channel holds and flushes, over
// net/http's HTTP/2. No broker, no ring log, no auth, no heartbeats, no
// resume. It runs as a child process (this binary with -serve-baseline)
// so that its CPU and memory are read from /proc exactly like eddy's.
// POST /generate?rate=R&topics=T&for=D makes it generate R records/s
// for D and answer how many it made.

// baselineFlags configure -serve-baseline.
type baselineFlags struct {
	listen string // 127.0.0.1:port
	dir    string // the device CA and certificate are generated here
}

// startBaseline runs this binary as the baseline server.
func startBaseline(ctx context.Context, dir string) (*server, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("load: baseline: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	c, err := startChild("baseline", filepath.Join(dir, "baseline.log"), self, "-serve-baseline",
		"-listen", listen, "-dir", dir)
	if err != nil {
		return nil, err
	}
	s := &server{child: c, base: "https://" + listen, caFile: filepath.Join(dir, "tls", "ca.pem")}
	if err := s.waitHealthy(ctx); err != nil {
		c.stop(5 * time.Second)
		return nil, err
	}
	return s, nil
}

// generate asks the baseline to generate rate records/s over topics for
// d, and returns how many it generated.
func (s *server) generate(ctx context.Context, rate, topics int, d time.Duration) (int, error) {
	c, err := s.httpClient()
	if err != nil {
		return 0, err
	}
	defer c.CloseIdleConnections()
	c.Timeout = d + 30*time.Second
	u := fmt.Sprintf("%s/generate?rate=%d&topics=%d&for=%s", s.base, rate, topics, d)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return 0, fmt.Errorf("load: baseline generate: %w", err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, fmt.Errorf("load: baseline generate: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if resp.StatusCode != http.StatusOK || err != nil {
		return 0, fmt.Errorf("load: baseline generate: %s %q", resp.Status, b)
	}
	return n, nil
}

// serveBaseline is the baseline server's main: it serves until ctx ends.
func serveBaseline(ctx context.Context, f baselineFlags, logger *slog.Logger) error {
	dev, err := devtls.Load(devtls.Options{Dir: f.dir, Logger: logger})
	if err != nil {
		return err
	}
	fan := &fanout{subs: map[*sub]struct{}{}}
	streamCtx, endStreams := context.WithCancel(ctx)
	defer endStreams()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /events", fan.serve)
	mux.HandleFunc("POST /generate", fan.generate)
	srv := &http.Server{
		Handler:           mux,
		TLSConfig:         dev.ServerConfig(),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return streamCtx },
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: 1000},
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("baseline: listen: %w", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(ln, "", "") }()
	logger.Info("baseline listening", "addr", f.listen)
	select {
	case <-ctx.Done():
	case err := <-served:
		return fmt.Errorf("baseline: serve: %w", err)
	}
	endStreams()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	logger.Info("baseline stopped", "dropped", fan.dropped.Load())
	return err
}

// fanout hands each encoded event to every stream.
type fanout struct {
	mu      sync.RWMutex // protects subs
	subs    map[*sub]struct{}
	genMu   sync.Mutex // one generator at a time; protects seq
	seq     uint64
	dropped atomic.Uint64
}

type sub struct{ ch chan []byte }

// subBuffer matches eddy's default stream.client_buffer.
const subBuffer = 1024

// generate serves POST /generate: records at rate over topics for a
// while, paced from the start (a generator that fell behind catches up).
func (f *fanout) generate(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	rate, err1 := strconv.Atoi(q.Get("rate"))
	topics, err2 := strconv.Atoi(q.Get("topics"))
	d, err3 := time.ParseDuration(q.Get("for"))
	if err := errors.Join(err1, err2, err3); err != nil || rate <= 0 || topics <= 0 || d <= 0 || d > 10*time.Minute {
		http.Error(w, "want rate, topics and for", http.StatusBadRequest)
		return
	}
	f.genMu.Lock()
	defer f.genMu.Unlock()
	names := make([]string, topics)
	for i := range names {
		names[i] = "load/" + strconv.Itoa(i)
	}
	t := time.NewTimer(0)
	defer t.Stop()
	start := time.Now()
	n := 0
	for i := 0; ; i++ {
		at := time.Duration(i) * time.Second / time.Duration(rate)
		if at >= d {
			break
		}
		if wait := time.Until(start.Add(at)); wait > 0 {
			t.Reset(wait)
			select {
			case <-r.Context().Done():
				return
			case <-t.C:
			}
		}
		f.emit(names[i%topics], time.Now())
		n++
	}
	fmt.Fprintln(w, n)
}

// emit encodes one record made now, its value the time in unix ns, and
// queues it for every stream.
func (f *fanout) emit(topic string, now time.Time) {
	f.seq++
	frame := fmt.Appendf(nil, "id: %d\nevent: reading\ndata: {\"seq\":%d,\"topic\":%q,\"ts\":\"%s\",\"value\":%d}\n\n",
		f.seq, f.seq, topic, now.UTC().Format("2006-01-02T15:04:05.000Z"), now.UnixNano())
	f.mu.RLock()
	defer f.mu.RUnlock()
	for s := range f.subs {
		select {
		case s.ch <- frame:
		default:
			f.dropped.Add(1)
		}
	}
}
func (f *fanout) serve(w http.ResponseWriter, r *http.Request) {
	s := &sub{ch: make(chan []byte, subBuffer)}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	rc := http.NewResponseController(w)
	f.mu.Lock()
	f.subs[s] = struct{}{}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.subs, s)
		f.mu.Unlock()
	}()
	if _, err := w.Write([]byte("retry: 2000\n\n")); err != nil {
		return
	}
	if rc.Flush() != nil {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case frame := <-s.ch:
			w.Write(frame)
			for range len(s.ch) {
				w.Write(<-s.ch)
			}
			if rc.Flush() != nil {
				return
			}
		}
	}
}

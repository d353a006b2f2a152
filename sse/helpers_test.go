package sse

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/ringlog"
	"github.com/eddy-iot/eddy/topic"
)

// guard bounds every wait in these tests. It only fails a hung test; no
// test relies on anything being fast.
const guard = 30 * time.Second

// serveFunc serves h over one protocol to real clients, registering its
// own cleanup, and returns the base URL and a function that makes a
// client with a connection of its own (for clients on different devices).
type serveFunc func(t *testing.T, h http.Handler) (newClient func() *http.Client, baseURL string)

// env is one ring log, hub and server.
type env struct {
	log       *ringlog.Log
	hub       *Hub
	m         *Metrics
	client    *http.Client // the default client: its streams share a connection where the protocol can
	newClient func() *http.Client
	url       string
}

func openLog(t testing.TB, opt *ringlog.Options) *ringlog.Log {
	t.Helper()
	return openLogDir(t, t.TempDir(), opt)
}

func openLogDir(t testing.TB, dir string, opt *ringlog.Options) *ringlog.Log {
	t.Helper()
	l, err := ringlog.Open(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("close log: %v", err)
		}
	})
	return l
}

// newEnv builds the parts; the hub does not run until env.run. Cleanup
// shuts the hub down before the server closes (streams never end on their
// own) and closes the log last.
func newEnv(t *testing.T, serve serveFunc, lopt *ringlog.Options, hopt Options) *env {
	t.Helper()
	return newEnvDir(t, serve, t.TempDir(), lopt, hopt)
}

// newEnvDir is newEnv over the log in dir, which may hold an earlier run's.
func newEnvDir(t *testing.T, serve serveFunc, dir string, lopt *ringlog.Options, hopt Options) *env {
	t.Helper()
	e := &env{log: openLogDir(t, dir, lopt), m: &Metrics{}}
	hopt.Metrics = e.m
	e.hub = NewHub(e.log, hopt)
	e.newClient, e.url = serve(t, e.hub)
	e.client = e.newClient()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), guard)
		defer cancel()
		if err := e.hub.Shutdown(ctx); err != nil {
			t.Errorf("hub shutdown: %v", err)
		}
	})
	return e
}

// run starts the hub's fan-out until the test ends.
func (e *env) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.hub.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("hub run: %v", err)
		}
	})
}

// add appends n records on the topics in turn and returns the last seq.
func (e *env) add(t testing.TB, n int, topics ...string) uint64 {
	t.Helper()
	var seq uint64
	for i := range n {
		var err error
		seq, err = e.log.Append(ringlog.Record{
			Topic: topics[i%len(topics)], Kind: ringlog.KindJSON, Value: fmt.Appendf(nil, "%d", i),
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return seq
}

// get sends GET /events+query and returns the response (body open).
func (e *env) get(t *testing.T, query string, hdr http.Header) *http.Response {
	t.Helper()
	return e.getWith(t, e.client, query, hdr)
}

// getWith is get with the given client.
func (e *env) getWith(t *testing.T, client *http.Client, query string, hdr http.Header) *http.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.url+"/events"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET /events%s: %v", query, err)
	}
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
	})
	return resp
}

// open starts a stream, checks its headers and preamble, and returns a
// reader of its events and a function that ends it.
func (e *env) open(t *testing.T, query string, hdr http.Header) (*streamReader, func()) {
	t.Helper()
	return e.openWith(t, e.client, query, hdr)
}

// openWith is open with the given client.
func (e *env) openWith(t *testing.T, client *http.Client, query string, hdr http.Header) (*streamReader, func()) {
	t.Helper()
	resp := e.getWith(t, client, query, hdr)
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /events%s: %s: %s", query, resp.Status, b)
	}
	for k, want := range map[string]string{
		"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	sr := newStreamReader(resp.Body)
	if err := sr.preamble(); err != nil {
		t.Fatalf("preamble of /events%s: %v", query, err)
	}
	return sr, func() { resp.Body.Close() }
}

// reading is the data of a reading event.
type reading struct {
	Seq      uint64          `json:"seq"`
	Topic    string          `json:"topic"`
	TS       string          `json:"ts"`
	Value    json.RawMessage `json:"value"`
	ValueB64 string          `json:"value_b64"`
	Unit     string          `json:"unit"`
}

// gapData is the data of a gap event.
type gapData struct {
	Dropped uint64 `json:"dropped"`
	FromSeq uint64 `json:"from_seq"`
	ToSeq   uint64 `json:"to_seq"`
	// UnknownID is the Last-Event-ID the log never issued, if that is why.
	UnknownID uint64 `json:"unknown_id"`
}

// item is one parsed event: a reading or a gap.
type item struct {
	reading *reading
	gap     *gapData
}

// nextItem reads the next event and checks its framing: a reading's id
// equals its seq, a gap has no id.
func nextItem(sr *streamReader) (item, error) {
	ev, err := sr.next()
	if err != nil {
		return item{}, err
	}
	switch ev.typ {
	case "reading":
		var r reading
		if err := json.Unmarshal([]byte(ev.data), &r); err != nil {
			return item{}, fmt.Errorf("reading data %q: %w", ev.data, err)
		}
		if !ev.hasID || ev.lastID != fmt.Sprint(r.Seq) {
			return item{}, fmt.Errorf("reading %d has id %q (set: %v)", r.Seq, ev.lastID, ev.hasID)
		}
		return item{reading: &r}, nil
	case "gap":
		var g gapData
		if err := json.Unmarshal([]byte(ev.data), &g); err != nil {
			return item{}, fmt.Errorf("gap data %q: %w", ev.data, err)
		}
		if ev.hasID || g.Dropped == 0 && g.UnknownID == 0 || g.FromSeq > g.ToSeq {
			return item{}, fmt.Errorf("bad gap %+v (id set: %v)", g, ev.hasID)
		}
		return item{gap: &g}, nil
	}
	return item{}, fmt.Errorf("unexpected event %+v", ev)
}

// readings reads events until stop returns true for a reading, checking
// that ids strictly increase; it fails on a gap unless gaps is set.
func readings(t *testing.T, sr *streamReader, gaps bool, stop func(reading) bool) (rs []reading, gs []gapData) {
	t.Helper()
	var last uint64
	for {
		it, err := nextItem(sr)
		if err != nil {
			t.Fatalf("after %d readings (last %d): %v", len(rs), last, err)
		}
		if it.gap != nil {
			if !gaps {
				t.Fatalf("unexpected gap %+v after seq %d", *it.gap, last)
			}
			gs = append(gs, *it.gap)
			continue
		}
		r := *it.reading
		if r.Seq <= last {
			t.Fatalf("seq %d after %d: ids must strictly increase", r.Seq, last)
		}
		last = r.Seq
		rs = append(rs, r)
		if stop(r) {
			return rs, gs
		}
	}
}

// untilSeq stops at the reading with seq >= s.
func untilSeq(s uint64) func(reading) bool { return func(r reading) bool { return r.Seq >= s } }

// checkContiguous fails unless rs are exactly seqs from..to.
func checkContiguous(t *testing.T, rs []reading, from, to uint64) {
	t.Helper()
	if uint64(len(rs)) != to-from+1 {
		t.Fatalf("got %d readings, want %d (%d..%d)", len(rs), to-from+1, from, to)
	}
	for i, r := range rs {
		if r.Seq != from+uint64(i) {
			t.Fatalf("reading %d has seq %d, want %d", i, r.Seq, from+uint64(i))
		}
	}
}

// waitFor polls cond until it holds or the guard expires.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func statusOf(t *testing.T, e *env, query string, hdr http.Header) (int, string) {
	t.Helper()
	resp := e.get(t, query, hdr)
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func mustSet(filters ...string) topic.Set {
	s, err := topic.ParseSet(filters)
	if err != nil {
		panic(err)
	}
	return s
}

// copyDir copies the files of dir into a new directory, as a crash would
// leave them if dir's log is open and synced.
func copyDir(t *testing.T, dir string) string {
	t.Helper()
	to := t.TempDir()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return to
}

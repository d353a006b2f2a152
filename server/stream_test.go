package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/ringlog"
	"github.com/eddy-iot/eddy/sse"
)

// guard bounds every wait in the stream tests; it only fails a hung test.
const guard = 30 * time.Second

// sseEvent is one dispatched Server-Sent Event.
type sseEvent struct {
	id, event, data string
	hasID           bool
}

// sseReader parses a text/event-stream per the WHATWG rules this server
// uses (fields id, event, data, retry; comments; LF line ends).
type sseReader struct {
	br    *bufio.Reader
	retry string
}

func (r *sseReader) next() (sseEvent, error) {
	var ev sseEvent
	var data []string
	for {
		line, err := r.br.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if len(data) == 0 && ev.event == "" && !ev.hasID {
				continue // a comment or retry block
			}
			ev.data = strings.Join(data, "\n")
			return ev, nil
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			ev.id, ev.hasID = value, true
		case "event":
			ev.event = value
		case "data":
			data = append(data, value)
		case "retry":
			r.retry = value
		}
	}
}

// hubEnv is a server with the real sse hub in front of its ring log.
type hubEnv struct {
	*testEnv
	hub *sse.Hub
}

func startHubServer(t *testing.T) *hubEnv {
	t.Helper()
	var hub *sse.Hub
	e := startServer(t, func(o *Options) {
		hub = sse.NewHub(o.Log, sse.Options{Heartbeat: time.Second})
		o.Events = hub
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- hub.Run(ctx) }()
	t.Cleanup(func() {
		// Reverse order of startup: streams end before the server shuts down.
		sctx, scancel := context.WithTimeout(context.Background(), guard)
		defer scancel()
		if err := hub.Shutdown(sctx); err != nil {
			t.Errorf("hub shutdown: %v", err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("hub run: %v", err)
		}
	})
	return &hubEnv{testEnv: e, hub: hub}
}

// openEvents opens /events?query with Last-Event-ID lastID (if non-empty).
func openEvents(t *testing.T, c *http.Client, url, lastID string) (*sseReader, func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := c.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET /events: %v", err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		t.Fatalf("GET /events: %d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	return &sseReader{br: bufio.NewReader(resp.Body)}, func() { cancel(); resp.Body.Close() }
}

// TestStreamLiveAndResume appends records at full speed while a client
// streams, disconnects and resumes with Last-Event-ID, over HTTP/2 and
// HTTP/3 through the real server and hub: ids must run without a gap or a
// duplicate across the reconnect.
func TestStreamLiveAndResume(t *testing.T) {
	for _, p := range protos {
		t.Run(p.name, func(t *testing.T) {
			e := startHubServer(t)
			c := p.client(t, e.testEnv)
			url := e.url("/events?mode=exact&topic=s/%2B")
			const total = 3000
			sr, closeStream := openEvents(t, c, url, "")
			appendDone := make(chan error, 1)
			go func() {
				var err error
				for i := range total {
					if _, err = e.log.Append(ringlog.Record{Topic: "s/" + strconv.Itoa(i%3), Kind: ringlog.KindJSON, Value: []byte(strconv.Itoa(i))}); err != nil {
						break
					}
				}
				appendDone <- err
			}()
			first := e.log.Oldest() // the stream attached before any append
			next := first
			read := func(sr *sseReader, until uint64) {
				for next <= until {
					ev, err := sr.next()
					if err != nil {
						t.Fatalf("read at seq %d: %v", next, err)
					}
					if ev.event != "reading" {
						t.Fatalf("event %q (%s) at seq %d: want only readings", ev.event, ev.data, next)
					}
					id, _ := strconv.ParseUint(ev.id, 10, 64)
					if id != next {
						t.Fatalf("id %d, want %d (gap or duplicate)", id, next)
					}
					var r reading
					if err := json.Unmarshal([]byte(ev.data), &r); err != nil || r.Seq != id {
						t.Fatalf("data %q: %v", ev.data, err)
					}
					next++
				}
			}
			read(sr, first+total/3)
			closeStream() // the client goes away mid-burst
			if sr.retry == "" {
				t.Error("stream did not start with a retry hint")
			}
			sr2, close2 := openEvents(t, c, url, strconv.FormatUint(next-1, 10))
			defer close2()
			read(sr2, first+total-1)
			if err := <-appendDone; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRecordShapeMatchesStream proves /api/series and /api/history encode
// a record exactly as the stream's reading event does.
func TestRecordShapeMatchesStream(t *testing.T) {
	e := startHubServer(t)
	c := h2Client(t, e.testEnv)
	sr, closeStream := openEvents(t, c, e.url("/events"), "")
	defer closeStream()
	ts := time.Now().UTC().Truncate(time.Second).Add(-time.Minute + 123456789)
	values := []struct {
		kind  ringlog.Kind
		value string
		unit  string
	}{
		{ringlog.KindJSON, "2.31", "bar"},
		{ringlog.KindJSON, "{\"a\": [1, 2],\n \"b\": \"<&>\"}", ""},
		{ringlog.KindText, "open\r\n\"now\" \u2028 <tag>", "state"},
		{ringlog.KindBinary, "\x00\xff\n", ""},
		{ringlog.KindJSON, "not json", ""},
		{ringlog.KindText, "\xff bad utf8", ""},
	}
	for i, v := range values {
		appendRec(t, e.log, "shape/"+strconv.Itoa(i), v.kind, v.value, v.unit, ts)
	}
	_, body := get(t, c, e.url("/api/history?topic=shape/%23"), withToken...)
	var hist []json.RawMessage
	if err := json.Unmarshal([]byte(body), &hist); err != nil || len(hist) != len(values) {
		t.Fatalf("history: %v: %s", err, body)
	}
	_, body = get(t, c, e.url("/api/series"), withToken...)
	var series []json.RawMessage
	json.Unmarshal([]byte(body), &series)
	for i := range values {
		ev, err := sr.next()
		if err != nil {
			t.Fatal(err)
		}
		for name, got := range map[string][]byte{"history": hist[i], "series": series[i]} {
			if !sameJSON(t, got, []byte(ev.data)) {
				t.Errorf("%s record %d:\n got %s\nwant %s (as streamed)", name, i, got, ev.data)
			}
		}
	}
}

func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}

// TestShutdownWithHub is the daemon's order: the hub ends the streams,
// then the server closes, well within the deadline.
func TestShutdownWithHub(t *testing.T) {
	e := startHubServer(t)
	var closers []func()
	var readers []*sseReader
	for _, p := range protos {
		sr, cl := openEvents(t, p.client(t, e.testEnv), e.url("/events"), "")
		readers, closers = append(readers, sr), append(closers, cl)
	}
	defer func() {
		for _, cl := range closers {
			cl()
		}
	}()
	deadline := time.Now().Add(guard)
	for e.hub.Clients() < len(protos) {
		if time.Now().After(deadline) {
			t.Fatalf("hub has %d streams, want %d", e.hub.Clients(), len(protos))
		}
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.hub.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatalf("server shutdown after the hub's: %v", err)
	}
	for i, sr := range readers {
		for {
			_, err := sr.next()
			if err == nil {
				continue
			}
			if !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "NO_ERROR") {
				t.Logf("stream %d ended with %v", i, err)
			}
			break
		}
	}
}

// TestEventsRejectsBadRequests: the hub's 400s reach clients of every
// protocol through the server, with the reason.
func TestEventsRejectsBadRequests(t *testing.T) {
	e := startHubServer(t)
	for _, p := range protos {
		c := p.client(t, e.testEnv)
		for query, want := range map[string]string{
			"topic=a/%23/b":  "topic",
			"mode=sometimes": "mode",
			"lastEventID=x":  "",
		} {
			resp, body := get(t, c, e.url("/events?"+query), withToken...)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, want) {
				t.Errorf("%s %s: %d %q, want 400 naming %q", p.name, query, resp.StatusCode, body, want)
			}
		}
	}
}

package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/ringlog"
)

var withToken = []string{"Authorization", "Bearer " + testToken}

type reading struct {
	Seq      uint64          `json:"seq"`
	Topic    string          `json:"topic"`
	TS       string          `json:"ts"`
	Value    json.RawMessage `json:"value"`
	ValueB64 string          `json:"value_b64"`
	Unit     string          `json:"unit"`
}

func TestSeriesLatestPerTopic(t *testing.T) {
	e := startServer(t, nil)
	// Recent on any date: the log's age trim follows the real clock.
	t0 := time.Now().UTC().Truncate(time.Second).Add(-time.Hour + 123456789)
	appendRec(t, e.log, "sensors/pump1/pressure", ringlog.KindJSON, "2.1", "bar", t0)
	last := appendRec(t, e.log, "sensors/pump1/pressure", ringlog.KindJSON, "2.31", "bar", t0.Add(time.Second))
	appendRec(t, e.log, "sensors/door", ringlog.KindText, "open\n\"now\"", "", t0)
	appendRec(t, e.log, "raw/blob", ringlog.KindBinary, "\xff\x00\x01", "", t0)
	appendRec(t, e.log, "sensors/obj", ringlog.KindJSON, "{\"a\": [1, 2]}", "", t0)
	for _, p := range protos {
		t.Run(p.name, func(t *testing.T) {
			resp, body := get(t, p.client(t, e), e.url("/api/series"), withToken...)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d, type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			var got []reading
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			want := []reading{
				{Topic: "raw/blob", ValueB64: "/wAB"},
				{Topic: "sensors/door", Value: json.RawMessage(`"open\n\"now\""`)},
				{Topic: "sensors/obj", Value: json.RawMessage(`{"a": [1, 2]}`)}, // as stored: ingest compacts
				{Seq: last, Topic: "sensors/pump1/pressure", Value: json.RawMessage("2.31"), Unit: "bar", TS: t0.Add(time.Second).Format("2006-01-02T15:04:05.000Z")},
			}
			if len(got) != len(want) {
				t.Fatalf("got %d series, want %d: %s", len(got), len(want), body)
			}
			for i, w := range want {
				g := got[i]
				if g.Topic != w.Topic || string(g.Value) != string(w.Value) || g.ValueB64 != w.ValueB64 || g.Unit != w.Unit ||
					(w.Seq != 0 && g.Seq != w.Seq) || (w.TS != "" && g.TS != w.TS) {
					t.Errorf("series %d: got %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

func TestHistory(t *testing.T) {
	e := startServer(t, nil)
	t0 := time.Now().UTC().Truncate(time.Hour).Add(-48 * time.Hour)
	at := func(d time.Duration) string { return t0.Add(d).Format(time.RFC3339) }
	for i := range 30 {
		tp := "a/x"
		if i%3 == 0 {
			tp = "b/y"
		}
		appendRec(t, e.log, tp, ringlog.KindJSON, "1", "", t0.Add(time.Duration(i)*time.Hour))
	}
	c := h2Client(t, e)
	for _, tc := range []struct {
		query string
		n     int
		first uint64
	}{
		{query: "", n: 30, first: 1},
		{query: "topic=b/%2B", n: 10, first: 1},
		{query: "topic=a/%23&topic=b/y", n: 30, first: 1},
		{query: "from_seq=25", n: 6, first: 25},
		{query: "since=" + at(20*time.Hour), n: 10, first: 21},
		{query: "limit=4&from_seq=3", n: 4, first: 3},
		{query: "topic=a/x&since=" + at(10*time.Hour+30*time.Minute) + "&limit=5", n: 5, first: 12},
		{query: "topic=nothing", n: 0},
	} {
		for _, nd := range []bool{false, true} {
			hdr := withToken
			if nd {
				hdr = append([]string{"Accept", "application/x-ndjson"}, withToken...)
			}
			resp, body := get(t, c, e.url("/api/history?"+tc.query), hdr...)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: status %d: %s", tc.query, resp.StatusCode, body)
			}
			got := parseRecords(t, body, nd)
			if len(got) != tc.n {
				t.Fatalf("%s (ndjson %v): %d records, want %d", tc.query, nd, len(got), tc.n)
			}
			if tc.n > 0 && got[0].Seq != tc.first {
				t.Errorf("%s: first seq %d, want %d", tc.query, got[0].Seq, tc.first)
			}
			for i := 1; i < len(got); i++ {
				if got[i].Seq <= got[i-1].Seq {
					t.Fatalf("%s: not oldest first: %d after %d", tc.query, got[i].Seq, got[i-1].Seq)
				}
			}
			if wantCT := map[bool]string{false: "application/json", true: "application/x-ndjson"}[nd]; resp.Header.Get("Content-Type") != wantCT {
				t.Errorf("%s: Content-Type %q, want %q", tc.query, resp.Header.Get("Content-Type"), wantCT)
			}
		}
	}
}

func parseRecords(t *testing.T, body string, ndjson bool) []reading {
	t.Helper()
	var out []reading
	if !ndjson {
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatalf("JSON array: %v: %q", err, body)
		}
		return out
	}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		var r reading
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("NDJSON line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

func TestHistoryDefaultLimit(t *testing.T) {
	e := startServer(t, nil)
	for range DefaultHistoryLimit + 5 {
		appendRec(t, e.log, "t", ringlog.KindJSON, "0", "", time.Time{})
	}
	_, body := get(t, h2Client(t, e), e.url("/api/history"), withToken...)
	if n := len(parseRecords(t, body, false)); n != DefaultHistoryLimit {
		t.Fatalf("%d records without limit, want %d", n, DefaultHistoryLimit)
	}
}

func TestHistoryBadParams(t *testing.T) {
	e := startServer(t, nil)
	c := h3Client(t, e)
	for query, param := range map[string]string{
		"topic=a/%23/b":      "topic",
		"topic=a%2Bb":        "topic",
		"from_seq=x":         "from_seq",
		"from_seq=-1":        "from_seq",
		"since=yesterday":    "since",
		"since=2026-11-23":   "since",
		"limit=0":            "limit",
		"limit=100001":       "limit",
		"limit=ten":          "limit",
		"limit=-5&topic=a/b": "limit",
	} {
		resp, body := get(t, c, e.url("/api/history?"+query), withToken...)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, param+":") {
			t.Errorf("%s: %d %q, want 400 naming %s", query, resp.StatusCode, body, param)
		}
	}
}

func TestHealthz(t *testing.T) {
	var healthErr error
	e := startServer(t, func(o *Options) {
		o.Health = func(context.Context) error { return healthErr }
	})
	c := h2Client(t, e)
	if resp, body := get(t, c, e.url("/healthz")); resp.StatusCode != http.StatusOK || !strings.Contains(body, `"ok"`) {
		t.Fatalf("healthy: %d %s", resp.StatusCode, body)
	}
	healthErr = errors.New("hub stalled")
	if resp, body := get(t, c, e.url("/healthz")); resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "hub stalled") {
		t.Fatalf("failing check: %d %s", resp.StatusCode, body)
	}
	healthErr = nil
	e.log.Close()
	if resp, body := get(t, c, e.url("/healthz")); resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "ring log") {
		t.Fatalf("closed log: %d %s", resp.StatusCode, body)
	}
}

func TestAltSvc(t *testing.T) {
	e := startServer(t, nil)
	resp, _ := get(t, h2Client(t, e), e.url("/healthz"))
	alt := resp.Header.Values("Alt-Svc")
	if len(alt) != 1 || !strings.HasPrefix(alt[0], `h3=":`+e.port()+`"`) || strings.Count(alt[0], "h3=") != 1 {
		t.Fatalf("Alt-Svc %q, want one h3=\":%s\"", alt, e.port())
	}
	// The advertised port serves HTTP/3.
	if resp, _ := get(t, h3Client(t, e), e.url("/healthz")); resp.ProtoMajor != 3 || resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP/3 on the advertised port: %s %d", resp.Proto, resp.StatusCode)
	}

	off := startServer(t, func(o *Options) { o.HTTP3 = false })
	if resp, _ := get(t, h2Client(t, off), off.url("/healthz")); resp.Header.Get("Alt-Svc") != "" {
		t.Fatalf("Alt-Svc %q with HTTP/3 off", resp.Header.Get("Alt-Svc"))
	}
}

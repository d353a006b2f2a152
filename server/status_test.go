package server

import (
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/ringlog"
)

func TestStatus(t *testing.T) {
	e := startServer(t, func(o *Options) { o.Version = "1.2.3-test" })
	e.srv.AddStatus("mqtt", func() any { return []map[string]any{{"broker": "tcp://127.0.0.1:1883", "connected": true}} })
	e.srv.AddStatus("gone", func() any { return 1 })
	e.srv.AddStatus("gone", nil)
	now := time.Now()
	for i := range 5 {
		appendRec(t, e.log, "a/b", ringlog.KindJSON, "1", "bar", now.Add(time.Duration(i)*time.Second))
	}
	e.log.Sync(t.Context())
	for _, p := range protos[:2] {
		t.Run(p.name, func(t *testing.T) {
			resp, body := get(t, p.client(t, e), e.url("/api/status"), "Authorization", "Bearer "+testToken)
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
			var st struct {
				Hostname string  `json:"hostname"`
				Version  string  `json:"version"`
				Epoch    string  `json:"epoch"`
				Uptime   float64 `json:"uptime_seconds"`
				Ingest   struct {
					Appended uint64 `json:"appended"`
				} `json:"ingest"`
				Log struct {
					Records    int64      `json:"records"`
					LastSeq    uint64     `json:"last_seq"`
					OldestTime *time.Time `json:"oldest_time"`
				} `json:"log"`
				MQTT []struct {
					Broker    string `json:"broker"`
					Connected bool   `json:"connected"`
				} `json:"mqtt"`
				Gone any `json:"gone"`
			}
			if err := json.Unmarshal([]byte(body), &st); err != nil {
				t.Fatal(err, body)
			}
			if st.Hostname == "" || st.Version != "1.2.3-test" || st.Epoch == "" || st.Epoch != e.log.Epoch() || st.Ingest.Appended != 5 || st.Log.Records != 5 ||
				st.Log.LastSeq != e.log.LastSeq() || st.Log.OldestTime == nil || !st.Log.OldestTime.Equal(now.Truncate(0).UTC()) ||
				len(st.MQTT) != 1 || !st.MQTT[0].Connected || st.Gone != nil {
				t.Fatalf("status: %+v\n%s", st, body)
			}
		})
	}
	if resp, _ := get(t, h2Client(t, e), e.url("/api/status")); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without auth: %d", resp.StatusCode)
	}
	defer func() {
		if recover() == nil {
			t.Error("AddStatus(\"log\") did not panic")
		}
	}()
	e.srv.AddStatus("log", func() any { return nil })
}

func TestHistoryPoints(t *testing.T) {
	e := startServer(t, nil)
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	for i := range 600 { // 10 min at 1 Hz
		appendRec(t, e.log, "s/a", ringlog.KindJSON, itoa(i), "bar", base.Add(time.Duration(i)*time.Second))
		if i%10 == 0 {
			appendRec(t, e.log, "s/b", ringlog.KindText, "text", "", base.Add(time.Duration(i)*time.Second))
		}
	}
	c := h2Client(t, e)
	q := "/api/history?topic=s/%2B&since=" + url.QueryEscape(base.Format(time.RFC3339Nano)) +
		"&until=" + url.QueryEscape(base.Add(10*time.Minute).Format(time.RFC3339Nano)) + "&points=10"
	resp, body := get(t, c, e.url(q), "Authorization", "Bearer "+testToken)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	var got []struct {
		Topic   string `json:"topic"`
		Unit    string `json:"unit"`
		Buckets []struct {
			TS    time.Time `json:"ts"`
			Min   float64   `json:"min"`
			Max   float64   `json:"max"`
			Last  float64   `json:"last"`
			Count int       `json:"count"`
		} `json:"buckets"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err, body)
	}
	if len(got) != 1 || got[0].Topic != "s/a" || got[0].Unit != "bar" || len(got[0].Buckets) != 10 {
		t.Fatalf("got %s", body)
	}
	for i, b := range got[0].Buckets {
		if b.Min != float64(i*60) || b.Max != float64(i*60+59) || b.Last != b.Max || b.Count != 60 ||
			!b.TS.Equal(base.Add(time.Duration(i*60+59)*time.Second)) {
			t.Fatalf("bucket %d: %+v", i, b)
		}
	}
	// ndjson: one series per line; bad points: 400 naming the parameter.
	resp, body = get(t, c, e.url("/api/history?points=5"), "Authorization", "Bearer "+testToken, "Accept", "application/x-ndjson")
	if lines := strings.Split(strings.TrimSpace(body), "\n"); resp.StatusCode != 200 || len(lines) != 1 || !strings.HasPrefix(lines[0], `{"topic":"s/a"`) {
		t.Fatalf("ndjson: %d %q", resp.StatusCode, body)
	}
	for _, bad := range []string{"0", "-1", "x", "10001"} {
		if resp, body := get(t, c, e.url("/api/history?points="+bad), "Authorization", "Bearer "+testToken); resp.StatusCode != 400 || !strings.Contains(body, "points") {
			t.Errorf("points=%s: %d %s", bad, resp.StatusCode, body)
		}
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// TestDashboardServing: the page and its assets carry the CSP, assets are
// open (the login form uses them), gzip-encoded with strong ETags, cached
// for a year, and revalidate with 304.
func TestDashboardServing(t *testing.T) {
	e := startServer(t, nil)
	c := h2Client(t, e)
	c.Transport.(*http.Transport).DisableCompression = true
	resp, page := get(t, c, e.url("/"), "Authorization", "Bearer "+testToken)
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("page: %d %v", resp.StatusCode, resp.Header)
	}
	assets := regexp.MustCompile(`(?:href|src)="(/assets/[^"]+)"`).FindAllStringSubmatch(page, -1)
	if len(assets) < 4 {
		t.Fatalf("assets in page: %v", assets)
	}
	total := len(page)
	for _, m := range assets {
		resp, body := get(t, c, e.url(m[1]), "Accept-Encoding", "gzip") // no credentials
		if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "gzip" ||
			!strings.Contains(resp.Header.Get("Cache-Control"), "immutable") || !strings.HasPrefix(resp.Header.Get("ETag"), `"`) {
			t.Fatalf("%s: %d %v", m[1], resp.StatusCode, resp.Header)
		}
		zr, err := gzip.NewReader(strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(zr); err != nil {
			t.Fatalf("%s: gzip: %v", m[1], err)
		}
		total += len(body)
		resp, _ = get(t, c, e.url(m[1]), "Accept-Encoding", "gzip", "If-None-Match", resp.Header.Get("ETag"))
		if resp.StatusCode != http.StatusNotModified {
			t.Fatalf("%s revalidated: %d", m[1], resp.StatusCode)
		}
	}
	t.Logf("page + assets, gzip: %d bytes", total)
	if total > 150<<10 {
		t.Errorf("first load %d bytes, want < 150 KiB", total)
	}
	if resp, _ := get(t, c, e.url("/assets/000000000000/app.js")); resp.StatusCode != 404 {
		t.Errorf("unknown asset version: %d", resp.StatusCode)
	}
}

// TestLoginForm: a wrong token typed into the form gets the form again,
// with a message and 401; a right one the cookie and a redirect.
func TestLoginForm(t *testing.T) {
	e := startServer(t, nil)
	c := h2Client(t, e)
	post := func(tok string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodPost, e.url("/login"), strings.NewReader(url.Values{"token": {tok}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return do(t, c, req)
	}
	resp, body := post("wrong")
	if resp.StatusCode != 401 || !strings.Contains(body, `role="alert"`) || !strings.Contains(body, "not valid") ||
		!strings.Contains(body, `action="/login"`) || len(resp.Cookies()) != 0 || resp.Header.Get("Content-Security-Policy") == "" {
		t.Fatalf("wrong token: %d %v %s", resp.StatusCode, resp.Cookies(), body)
	}
	resp, _ = post(testToken)
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 {
		t.Fatalf("right token: %d %v", resp.StatusCode, resp.Cookies())
	}
	resp, body = get(t, c, e.url("/"))
	if resp.StatusCode != 401 || strings.Contains(body, `role="alert"`) {
		t.Fatalf("fresh login page: %d %s", resp.StatusCode, body)
	}
}

package dashboard_test

// The dashboard in real Chromium (Debian's chromium, driven with chromedp)
// against a real eddy server: ring log, sse hub, HTTP/2 and HTTP/3.
// Chromium missing: the tests fail under CI=true or
// EDDY_REQUIRE_CHROMIUM=1 and skip loudly otherwise (`make deps`
// installs it). Screenshots go to $EDDY_ARTIFACTS, else t.ArtifactDir()
// (kept with `go test -artifacts`).

import (
	"context"
	"crypto/sha256"
	stdtls "crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"go.uber.org/goleak"

	"github.com/eddy-iot/eddy/ringlog"
	"github.com/eddy-iot/eddy/server"
	"github.com/eddy-iot/eddy/sse"
	eddytls "github.com/eddy-iot/eddy/tls"
)

const testToken = "dash-token-0123456789abcdef"

// TestMain checks that every goroutine the tests started (servers, hubs,
// Chromium's connections) has ended.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// chromiumPath finds Chromium or ends the test: fail when it is required,
// skip (loudly) when not.
func chromiumPath(t testing.TB) string {
	t.Helper()
	for _, n := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	msg := "Chromium not found: the dashboard's browser tests did NOT run. Run `make deps` (apt-get install -y chromium)"
	if os.Getenv("CI") == "true" || os.Getenv("EDDY_REQUIRE_CHROMIUM") == "1" {
		t.Fatal(msg)
	}
	fmt.Fprintln(os.Stderr, "\n*** "+msg+" ***")
	t.Skip(msg)
	return ""
}

// eddy is a running daemon: ring log, hub and server, assembled as
// cmd/eddy does. stop and start model a kill and a restart on the same
// port and data directory.
type eddy struct {
	t    testing.TB
	dir  string
	dev  *eddytls.Device
	port int
	spki string // base64 SHA-256 of the leaf's SubjectPublicKeyInfo
	buf  int    // sse client buffer

	mu   sync.Mutex // protects the running parts below
	log  *ringlog.Log
	hub  *sse.Hub
	srv  *server.Server
	stop func()
}

func startEddy(t testing.TB, clientBuffer int) *eddy {
	t.Helper()
	dir := t.TempDir()
	dev, err := eddytls.Load(eddytls.Options{Dir: dir, Hostname: "eddy-dash-test",
		Addrs: func() ([]net.IP, error) { return []net.IP{net.IPv4(127, 0, 0, 1)}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	spki := sha256.Sum256(dev.Certificate().Leaf.RawSubjectPublicKeyInfo)
	e := &eddy{t: t, dir: dir, dev: dev, spki: base64.StdEncoding.EncodeToString(spki[:]), buf: clientBuffer}
	e.start()
	t.Cleanup(e.kill)
	return e
}

func (e *eddy) start() {
	t := e.t
	t.Helper()
	l, err := ringlog.Open(e.dir, &ringlog.Options{SyncInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	m := &sse.Metrics{}
	hub := sse.NewHub(l, sse.Options{ClientBuffer: e.buf, Heartbeat: 5 * time.Second, Retry: 500 * time.Millisecond, Metrics: m})
	ctx, cancel := context.WithCancel(context.Background())
	hubDone := make(chan struct{})
	go func() { defer close(hubDone); hub.Run(ctx) }()
	listen := "127.0.0.1:" + strconv.Itoa(e.port)
	srv, err := server.New(server.Options{
		Listen: listen, HTTP3: true, TLS: e.dev.ServerConfig(), Log: l, Events: hub,
		Tokens: []string{testToken}, SessionKey: []byte("a session key that survives restarts"),
		Version: "test", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.AddStatus("upstream", func() any { // the shape upstream.DeviceView has
		return map[string]any{"device": "eddy-dash-test", "connected": true, "published": 1234, "lag_records": 5, "lag_seconds": 0.4, "gap_records": 0}
	})
	srv.AddStatus("streams", func() any {
		out := map[string]int64{}
		for p, name := range sse.StreamProtos {
			for k := range sse.StreamModes {
				out[name] += m.Streams[p][k].Load()
			}
		}
		return out
	})
	for i := 0; ; i++ { // the previous run's port may linger a moment
		if err = srv.Start(); err == nil || i == 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	e.port = srv.Addr().(*net.TCPAddr).Port
	e.mu.Lock()
	e.log, e.hub, e.srv = l, hub, srv
	e.stop = func() {
		sctx, scancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer scancel()
		go hub.Shutdown(sctx)
		srv.Shutdown(sctx)
		cancel()
		<-hubDone
		l.Close()
	}
	e.mu.Unlock()
}

// kill stops the daemon abruptly: streams are cut, not ended politely.
func (e *eddy) kill() {
	e.mu.Lock()
	stop := e.stop
	e.stop = nil
	e.mu.Unlock()
	if stop != nil {
		stop()
	}
}

func (e *eddy) url(p string) string { return "https://127.0.0.1:" + strconv.Itoa(e.port) + p }

// publish appends a reading observed now.
func (e *eddy) publish(topic string, v float64, unit string) uint64 {
	e.mu.Lock()
	l := e.log
	e.mu.Unlock()
	seq, err := l.Append(ringlog.Record{Topic: topic, Kind: ringlog.KindJSON, Value: strconv.AppendFloat(nil, v, 'g', -1, 64), Unit: unit, Time: time.Now()})
	if err != nil {
		e.t.Errorf("append: %v", err)
	}
	return seq
}

func (e *eddy) appendRaw(r ringlog.Record) {
	e.mu.Lock()
	l := e.log
	e.mu.Unlock()
	if _, err := l.Append(r); err != nil {
		e.t.Errorf("append: %v", err)
	}
}

// apiGet fetches an API path with the token.
func (e *eddy) apiGet(t testing.TB, p string, v any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.url(p), nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	c := e.client()
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
}

func (e *eddy) client() *http.Client {
	b, _ := os.ReadFile(e.dev.CAFile())
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(b)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &stdtls.Config{RootCAs: roots}}}
}

// browser is one Chromium with one tab.
type browser struct {
	ctx         context.Context
	mu          sync.Mutex
	errs        []string // page exceptions and CSP violations
	eventsProto string
}

type browserOpts struct {
	h3            bool
	width, height int
	dark          bool
}

func newBrowser(t testing.TB, e *eddy, o browserOpts) *browser {
	t.Helper()
	exe := chromiumPath(t)
	if o.width == 0 {
		o.width, o.height = 1366, 768
	}
	flags := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("ignore-certificate-errors-spki-list", e.spki),
		chromedp.WindowSize(o.width, o.height),
		chromedp.UserDataDir(t.TempDir()),
	)
	if o.h3 {
		flags = append(flags, chromedp.Flag("enable-quic", true),
			chromedp.Flag("origin-to-force-quic-on", "127.0.0.1:"+strconv.Itoa(e.port)))
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), flags...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); acancel() })
	b := &browser{ctx: ctx}
	if err := chromedp.Listen(ctx, func(ev any) {
		b.mu.Lock()
		defer b.mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			b.errs = append(b.errs, (&chromedp.ExceptionError{ExceptionDetails: ev.ExceptionDetails}).Error())
		case *network.EventResponseReceived:
			if strings.Contains(ev.Response.URL, "/events") {
				b.eventsProto = ev.Response.Protocol
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, runtime.Enable, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(int64(o.width), int64(o.height))); err != nil {
		t.Fatal(err)
	}
	scheme := "light"
	if o.dark {
		scheme = "dark"
	}
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}}); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *browser) errors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errs...)
}

func (b *browser) proto() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.eventsProto
}

// do runs actions with a deadline.
func (b *browser) do(t testing.TB, d time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, d)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("chromium: %v (page errors: %v)", err, b.errors())
	}
}

// eval evaluates js (awaiting a promise) into a T.
func eval[T any](t testing.TB, b *browser, js string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("eval %.80q: %v (page errors: %v)", js, err, b.errors())
	}
	return v
}

// waitFor polls js until it is true.
func waitFor(t testing.TB, b *browser, d time.Duration, what, js string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
		cancel()
		if err == nil && ok {
			return time.Since(start)
		}
		if time.Since(start) > d {
			t.Fatalf("waiting %v for %s: %v (page errors: %v)", d, what, err, b.errors())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// login types the token into the form and waits for the app.
func (b *browser) login(t testing.TB, e *eddy) {
	t.Helper()
	b.do(t, 30*time.Second,
		chromedp.Navigate(e.url("/")),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), testToken),
		chromedp.Click(chromedp.CSS("form button")),
		chromedp.WaitVisible(chromedp.CSS("#tiles")),
	)
}

// artifacts is where screenshots go.
func artifacts(t *testing.T) string {
	if d := os.Getenv("EDDY_ARTIFACTS"); d != "" {
		os.MkdirAll(d, 0o755)
		return d
	}
	return t.ArtifactDir()
}

func (b *browser) screenshot(t *testing.T, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	// The viewport, as a person sees it: the page draws only the tiles in
	// view, so a full-page capture shows the rest empty.
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	p := filepath.Join(artifacts(t), name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", p)
}

// axe runs axe-core and fails on serious or critical violations.
func (b *browser) axe(t *testing.T, what string) {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("testdata", "axe", "node_modules", "axe-core", "axe.min.js"))
	if err != nil {
		msg := "axe-core not installed (run `make deps`: npm ci in dashboard/testdata/axe): " + err.Error()
		if os.Getenv("CI") == "true" || os.Getenv("EDDY_REQUIRE_CHROMIUM") == "1" {
			t.Fatal(msg)
		}
		t.Log("*** " + msg + " ***")
		return
	}
	eval[bool](t, b, string(src)+";true")
	type violation struct {
		ID, Impact, Help string
		Nodes            []struct{ Target []string }
	}
	vs := eval[[]violation](t, b, `axe.run(document, {resultTypes: ['violations']}).then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map(n => ({target: n.target.map(String)}))})))`)
	for _, v := range vs {
		if v.Impact == "serious" || v.Impact == "critical" {
			t.Errorf("axe on %s: %s (%s): %s at %v", what, v.ID, v.Impact, v.Help, v.Nodes)
		} else {
			t.Logf("axe on %s: %s (%s): %s", what, v.ID, v.Impact, v.Help)
		}
	}
}

// TestDashboardH2 is the technician's session over HTTP/2: log in by
// typing the token, tiles, a new value within a second, the chart's
// backfill and live extension, accessibility, and screenshots.
func TestDashboardH2(t *testing.T) {
	e := startEddy(t, 0)
	now := time.Now()
	// Half a minute of history for the chart, a second apart.
	for i := range 30 {
		e.appendRaw(ringlog.Record{Topic: "plant/pump1/pressure", Kind: ringlog.KindJSON, Unit: "bar",
			Value: []byte(strconv.FormatFloat(2+float64(i%7)/10, 'f', 2, 64)), Time: now.Add(time.Duration(i-30) * time.Second)})
	}
	e.publish("plant/pump1/temperature", 41.5, "°C")
	e.publish("plant/tank/level", 73, "%")
	e.appendRaw(ringlog.Record{Topic: "plant/pump1/state", Kind: ringlog.KindText, Value: []byte("running"), Time: now})
	e.appendRaw(ringlog.Record{Topic: "plant/camera/frame", Kind: ringlog.KindBinary, Value: []byte{0xff, 0xd8, 0, 1, 2}, Time: now})
	e.appendRaw(ringlog.Record{Topic: "plant/valve/open", Kind: ringlog.KindJSON, Value: []byte("true"), Time: now.Add(-time.Minute)})

	b := newBrowser(t, e, browserOpts{})
	// The login form, a wrong token, then the right one typed in.
	b.do(t, 30*time.Second, chromedp.Navigate(e.url("/")), chromedp.WaitVisible(chromedp.CSS("#token")))
	b.axe(t, "the login page")
	b.screenshot(t, "login-1366x768-light")
	b.do(t, 10*time.Second, chromedp.SendKeys(chromedp.CSS("#token"), "not-the-token"), chromedp.Click(chromedp.CSS("form button")),
		chromedp.WaitVisible(chromedp.CSS("#login-error")))
	b.axe(t, "the login page with its error")
	b.screenshot(t, "login-error-1366x768-light")
	b.login(t, e)
	waitFor(t, b, 5*time.Second, "six tiles", `document.querySelectorAll('#tiles li').length === 6`)
	waitFor(t, b, 5*time.Second, "live", `eddy.state().conn === 'live'`)
	vals := eval[map[string]*string](t, b, `eddy.values()`)
	for topic, want := range map[string]string{"plant/pump1/temperature": "41.5", "plant/tank/level": "73",
		"plant/pump1/state": "running", "plant/camera/frame": "binary, 5 B", "plant/valve/open": "true"} {
		if vals[topic] == nil || *vals[topic] != want {
			t.Errorf("tile %s shows %v, want %q", topic, vals[topic], want)
		}
	}
	// A new value shows within a second, in the DOM a person sees.
	e.publish("plant/tank/level", 74.25, "%")
	took := waitFor(t, b, time.Second, "the new value on screen",
		`[...document.querySelectorAll('#tiles li')].some(li => li.querySelector('.name').textContent === 'plant/tank/level' && li.querySelector('.num').textContent === '74.25')`)
	t.Logf("new value on screen after %v", took)
	waitFor(t, b, 5*time.Second, "stale mark on the old valve reading",
		`[...document.querySelectorAll('#tiles li.stale .name')].some(n => n.textContent === 'plant/valve/open')`)
	if p := b.proto(); p != "h2" {
		t.Errorf("events protocol %q, want h2", p)
	}
	waitFor(t, b, 8*time.Second, "h2 shown", `document.querySelector('#proto').textContent === 'h2'`)
	b.axe(t, "the tiles")
	b.screenshot(t, "tiles-1366x768-light")

	// Filter: wildcards and plain text.
	b.do(t, 5*time.Second, chromedp.SendKeys(chromedp.CSS("#filter"), "plant/pump1/+"))
	waitFor(t, b, 2*time.Second, "wildcard filter", `[...document.querySelectorAll('#tiles li')].filter(li => !li.hidden).length === 3`)
	eval[bool](t, b, `document.querySelector('#filter').value = '', true`)
	b.do(t, 5*time.Second, chromedp.SendKeys(chromedp.CSS("#filter"), "TANK"))
	waitFor(t, b, 2*time.Second, "text filter", `[...document.querySelectorAll('#tiles li')].filter(li => !li.hidden).length === 1`)
	eval[bool](t, b, `document.querySelector('#filter').value = '', true`)
	b.do(t, 5*time.Second, chromedp.SendKeys(chromedp.CSS("#filter"), " "))
	waitFor(t, b, 2*time.Second, "no filter", `[...document.querySelectorAll('#tiles li')].filter(li => !li.hidden).length === 6`)
	// A favourite moves to the top and survives a reload.
	eval[bool](t, b, `[...document.querySelectorAll('#tiles li')].find(li => li.querySelector('.name').textContent === 'plant/valve/open').querySelector('.fav').click(), true`)
	waitFor(t, b, 2*time.Second, "pinned first", `document.querySelector('#tiles li .name').textContent === 'plant/valve/open'`)
	// Pause freezes what is shown (the model keeps up); resume shows the
	// latest at once.
	b.do(t, 5*time.Second, chromedp.Click(chromedp.CSS("#pause")))
	waitFor(t, b, 2*time.Second, "paused", `document.querySelector('#state').textContent === 'paused' && document.querySelector('#pause').getAttribute('aria-pressed') === 'true'`)
	e.publish("plant/tank/level", 80, "%")
	waitFor(t, b, 2*time.Second, "the reading taken in", `eddy.values()['plant/tank/level'] === '80'`)
	time.Sleep(600 * time.Millisecond)
	if shown := eval[string](t, b, `[...document.querySelectorAll('#tiles li')].find(li => li.querySelector('.name').textContent === 'plant/tank/level').querySelector('.num').textContent`); shown != "74.25" {
		t.Errorf("paused tile shows %q, want the value from before the pause", shown)
	}
	b.do(t, 5*time.Second, chromedp.Click(chromedp.CSS("#pause")))
	waitFor(t, b, time.Second, "resumed with the latest", `[...document.querySelectorAll('#tiles li')].find(li => li.querySelector('.name').textContent === 'plant/tank/level').querySelector('.num').textContent === '80'`)
	// Favourites survive a reload (localStorage).
	b.do(t, 10*time.Second, chromedp.Navigate(e.url("/")), chromedp.WaitVisible(chromedp.CSS("#tiles li")))
	waitFor(t, b, 5*time.Second, "still pinned after a reload", `document.querySelector('#tiles li .name').textContent === 'plant/valve/open' && document.querySelector('#tiles li .fav').getAttribute('aria-pressed') === 'true'`)
	// The keyboard alone opens a chart: focus a tile's name, press Enter.
	eval[bool](t, b, `[...document.querySelectorAll('#tiles .name')].find(n => n.textContent === 'plant/pump1/pressure').focus(), true`)
	b.do(t, 5*time.Second, chromedp.KeyEvent("\r"))

	// The chart: its backfill is what /api/history holds, then live
	// points extend it.
	waitFor(t, b, 5*time.Second, "the chart", `!!document.querySelector('#chart canvas') && eddy.chart().data['plant/pump1/pressure'] && eddy.chart().data['plant/pump1/pressure'].t.length >= 30`)
	var hist []struct {
		TS    time.Time `json:"ts"`
		Value float64   `json:"value"`
	}
	e.apiGet(t, "/api/history?topic=plant/pump1/pressure", &hist)
	type series struct{ T, V []float64 }
	got := eval[map[string]series](t, b, `eddy.chart().data`)["plant/pump1/pressure"]
	if len(got.T) != len(hist) {
		t.Fatalf("chart holds %d points, /api/history %d", len(got.T), len(hist))
	}
	for i, h := range hist {
		if got.V[i] != h.Value || int64(got.T[i]*1000+0.5) != h.TS.UnixMilli() {
			t.Fatalf("chart point %d = (%v, %v), history (%v, %v)", i, got.T[i], got.V[i], h.TS, h.Value)
		}
	}
	e.publish("plant/pump1/pressure", 3.14, "bar")
	waitFor(t, b, 2*time.Second, "a live point in the chart", `(d => d.v[d.v.length-1] === 3.14 && d.v.length === 31)(eddy.chart().data['plant/pump1/pressure'])`)
	// Zoom by keyboard: Tab onto the chart (it shows its focus), + zooms
	// in, the arrows move, - zooms out, 0 shows the whole window; each
	// change is announced in the live region.
	eval[bool](t, b, `document.querySelector('#chart-series li:last-child button').focus(), true`)
	b.do(t, 5*time.Second, chromedp.KeyEvent("\t"))
	waitFor(t, b, 2*time.Second, "the chart focused, visibly", `document.activeElement.id === 'chart' && document.querySelector('#chart').matches(':focus-visible') && getComputedStyle(document.querySelector('#chart')).outlineStyle === 'solid'`)
	full := eval[[]float64](t, b, `eddy.chart().view`)
	b.do(t, 5*time.Second, chromedp.KeyEvent("+"))
	waitFor(t, b, 2*time.Second, "zoomed in", `eddy.chart().zoomed && /^Zoomed to /.test(document.querySelector('#chart-view').textContent)`)
	in := eval[[]float64](t, b, `eddy.chart().view`)
	if span, fullSpan := in[1]-in[0], full[1]-full[0]; span > fullSpan*0.6 || span < fullSpan*0.4 {
		t.Errorf("+ zoomed %v to %v: want half the span", full, in)
	}
	b.do(t, 5*time.Second, chromedp.KeyEvent(kb.ArrowLeft))
	left := eval[[]float64](t, b, `eddy.chart().view`)
	if left[0] >= in[0] || left[1]-left[0] < (in[1]-in[0])*0.99 {
		t.Errorf("← moved the view %v to %v: want earlier, same span", in, left)
	}
	b.do(t, 5*time.Second, chromedp.KeyEvent(kb.ArrowRight))
	if right := eval[[]float64](t, b, `eddy.chart().view`); right[0] <= left[0] {
		t.Errorf("→ moved the view %v to %v: want later", left, right)
	}
	b.do(t, 5*time.Second, chromedp.KeyEvent("-"))
	b.do(t, 5*time.Second, chromedp.KeyEvent("+"))
	b.do(t, 5*time.Second, chromedp.KeyEvent("0"))
	waitFor(t, b, 2*time.Second, "the whole window again", `!eddy.chart().zoomed && /whole window/.test(document.querySelector('#chart-view').textContent)`)
	if v := eval[[]float64](t, b, `eddy.chart().view`); v[0] > full[0] || v[1] < full[1] {
		t.Errorf("after 0 the view is %v, want all of %v", v, full)
	}
	if live := eval[string](t, b, `document.querySelector('#chart-view').getAttribute('aria-live')`); live != "polite" {
		t.Errorf("#chart-view aria-live=%q", live)
	}
	b.axe(t, "the chart")
	b.screenshot(t, "chart-1366x768-light")
	if errs := b.errors(); len(errs) > 0 {
		t.Errorf("page errors: %v", errs)
	}
}

// TestDashboardScreens: phone and desktop, light and dark.
func TestDashboardScreens(t *testing.T) {
	e := startEddy(t, 0)
	now := time.Now()
	topics := []struct {
		name, unit string
		v          float64
	}{
		{"plant/pump1/pressure", "bar", 2.31}, {"plant/pump1/temperature", "°C", 41.5}, {"plant/pump2/pressure", "bar", 1.98},
		{"plant/tank/level", "%", 73}, {"system/load1", "", 0.42}, {"system/mem_used", "bytes", 312456192},
		{"system/cpu_temp", "°C", 52.1}, {"weather/wind", "m/s", 4.7},
	}
	for i := range 120 {
		for k, tp := range topics {
			v := tp.v * (1 + 0.05*float64((i*(k+3))%11-5)/5)
			e.appendRaw(ringlog.Record{Topic: tp.name, Kind: ringlog.KindJSON, Unit: tp.unit,
				Value: strconv.AppendFloat(nil, v, 'f', 2, 64), Time: now.Add(time.Duration(i-120) * 2 * time.Second)})
		}
	}
	e.appendRaw(ringlog.Record{Topic: "plant/pump1/state", Kind: ringlog.KindText, Value: []byte("running"), Time: now})
	e.appendRaw(ringlog.Record{Topic: "plant/valve/open", Kind: ringlog.KindJSON, Value: []byte("false"), Time: now.Add(-10 * time.Minute)})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // live values, so the tiles look as they do in the field
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
			for k, tp := range topics {
				e.publish(tp.name, tp.v*(1+0.05*float64((i*(k+3))%11-5)/5), tp.unit)
			}
		}
	}()
	defer func() { close(stop); <-done }()
	for _, sz := range [][2]int{{390, 844}, {1366, 768}} {
		for _, dark := range []bool{false, true} {
			name := fmt.Sprintf("%dx%d-", sz[0], sz[1]) + map[bool]string{false: "light", true: "dark"}[dark]
			t.Run(name, func(t *testing.T) {
				b := newBrowser(t, e, browserOpts{width: sz[0], height: sz[1], dark: dark})
				b.login(t, e)
				waitFor(t, b, 5*time.Second, "tiles", `document.querySelectorAll('#tiles li').length === 10`)
				waitFor(t, b, 5*time.Second, "live", `eddy.state().conn === 'live'`)
				// Every numeric tile in view has its sparkline.
				waitFor(t, b, 3*time.Second, "the sparklines", `[...document.querySelectorAll('#tiles li')].filter(li => { const r = li.getBoundingClientRect(); return r.bottom > 0 && r.top < innerHeight && !li.querySelector('.val').classList.contains('text') }).every(li => /^M/.test(li.querySelector('.spark path').getAttribute('d') || ''))`)
				b.screenshot(t, "tiles-"+name)
				eval[bool](t, b, `document.querySelector('#tiles .name').click(), true`)
				waitFor(t, b, 5*time.Second, "the chart", `!!document.querySelector('#chart canvas')`)
				eval[bool](t, b, `document.querySelector('#device').open = true, true`)
				waitFor(t, b, 6*time.Second, "the device panel", `/eddy-dash-test: connected, 1,234 published, 5 records behind/.test(document.querySelector('#status').textContent)`)
				b.screenshot(t, "chart-"+name)
				if sz[0] == 1366 && !dark {
					// The whole page in view at once, for README
					// (docs/dashboard.png).
					h := eval[int](t, b, `document.documentElement.scrollHeight`)
					b.do(t, 10*time.Second, chromedp.EmulateViewport(1366, int64(h)))
					waitFor(t, b, 5*time.Second, "every tile drawn", `[...document.querySelectorAll('#tiles li')].every(li => li.querySelector('.val').classList.contains('text') || /^M/.test(li.querySelector('.spark path').getAttribute('d') || ''))`)
					b.screenshot(t, "page-1366-light")
				}
				if sz[0] == 390 {
					if w := eval[int](t, b, `document.documentElement.scrollWidth`); w > 390 {
						t.Errorf("page is %d px wide on a 390 px phone: it scrolls sideways", w)
					}
				}
			})
		}
	}
}

// TestDashboardH3: with QUIC forced, the live stream runs over HTTP/3,
// and the page says so.
func TestDashboardH3(t *testing.T) {
	e := startEddy(t, 0)
	e.publish("plant/tank/level", 73, "%")
	b := newBrowser(t, e, browserOpts{h3: true})
	b.login(t, e)
	waitFor(t, b, 5*time.Second, "live", `eddy.state().conn === 'live' && document.querySelectorAll('#tiles li').length === 1`)
	e.publish("plant/tank/level", 75.5, "%")
	took := waitFor(t, b, time.Second, "the new value over h3", `eddy.values()['plant/tank/level'] === '75.5' && document.querySelector('#tiles .num').textContent === '75.5'`)
	t.Logf("new value on screen after %v", took)
	if p := b.proto(); p != "h3" {
		t.Errorf("events protocol %q, want h3", p)
	}
	waitFor(t, b, 8*time.Second, "h3 shown", `document.querySelector('#proto').textContent === 'h3'`)
	if nh := eval[string](t, b, `performance.getEntriesByType('navigation')[0].nextHopProtocol`); nh != "h3" {
		t.Errorf("page nextHopProtocol %q, want h3", nh)
	}
	// A session that ends (here: the cookie is gone) returns the page to
	// the login form, not to a broken page.
	if _, err := chromedp.Call(b.ctx, network.ClearBrowserCookies, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, b, 10*time.Second, "the login form after the session ended", `!!document.querySelector('#token')`)
}

// TestDashboardRestart: the daemon dies and comes back on the same port
// and ring log; the page says "reconnecting", then resumes by itself
// with Last-Event-ID, and its chart has every point once.
func TestDashboardRestart(t *testing.T) {
	for _, h3 := range []bool{false, true} {
		t.Run(map[bool]string{false: "h2", true: "h3"}[h3], func(t *testing.T) { testRestart(t, h3) })
	}
}

func testRestart(t *testing.T, h3 bool) {
	e := startEddy(t, 0)
	const topic = "plant/pump1/pressure"
	v := 0.0
	pub := func(n int) {
		for range n {
			v++
			e.publish(topic, v, "bar")
			time.Sleep(300 * time.Millisecond) // slower than the page's rate cap: every point is sent
		}
	}
	v++
	e.appendRaw(ringlog.Record{Topic: topic, Kind: ringlog.KindJSON, Value: []byte("1"), Time: time.Now().Add(-10 * time.Second)})
	b := newBrowser(t, e, browserOpts{h3: h3})
	b.login(t, e)
	waitFor(t, b, 5*time.Second, "live", `eddy.state().conn === 'live'`)
	if want := map[bool]string{false: "h2", true: "h3"}[h3]; b.proto() != want {
		t.Errorf("events protocol %q, want %s", b.proto(), want)
	}
	eval[bool](t, b, `document.querySelector('#tiles .name').click(), true`)
	waitFor(t, b, 5*time.Second, "the chart", `(eddy.chart().data['`+topic+`'] || {t: []}).t.length === 1`)
	pub(5)
	waitFor(t, b, 3*time.Second, "live points", `eddy.chart().data['`+topic+`'].t.length === 6`)

	e.kill()
	waitFor(t, b, 10*time.Second, "reconnecting", `eddy.state().conn === 'reconnecting' && document.querySelector('#state').textContent.startsWith('reconnecting')`)
	e.start()
	pub(6) // some before the page is back, some after
	waitFor(t, b, 15*time.Second, "live again", `eddy.state().conn === 'live'`)
	pub(4)
	waitFor(t, b, 5*time.Second, "every point", `eddy.chart().data['`+topic+`'].t.length >= 16`)
	time.Sleep(300 * time.Millisecond)
	type series struct{ T, V []float64 }
	got := eval[map[string]series](t, b, `eddy.chart().data`)[topic]
	for i := range got.V {
		if got.V[i] != float64(i+1) {
			t.Fatalf("chart values %v: want 1..16 once each, in order", got.V)
		}
	}
	if len(got.V) != 16 {
		t.Fatalf("chart has %d points, want 16: %v", len(got.V), got.V)
	}
	if n := eval[int](t, b, `performance.getEntriesByType('navigation').length`); n != 1 {
		t.Errorf("the page was reloaded (%d navigations)", n)
	}
}

// TestDashboardThrottled: a page on a slow CPU behind a burst gets a gap;
// it says it is downsampled, how much it skipped, and shows the latest
// values. The page is the one users get, with the rate cap it chooses
// for the screen (4 updates a second per tile here): the server tells a
// capped stream of a gap once one of its writes was blocked for longer
// than the cap's interval.
func TestDashboardThrottled(t *testing.T) {
	e := startEddy(t, 64)
	const topics = 40
	for k := range topics {
		e.publish(fmt.Sprintf("burst/s%02d", k), 0, "")
	}
	b := newBrowser(t, e, browserOpts{})
	b.login(t, e)
	b.do(t, 10*time.Second, chromedp.Navigate(e.url("/")), chromedp.WaitVisible(chromedp.CSS("#tiles")))
	waitFor(t, b, 5*time.Second, "tiles", fmt.Sprintf(`document.querySelectorAll('#tiles li').length === %d && eddy.state().conn === 'live'`, topics))
	if rate := eval[float64](t, b, `eddy.state().rate`); rate <= 0 {
		t.Fatalf("the page asked for no rate cap (%v)", rate)
	}
	if _, err := chromedp.Call(b.ctx, emulation.SetCPUThrottlingRate, emulation.SetCPUThrottlingRateParams{Rate: 20}); err != nil {
		t.Fatal(err)
	}
	// Block the page's main thread for a while as a slow phone would be,
	// while a burst arrives.
	go func() {
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		defer cancel()
		chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { const end = Date.now() + 3000; while (Date.now() < end) {} return true })()`))
	}()
	// Each topic at 8 Hz, twice the page's cap, for 3.5 s, with values
	// large enough (24 KB) that what the cap lets through (about 4 MB/s)
	// fills Chromium's buffers and its HTTP/2 stream window (6 MB)
	// within the block.
	const rounds = 28
	pad := strings.Repeat("x", 24<<10)
	for i := range rounds {
		for k := range topics {
			e.appendRaw(ringlog.Record{Topic: fmt.Sprintf("burst/s%02d", k), Kind: ringlog.KindText,
				Value: fmt.Appendf(nil, "%d %s", i+1, pad), Time: time.Now()})
		}
		time.Sleep(125 * time.Millisecond)
	}
	waitFor(t, b, 15*time.Second, "the downsampled notice", `document.querySelector('#state').dataset.state === 'downsampled' && /updates skipped/.test(document.querySelector('#state').textContent)`)
	skipped := eval[int](t, b, `eddy.state().skipped`)
	t.Logf("state: %q", eval[string](t, b, `document.querySelector('#state').textContent`))
	if skipped <= 0 {
		t.Errorf("skipped %d", skipped)
	}
	defer func() {
		if t.Failed() {
			t.Logf("on screen: %v", eval[[]string](t, b, `[...document.querySelectorAll('#tiles .num')].map(n => n.textContent.slice(0, 5))`))
		}
	}()
	latest := fmt.Sprintf("'%d x'", rounds)
	waitFor(t, b, 20*time.Second, "the latest values", `Object.values(eddy.values()).every(v => v.startsWith(`+latest+`)) && [...document.querySelectorAll('#tiles li')].filter(li => { const r = li.getBoundingClientRect(); return r.bottom > 0 && r.top < innerHeight }).every(li => li.querySelector('.num').textContent.startsWith(`+latest+`))`)
	chromedp.Call(b.ctx, emulation.SetCPUThrottlingRate, emulation.SetCPUThrottlingRateParams{Rate: 1})
}

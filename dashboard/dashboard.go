// Package dashboard owns eddy's web UI, the technician's dashboard: the
// HTML, CSS and JavaScript under web/ (embedded, so `go build` needs only
// Go; uPlot is vendored under web/vendor/uplot with its MIT licence), and
// the login form's page. The server mounts Handler at / and calls Login
// for unauthenticated browsers.
//
// Guarantees:
//
//   - Nothing leaves the device: no CDN, no web fonts, no inline script or
//     style; every response carries a Content-Security-Policy that allows
//     only 'self'.
//   - Assets are served from versioned names (/assets/<hash>/<file>, the
//     hash of their content) with a one-year immutable cache, gzip
//     precompressed once at New and chosen by Accept-Encoding, and strong
//     ETags per representation; the page itself (/) is revalidated on
//     every load. The whole first load is under 150 KB on the wire (the
//     tests measure it).
//   - The page follows /events?mode=downsample with a rate chosen for the
//     screen and the number of series (an EventSource, resumed by the
//     browser with Last-Event-ID), and draws in rounds at most every
//     250 ms (up to 750 ms while the device shows long tasks), each round
//     spread over animation frames of at most two tiles in view that
//     changed, the chart in a frame of its own: a slow phone shows the
//     latest values rather than falling behind, and keeps its frame rate.
package dashboard

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"html"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
)

//go:embed web
var webFS embed.FS

// CSP is the Content-Security-Policy of every dashboard response: only
// the device itself, no inline code, no framing.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// AssetPrefix is the path under which assets are served; it needs no auth
// (the login page uses them, and they hold no data).
const AssetPrefix = "/assets/"

// asset is one file in the two representations it is served in.
type asset struct {
	name     string // path under web/, e.g. "app.js"
	url      string // versioned URL
	ctype    string
	raw, gz  []byte
	etag     string // strong, of raw; the gzip one has a suffix
	etagGzip string
}

// Dashboard serves the dashboard. Build it with New; it is immutable and
// safe for concurrent use.
type Dashboard struct {
	assets map[string]*asset // by versioned URL
	index  *asset            // the app page at /
	login  string            // the login page, with {{MESSAGE}} to fill
}

// New prepares the embedded assets: hashes, versioned names, gzip.
func New() (*Dashboard, error) {
	d := &Dashboard{assets: map[string]*asset{}}
	urls := map[string]string{} // name -> versioned URL
	err := fs.WalkDir(webFS, "web", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		name := strings.TrimPrefix(p, "web/")
		if strings.HasSuffix(name, ".html") {
			return nil
		}
		b, err := webFS.ReadFile(p)
		if err != nil {
			return err
		}
		a := newAsset(name, b)
		a.url = AssetPrefix + a.etag[1:13] + "/" + name
		d.assets[a.url] = a
		urls[name] = a.url
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Pages name assets as {{asset "name"}}; every name must exist.
	fill := func(name string) (string, error) {
		b, err := webFS.ReadFile("web/" + name)
		if err != nil {
			return "", err
		}
		s := string(b)
		for n, u := range urls {
			s = strings.ReplaceAll(s, `{{asset "`+n+`"}}`, u)
		}
		if i := strings.Index(s, "{{asset"); i >= 0 {
			return "", &fs.PathError{Op: "dashboard: unknown asset", Path: s[i:min(len(s), i+40)], Err: fs.ErrNotExist}
		}
		return s, nil
	}
	idx, err := fill("index.html")
	if err != nil {
		return nil, err
	}
	d.index = newAsset("index.html", []byte(idx))
	if d.login, err = fill("login.html"); err != nil {
		return nil, err
	}
	return d, nil
}

func newAsset(name string, b []byte) *asset {
	sum := sha256.Sum256(b)
	a := &asset{name: name, raw: b, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
	a.etagGzip = a.etag[:len(a.etag)-1] + `-gz"`
	a.ctype = mime.TypeByExtension(path.Ext(name))
	switch path.Ext(name) { // not left to the system's mime tables
	case ".js":
		a.ctype = "text/javascript; charset=utf-8"
	case ".css":
		a.ctype = "text/css; charset=utf-8"
	case ".html":
		a.ctype = "text/html; charset=utf-8"
	case ".svg":
		a.ctype = "image/svg+xml"
	}
	if a.ctype == "" {
		a.ctype = "application/octet-stream"
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(b)
	zw.Close()
	if buf.Len() < len(b) {
		a.gz = buf.Bytes()
	}
	return a
}

// SecurityHeaders sets the headers every dashboard page carries.
func SecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
}

// ServeHTTP serves GET / (the app page; mount it behind auth) and the
// assets under AssetPrefix; anything else is 404.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	SecurityHeaders(w.Header())
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path == "/" {
		w.Header().Set("Cache-Control", "no-cache")
		d.serve(w, r, d.index)
		return
	}
	a := d.assets[r.URL.Path]
	if a == nil {
		// An old page asking for a previous version's asset, or a typo.
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, "404 not found (the dashboard was updated: reload the page)", http.StatusNotFound)
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	d.serve(w, r, a)
}

func (d *Dashboard) serve(w http.ResponseWriter, r *http.Request, a *asset) {
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	body, etag := a.raw, a.etag
	if a.gz != nil {
		h.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r.Header.Get("Accept-Encoding")) {
			body, etag = a.gz, a.etagGzip
			h.Set("Content-Encoding", "gzip")
		}
	}
	h.Set("ETag", etag)
	if etagMatch(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if r.Method == http.MethodHead {
		return
	}
	w.Write(body)
}

// Login writes the login form with status (401 for a browser without a
// session) and, when message is not empty, that message as an alert.
func (d *Dashboard) Login(w http.ResponseWriter, status int, message string) {
	h := w.Header()
	SecurityHeaders(h)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	msg := ""
	if message != "" {
		msg = `<p class="error" role="alert" id="login-error">` + html.EscapeString(message) + `</p>`
	}
	page := strings.Replace(d.login, "{{MESSAGE}}", msg, 1)
	invalid := "false"
	if message != "" {
		invalid = "true"
	}
	page = strings.Replace(page, "{{INVALID}}", invalid, 1)
	w.WriteHeader(status)
	w.Write([]byte(page))
}

// Assets lists the versioned asset URLs (for tests and tools).
func (d *Dashboard) Assets() []string {
	var out []string
	for u := range d.assets {
		out = append(out, u)
	}
	return out
}

func acceptsGzip(ae string) bool {
	for _, part := range strings.Split(ae, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(name), "gzip") {
			continue
		}
		params = strings.ReplaceAll(params, " ", "")
		return params != "q=0" && params != "q=0.0" && params != "q=0.00" && params != "q=0.000"
	}
	return false
}

// etagMatch implements If-None-Match's weak comparison over a list.
func etagMatch(inm, etag string) bool {
	if inm == "" {
		return false
	}
	for _, t := range strings.Split(inm, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}

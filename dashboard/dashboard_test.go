package dashboard

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestNewResolvesEveryAsset(t *testing.T) {
	d, err := New()
	if err != nil {
		t.Fatal(err)
	}
	page := string(d.index.raw)
	if strings.Contains(page, "{{") || strings.Contains(d.login, "{{asset") {
		t.Fatalf("unresolved placeholders:\n%s", page)
	}
	for _, u := range d.Assets() {
		if !strings.HasPrefix(u, AssetPrefix) {
			t.Errorf("asset %s outside %s", u, AssetPrefix)
		}
	}
	for _, want := range []string{"app.js", "app.css", "uPlot.iife.min.js", "uPlot.min.css"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page does not load %s", want)
		}
	}
	// No inline script or style: the CSP would block them.
	for _, bad := range []string{"<script>", "<style", " style=", "onclick", "onload"} {
		if strings.Contains(page, bad) || strings.Contains(d.login, bad) {
			t.Errorf("inline code %q in a page", bad)
		}
	}
}

func TestServe(t *testing.T) {
	d, err := New()
	if err != nil {
		t.Fatal(err)
	}
	var js string
	for _, u := range d.Assets() {
		if strings.HasSuffix(u, "/app.js") {
			js = u
		}
	}
	for _, c := range []struct {
		name, method, path, ae, inm string
		status                      int
		encoding                    string
	}{
		{"page gzip", "GET", "/", "gzip, br", "", 200, "gzip"},
		{"page identity", "GET", "/", "", "", 200, ""},
		{"gzip refused", "GET", "/", "gzip;q=0", "", 200, ""},
		{"asset", "GET", js, "gzip", "", 200, "gzip"},
		{"asset head", "HEAD", js, "gzip", "", 200, "gzip"},
		{"revalidated", "GET", js, "gzip", "", 304, "gzip"},
		{"other representation's etag", "GET", js, "", "gz", 200, ""},
		{"unknown", "GET", "/assets/0123456789ab/app.js", "", "", 404, ""},
		{"post", "POST", "/", "", "", 405, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest(c.method, c.path, nil)
			req.Header.Set("Accept-Encoding", c.ae)
			if c.status == 304 || c.inm == "gz" {
				g := httptest.NewRequest("GET", c.path, nil)
				g.Header.Set("Accept-Encoding", "gzip")
				rg := httptest.NewRecorder()
				d.ServeHTTP(rg, g)
				req.Header.Set("If-None-Match", rg.Header().Get("ETag"))
			}
			rec := httptest.NewRecorder()
			d.ServeHTTP(rec, req)
			h := rec.Header()
			if rec.Code != c.status || h.Get("Content-Encoding") != c.encoding {
				t.Fatalf("%d %q, want %d %q", rec.Code, h.Get("Content-Encoding"), c.status, c.encoding)
			}
			if h.Get("Content-Security-Policy") != CSP || h.Get("X-Content-Type-Options") != "nosniff" {
				t.Fatalf("security headers: %v", h)
			}
			if c.status == 200 && c.method == "HEAD" && rec.Body.Len() != 0 {
				t.Fatalf("HEAD with a body")
			}
		})
	}
}

func TestLogin(t *testing.T) {
	d, _ := New()
	rec := httptest.NewRecorder()
	d.Login(rec, http.StatusUnauthorized, `wrong <token> & "more"`)
	body := rec.Body.String()
	if rec.Code != 401 || !strings.Contains(body, `role="alert"`) || !strings.Contains(body, "wrong &lt;token&gt; &amp; &#34;more&#34;") ||
		!strings.Contains(body, `aria-invalid="true"`) || rec.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("%d %v\n%s", rec.Code, rec.Header(), body)
	}
	rec = httptest.NewRecorder()
	d.Login(rec, http.StatusUnauthorized, "")
	if body := rec.Body.String(); strings.Contains(body, "role=\"alert\"") || !strings.Contains(body, `aria-invalid="false"`) {
		t.Fatalf("no message:\n%s", body)
	}
}

package server

import (
	stdtls "crypto/tls"
	"crypto/x509"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/quic-go/quic-go/http3"

	"github.com/eddy-iot/eddy/tls/tlstest"
)

var protected = []string{"/", "/api/series", "/api/history", "/events", "/metrics", "/no-such-page"}

func TestAuthRequiredOnEveryProtectedEndpoint(t *testing.T) {
	// Many wrong tokens from one address: throttling is TestAuthFailuresThrottled's.
	e := startServer(t, func(o *Options) { o.AuthFailures = 1000 })
	e.srv.Handle("GET /metrics", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("m 1\n")) }))
	for _, p := range protos {
		t.Run(p.name, func(t *testing.T) {
			c := p.client(t, e)
			for _, path := range protected {
				for _, tc := range []struct {
					name string
					url  string
					hdr  []string
				}{
					{"none", e.url(path), nil},
					{"wrong bearer", e.url(path), []string{"Authorization", "Bearer nope"}},
					{"wrong query", e.url(path + "?access_token=nope"), nil},
					{"token without scheme", e.url(path), []string{"Authorization", testToken}},
					{"wrong cookie", e.url(path), []string{"Cookie", SessionCookie + "=abc.def"}},
				} {
					resp, _ := get(t, c, tc.url, tc.hdr...)
					if resp.StatusCode != http.StatusUnauthorized {
						t.Errorf("%s %s: status %d, want 401", path, tc.name, resp.StatusCode)
					}
					if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
						t.Errorf("%s %s: WWW-Authenticate %q", path, tc.name, resp.Header.Get("WWW-Authenticate"))
					}
					if resp.ProtoMajor != p.major {
						t.Fatalf("served over HTTP/%d, want %d", resp.ProtoMajor, p.major)
					}
				}
				want := http.StatusOK
				if path == "/no-such-page" {
					want = http.StatusNotFound
				}
				for _, creds := range []struct {
					name string
					url  string
					hdr  []string
				}{
					{"bearer", e.url(path), []string{"Authorization", "Bearer " + testToken}},
					{"bearer lower-case scheme", e.url(path), []string{"Authorization", "bearer " + testToken}},
					{"access_token", e.url(path + "?access_token=" + url.QueryEscape(testToken)), nil},
				} {
					if resp, body := get(t, c, creds.url, creds.hdr...); resp.StatusCode != want {
						t.Errorf("%s with %s: status %d, want %d: %s", path, creds.name, resp.StatusCode, want, body)
					}
				}
			}
			if resp, _ := get(t, c, e.url("/healthz")); resp.StatusCode != http.StatusOK {
				t.Errorf("/healthz without auth: %d, want 200", resp.StatusCode)
			}
		})
	}
}

func TestBrowserGetsLoginFormWith401(t *testing.T) {
	e := startServer(t, nil)
	resp, body := get(t, h2Client(t, e), e.url("/"))
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `action="/login"`) {
		t.Fatalf("GET / without auth: %d %q", resp.StatusCode, body)
	}
	_, body = get(t, h2Client(t, e), e.url("/"), "Authorization", "Bearer "+testToken)
	if !strings.Contains(body, "eddy") || !strings.Contains(body, `id="tiles"`) {
		t.Fatalf("GET / with auth: %q", body)
	}
}

func TestSessionCookie(t *testing.T) {
	e := startServer(t, nil)
	for _, p := range protos {
		t.Run(p.name, func(t *testing.T) {
			c := p.client(t, e)
			login := func(body, ct string) *http.Response {
				req, _ := http.NewRequest(http.MethodPost, e.url("/login"), strings.NewReader(body))
				req.Header.Set("Content-Type", ct)
				resp, _ := do(t, c, req)
				return resp
			}
			if resp := login(`{"token":"wrong"}`, "application/json"); resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
				t.Fatalf("login with a wrong token: %d, cookies %v", resp.StatusCode, resp.Cookies())
			}
			resp := login(`{"token":"`+testToken+`"}`, "application/json")
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("JSON login: %d", resp.StatusCode)
			}
			ck := sessionCookie(t, resp)
			if !ck.HttpOnly || !ck.Secure || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" {
				t.Fatalf("cookie attributes: %+v", ck)
			}
			if strings.Contains(ck.Value, testToken) {
				t.Fatal("cookie holds the raw token")
			}
			cookie := SessionCookie + "=" + ck.Value
			if r, _ := get(t, c, e.url("/api/series"), "Cookie", cookie); r.StatusCode != http.StatusOK {
				t.Fatalf("with session cookie: %d", r.StatusCode)
			}
			tampered := cookie[:len(cookie)-2] + flip(cookie[len(cookie)-2:])
			if r, _ := get(t, c, e.url("/api/series"), "Cookie", tampered); r.StatusCode != http.StatusUnauthorized {
				t.Fatalf("with a tampered cookie: %d", r.StatusCode)
			}

			form := login("token="+url.QueryEscape(testToken), "application/x-www-form-urlencoded")
			if form.StatusCode != http.StatusSeeOther || form.Header.Get("Location") != "/" {
				t.Fatalf("form login: %d to %q", form.StatusCode, form.Header.Get("Location"))
			}
			sessionCookie(t, form)

			req, _ := http.NewRequest(http.MethodPost, e.url("/logout"), nil)
			req.Header.Set("Cookie", cookie)
			out, _ := do(t, c, req)
			if out.StatusCode != http.StatusNoContent || sessionCookie(t, out).MaxAge >= 0 {
				t.Fatalf("logout: %d %v", out.StatusCode, out.Cookies())
			}

			// Removing the token ends the sessions it made.
			e.srv.SetTokens([]string{"another-token"})
			defer e.srv.SetTokens([]string{testToken})
			if r, _ := get(t, c, e.url("/api/series"), "Cookie", cookie); r.StatusCode != http.StatusUnauthorized {
				t.Fatalf("session of a removed token: %d", r.StatusCode)
			}
			if r, _ := get(t, c, e.url("/api/series"), "Authorization", "Bearer another-token"); r.StatusCode != http.StatusOK {
				t.Fatalf("new token after SetTokens: %d", r.StatusCode)
			}
		})
	}
}

func sessionCookie(t *testing.T, resp *http.Response) *http.Cookie {
	t.Helper()
	for _, c := range resp.Cookies() {
		if c.Name == SessionCookie {
			return c
		}
	}
	t.Fatalf("no %s cookie in %v", SessionCookie, resp.Header["Set-Cookie"])
	return nil
}

func flip(s string) string {
	if s[0] == 'A' {
		return "B" + s[1:]
	}
	return "A" + s[1:]
}

func TestClientCertificateIsAuth(t *testing.T) {
	ca, err := tlstest.NewCA("collectors")
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "clients.pem")
	if err := ca.WriteCertFile(caFile); err != nil {
		t.Fatal(err)
	}
	rogue, _ := tlstest.NewCA("rogue")
	good, _ := ca.ClientCert("collector-1")
	bad, _ := rogue.ClientCert("intruder")
	e := startServer(t, func(o *Options) {
		o.TLS.ClientAuth = stdtls.VerifyClientCertIfGiven
		o.TLS.ClientCAs = mustPool(t, caFile)
		o.Tokens = nil // certificates only
	})
	for _, p := range protos {
		t.Run(p.name, func(t *testing.T) {
			if r, body := get(t, p.client(t, e, good), e.url("/api/series")); r.StatusCode != http.StatusOK {
				t.Fatalf("with a client certificate: %d %s", r.StatusCode, body)
			}
			if r, _ := get(t, p.client(t, e), e.url("/api/series")); r.StatusCode != http.StatusUnauthorized {
				t.Fatalf("without a certificate: %d, want 401", r.StatusCode)
			}
			if r, _ := get(t, p.client(t, e), e.url("/api/series"), "Authorization", "Bearer "); r.StatusCode != http.StatusUnauthorized {
				t.Fatalf("empty bearer with no tokens configured: %d, want 401", r.StatusCode)
			}
			// The client only offers a certificate the server's CA list names.
			c := p.client(t, e)
			forceCert(c, bad)
			req, _ := http.NewRequest(http.MethodGet, e.url("/api/series"), nil)
			if resp, err := c.Do(req); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					t.Fatal("a certificate from another CA was accepted")
				}
			}
		})
	}
}

// forceCert makes c present cert whatever CAs the server asks for.
func forceCert(c *http.Client, cert stdtls.Certificate) {
	get := func(*stdtls.CertificateRequestInfo) (*stdtls.Certificate, error) { return &cert, nil }
	switch tr := c.Transport.(type) {
	case *http.Transport:
		tr.TLSClientConfig.GetClientCertificate = get
	case *http3.Transport:
		tr.TLSClientConfig.GetClientCertificate = get
	}
}

func mustPool(t *testing.T, file string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		t.Fatalf("%s: no certificate", file)
	}
	return p
}

func TestTokensNeverLogged(t *testing.T) {
	e := startServer(t, nil)
	c := h2Client(t, e)
	get(t, c, e.url("/api/series?access_token="+testToken))
	get(t, c, e.url("/api/series?access_token=wrong-secret-guess"))
	get(t, c, e.url("/api/series"), "Authorization", "Bearer "+testToken)
	req, _ := http.NewRequest(http.MethodPost, e.url("/login"), strings.NewReader("token=wrong-login-guess"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	do(t, c, req)
	logs := e.logs.String()
	if !strings.Contains(logs, "/api/series") {
		t.Fatalf("requests not logged at all:\n%s", logs)
	}
	for _, secret := range []string{testToken, "wrong-secret-guess", "wrong-login-guess", "access_token"} {
		if strings.Contains(logs, secret) {
			t.Errorf("log contains %q:\n%s", secret, logs)
		}
	}
}

func TestLoadOrCreateToken(t *testing.T) {
	dir := t.TempDir()
	tok, err := LoadOrCreateToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`).MatchString(tok) {
		t.Fatalf("token %q is not 32 bytes of base64url", tok)
	}
	fi, err := os.Stat(filepath.Join(dir, TokenFileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v, mode %v", err, fi.Mode())
	}
	again, err := LoadOrCreateToken(dir)
	if err != nil || again != tok {
		t.Fatalf("second load: %q, %v; want the same token", again, err)
	}
	other, _ := LoadOrCreateToken(t.TempDir())
	if other == tok {
		t.Fatal("two data directories got the same token")
	}
	os.WriteFile(filepath.Join(dir, TokenFileName), []byte("\n"), 0o600)
	if _, err := LoadOrCreateToken(dir); err == nil || !strings.Contains(err.Error(), TokenFileName) {
		t.Fatalf("empty token file: %v", err)
	}
}

package server

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestAuthFailuresThrottled: after AuthFailures wrong tokens from one
// address, its token checks answer 429 with Retry-After, on every
// protocol and at POST /login, even for the right token; a session made
// before still works; requests without any credential are not counted.
func TestAuthFailuresThrottled(t *testing.T) {
	for _, p := range protos {
		t.Run(p.name, func(t *testing.T) {
			e := startServer(t, func(o *Options) { o.AuthFailures = 3; o.AuthFailureWindow = time.Hour })
			c := p.client(t, e)
			// A dashboard logged in before the guessing starts.
			resp, _ := postForm(t, c, e.url("/login"), "token="+url.QueryEscape(testToken))
			var session *http.Cookie
			for _, ck := range resp.Cookies() {
				if ck.Name == SessionCookie {
					session = ck
				}
			}
			if session == nil {
				t.Fatalf("login: %d, no session cookie", resp.StatusCode)
			}
			for range 20 { // a browser opening the page: no credential, not a guess
				if resp, _ := get(t, c, e.url("/api/series")); resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("no credentials: %d", resp.StatusCode)
				}
			}
			get(t, c, e.url("/api/series"), "Authorization", "Bearer wrong-1")
			get(t, c, e.url("/api/series?access_token=wrong-2"))
			if resp, _ := postForm(t, c, e.url("/login"), "token=wrong-3"); resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("third wrong token: %d, want 401", resp.StatusCode)
			}
			for _, try := range []func() *http.Response{
				func() *http.Response {
					r, _ := get(t, c, e.url("/api/series"), "Authorization", "Bearer "+testToken)
					return r
				},
				func() *http.Response { r, _ := get(t, c, e.url("/events?access_token="+testToken)); return r },
				func() *http.Response {
					r, _ := postForm(t, c, e.url("/login"), "token="+url.QueryEscape(testToken))
					return r
				},
			} {
				resp := try()
				ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
				if resp.StatusCode != http.StatusTooManyRequests || err != nil || ra < 1 || ra > 3600 {
					t.Errorf("blocked address: %d Retry-After %q, want 429 and 1..3600", resp.StatusCode, resp.Header.Get("Retry-After"))
				}
			}
			if resp, _ := get(t, c, e.url("/api/series"), "Cookie", session.Name+"="+session.Value); resp.StatusCode != http.StatusOK {
				t.Errorf("session made before the block: %d, want 200", resp.StatusCode)
			}
			if resp, _ := get(t, c, e.url("/healthz")); resp.StatusCode != http.StatusOK {
				t.Errorf("/healthz from a blocked address: %d", resp.StatusCode)
			}
			got := e.srv.DefenseStats().Refused
			if got[RefusedNoCredentials] != 20 || got[RefusedBadToken] != 2 || got[RefusedLoginFailed] != 1 || got[RefusedAuthThrottled] != 3 {
				t.Errorf("refusals %v", got)
			}
		})
	}
}

func postForm(t *testing.T, c *http.Client, u, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return do(t, c, req)
}

// TestRefusalsLoggedAtBoundedRate: a flood of refused requests writes one
// log line per reason (the rest are counted, and summarized a period
// later, see package ratelog), and /metrics counts every one.
func TestRefusalsLoggedAtBoundedRate(t *testing.T) {
	e := startServer(t, nil)
	c := h2Client(t, e)
	for i := range 200 {
		get(t, c, e.url(fmt.Sprintf("/api/history?n=%d", i)))
		get(t, c, e.url("/events?access_token=wrong-token-"+strconv.Itoa(i%5)))
	}
	// Ten wrong tokens block the address: from then on its requests are
	// refused as auth_throttled (429), a third reason.
	got := e.srv.DefenseStats().Refused
	total, reasons := uint64(0), 0
	for _, n := range got {
		total += n
		if n > 0 {
			reasons++
		}
	}
	if total != 400 || got[RefusedBadToken] != DefaultAuthFailures || got[RefusedAuthThrottled] == 0 {
		t.Errorf("refusals %v, want 400 in all, %d of them bad_token", got, DefaultAuthFailures)
	}
	logs := e.logs.String()
	if n := strings.Count(logs, "server: refused"); n != reasons {
		t.Errorf("%d refusal lines for 400 refusals of %d reasons, want one per reason:\n%s", n, reasons, logs)
	}
	if strings.Contains(logs, "wrong-token") {
		t.Error("a token reached the log")
	}
}

// TestAuthThrottleBounded: the per-address table stays within
// MaxThrottledAddrs under a spray of addresses, an IPv6 host's /64 is one
// address, and a block ends after the window.
func TestAuthThrottleBounded(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	th := newAuthThrottle(3, time.Minute)
	th.now = func() time.Time { return now }
	for i := range 3 * MaxThrottledAddrs {
		th.fail(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
		now = now.Add(time.Millisecond)
	}
	if n := len(th.addrs); n > MaxThrottledAddrs {
		t.Fatalf("%d addresses tracked, want at most %d", n, MaxThrottledAddrs)
	}
	for i := range 3 { // three hosts of one /64
		th.fail(netip.MustParseAddr(fmt.Sprintf("2001:db8:1:2::%x", i+1)))
	}
	if th.blocked(netip.MustParseAddr("2001:db8:1:2:ffff::1")) == 0 {
		t.Error("the /64 is not blocked after 3 failures from it")
	}
	if th.blocked(netip.MustParseAddr("2001:db8:1:3::1")) != 0 {
		t.Error("another /64 is blocked")
	}
	now = now.Add(time.Minute)
	if th.blocked(netip.MustParseAddr("2001:db8:1:2::1")) != 0 {
		t.Error("still blocked after the window")
	}
	// Failures spread wider than the window never block.
	a := netip.MustParseAddr("192.0.2.1")
	for range 10 {
		th.fail(a)
		th.fail(a)
		now = now.Add(time.Minute)
	}
	if th.blocked(a) != 0 {
		t.Error("2 failures a minute blocked an address allowed 3")
	}
}

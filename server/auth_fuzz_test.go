package server

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzSessionCookie: no cookie value but one the server signed is a
// session, and parsing never panics.
func FuzzSessionCookie(f *testing.F) {
	a := newAuthenticator([]string{"tok"}, []byte("key"), time.Hour, false)
	// Deterministic, so that every fuzz worker process agrees on it.
	good := a.sessionValue(0, time.Now().Add(24*time.Hour).Truncate(24*time.Hour), [16]byte{1, 2, 3})
	for _, s := range []string{good, good[:len(good)-1], "", ".", "a.b", good + "x", strings.Replace(good, ".", "..", 1)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if a.validSession(v) && v != good {
			t.Fatalf("accepted a session the server never made: %q", v)
		}
	})
}

// FuzzAuthHeaders: only the configured token authenticates, whatever the
// Authorization header and query say.
func FuzzAuthHeaders(f *testing.F) {
	a := newAuthenticator([]string{"tok"}, nil, time.Hour, true)
	f.Add("Bearer tok", "tok")
	f.Add("bearer  tok ", "")
	f.Add("Basic tok", "x")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, authz, query string) {
		r := &http.Request{Header: http.Header{}, URL: &url.URL{RawQuery: url.Values{"access_token": {query}}.Encode()}}
		r.Header.Set("Authorization", authz)
		m := a.method(r)
		tok, isBearer := bearer(authz)
		want := (isBearer && tok == "tok") || query == "tok"
		if (m != "") != want {
			t.Fatalf("Authorization %q, access_token %q: method %q, want authenticated=%v", authz, query, m, want)
		}
	})
}

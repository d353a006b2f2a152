package server

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/eddy-iot/eddy/dashboard"
)

// SessionCookie is the name of the dashboard's session cookie.
const SessionCookie = "eddy_session"

// TokenFileName is the generated token's file under the data directory.
const TokenFileName = "token"

// maxLoginBody bounds a POST /login body.
const maxLoginBody = 4 << 10

// LoadOrCreateToken returns the token in <dir>/token, generating it (32
// random bytes, base64url, file mode 0600) the first time. Use it when no
// token and no client CA are configured.
func LoadOrCreateToken(dir string) (string, error) {
	path := filepath.Join(dir, TokenFileName)
	b, err := os.ReadFile(path)
	if err == nil {
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("server: token file %s is empty (delete it to generate a new one)", path)
		}
		return tok, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("server: read token %s: %w", path, err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", fmt.Errorf("server: create %s: %w", dir, err)
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	tok := base64.RawURLEncoding.EncodeToString(raw)
	// O_EXCL: if another process raced us, its token stands and we read it.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return LoadOrCreateToken(dir)
	}
	if err != nil {
		return "", fmt.Errorf("server: create token %s: %w", path, err)
	}
	_, err = f.WriteString(tok + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return "", fmt.Errorf("server: write token %s: %w", path, err)
	}
	return tok, nil
}

// tokenSet is an immutable set of accepted tokens, swapped as a whole.
type tokenSet struct {
	hashes  [][sha256.Size]byte // SHA-256 of each token: equal lengths make comparison constant-time
	sessKey [][]byte            // per-token session signing keys
}

// authenticator decides whether a request carries valid credentials.
type authenticator struct {
	key      []byte // root session key
	ttl      time.Duration
	certAuth bool // verified client certificates count
	tokens   atomic.Pointer[tokenSet]
	now      func() time.Time
}

func newAuthenticator(tokens []string, key []byte, ttl time.Duration, certAuth bool) *authenticator {
	if len(key) == 0 {
		key = make([]byte, 32)
		rand.Read(key)
	}
	a := &authenticator{key: key, ttl: ttl, certAuth: certAuth, now: time.Now}
	a.setTokens(tokens)
	return a
}

func (a *authenticator) setTokens(tokens []string) {
	ts := &tokenSet{}
	for _, t := range tokens {
		if t == "" {
			continue // an empty token must never match a missing credential
		}
		ts.hashes = append(ts.hashes, sha256.Sum256([]byte(t)))
		// Binding each session to its token's key ends the sessions of a
		// token removed from the configuration.
		m := hmac.New(sha256.New, a.key)
		m.Write([]byte("eddy session v1\x00"))
		m.Write([]byte(t))
		ts.sessKey = append(ts.sessKey, m.Sum(nil))
	}
	a.tokens.Store(ts)
}

// tokenIndex returns which token t is, or -1. It compares against every
// token, so its time does not depend on which one (if any) matched.
func (a *authenticator) tokenIndex(t string) int {
	if t == "" {
		return -1
	}
	h := sha256.Sum256([]byte(t))
	ts := a.tokens.Load()
	idx := -1
	for i := range ts.hashes {
		if subtle.ConstantTimeCompare(h[:], ts.hashes[i][:]) == 1 {
			idx = i
		}
	}
	return idx
}

// method names how r authenticated, or "" when it did not.
func (a *authenticator) method(r *http.Request) string {
	if m := a.methodWithoutTokens(r); m != "" {
		return m
	}
	if t, ok := bearer(r.Header.Get("Authorization")); ok && a.tokenIndex(t) >= 0 {
		return "bearer"
	}
	if t := r.URL.Query().Get("access_token"); t != "" && a.tokenIndex(t) >= 0 {
		return "access_token"
	}
	return ""
}

// methodWithoutTokens is method without checking tokens, which cannot be
// guessed by a throttled address: a client certificate or a session.
func (a *authenticator) methodWithoutTokens(r *http.Request) string {
	if a.certAuth && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		return "client-certificate"
	}
	if c, err := r.Cookie(SessionCookie); err == nil && a.validSession(c.Value) {
		return "session"
	}
	return ""
}

// whyNot names what an unauthenticated request got wrong (a Refused*
// reason): a token that is wrong, a session that is not valid, or no
// credentials at all.
func whyNot(r *http.Request) Refusal {
	if _, ok := bearer(r.Header.Get("Authorization")); ok || r.URL.Query().Has("access_token") {
		return RefusedBadToken
	}
	if _, err := r.Cookie(SessionCookie); err == nil {
		return RefusedBadSession
	}
	return RefusedNoCredentials
}

func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

// Session values are base64url(expiry(8) nonce(16)) "." base64url(mac).
const sessionBody = 8 + 16

func (a *authenticator) newSession(tokenIdx int) (value string, expires time.Time) {
	expires = a.now().Add(a.ttl)
	var nonce [16]byte
	rand.Read(nonce[:])
	return a.sessionValue(tokenIdx, expires, nonce), expires
}

func (a *authenticator) sessionValue(tokenIdx int, expires time.Time, nonce [16]byte) string {
	body := make([]byte, sessionBody)
	binary.BigEndian.PutUint64(body, uint64(expires.Unix()))
	copy(body[8:], nonce[:])
	mac := sign(a.tokens.Load().sessKey[tokenIdx], body)
	return base64.RawURLEncoding.EncodeToString(body) + "." + base64.RawURLEncoding.EncodeToString(mac)
}

func (a *authenticator) validSession(v string) bool {
	b64body, b64mac, ok := strings.Cut(v, ".")
	if !ok {
		return false
	}
	body, err1 := base64.RawURLEncoding.Strict().DecodeString(b64body)
	mac, err2 := base64.RawURLEncoding.Strict().DecodeString(b64mac)
	if err1 != nil || err2 != nil || len(body) != sessionBody {
		return false
	}
	valid := false
	for _, k := range a.tokens.Load().sessKey {
		valid = hmac.Equal(mac, sign(k, body)) || valid
	}
	return valid && a.now().Unix() < int64(binary.BigEndian.Uint64(body))
}

func sign(key, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return m.Sum(nil)
}

// loginToken reads the token from a JSON ({"token":...}) or form body.
func loginToken(w http.ResponseWriter, r *http.Request) (tok string, isJSON bool, err error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginBody)
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "application/json" {
		var body struct {
			Token string `json:"token"`
		}
		dec := json.NewDecoder(r.Body)
		if err := dec.Decode(&body); err != nil {
			return "", true, fmt.Errorf("body: %w", err)
		}
		return body.Token, true, nil
	}
	if err := r.ParseForm(); err != nil {
		return "", false, fmt.Errorf("body: %w", err)
	}
	return r.PostForm.Get("token"), false, nil
}

// handleLogin checks a token and sets the session cookie: 204 for JSON,
// a redirect to / for a form.
func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	addr := remoteHost(r)
	if wait := s.throttle.blocked(addr); wait > 0 {
		s.tooManyFailures(w, r, wait)
		return
	}
	tok, isJSON, err := loginToken(w, r)
	if err != nil {
		http.Error(w, "login: "+err.Error(), http.StatusBadRequest)
		return
	}
	idx := s.auth.tokenIndex(tok)
	if idx < 0 {
		s.throttle.fail(addr)
		s.refuse(r, RefusedLoginFailed)
		if !isJSON { // a browser: the form again, saying what went wrong
			w.Header().Set("WWW-Authenticate", `Bearer realm="eddy"`)
			s.dash.Login(w, http.StatusUnauthorized, "That token is not valid. Run eddy token on the device to see the right one, and try again.")
			return
		}
		s.unauthorized(w, r)
		return
	}
	s.throttle.forget(addr)
	val, exp := s.auth.newSession(idx)
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: val, Path: "/", Expires: exp,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	})
	s.log.Info("server: login", "remote", r.RemoteAddr)
	finishForm(w, r, isJSON)
}

// handleLogout clears the session cookie.
func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	})
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	finishForm(w, r, ct == "application/json" || r.ContentLength == 0)
}

func finishForm(w http.ResponseWriter, r *http.Request, isJSON bool) {
	if isJSON {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// isOpen reports whether path needs no auth.
func isOpen(path string) bool {
	switch path {
	case "/healthz", "/login", "/logout":
		return true
	}
	// The dashboard's scripts and styles hold no data; the login form uses them.
	return strings.HasPrefix(path, dashboard.AssetPrefix)
}

// requireAuth answers 401 to requests without valid credentials, and 429
// to an address that sent too many wrong tokens: while it is blocked its
// tokens are not even checked (its sessions and client certificates
// still work, so one guesser behind a shared address does not lock out
// the dashboards already logged in there).
func (s *Server) requireAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isOpen(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		addr := remoteHost(r)
		if wait := s.throttle.blocked(addr); wait > 0 {
			if s.auth.methodWithoutTokens(r) != "" {
				next.ServeHTTP(w, r)
				return
			}
			s.tooManyFailures(w, r, wait)
			return
		}
		if s.auth.method(r) != "" {
			next.ServeHTTP(w, r)
			return
		}
		reason := whyNot(r)
		if reason == RefusedBadToken {
			s.throttle.fail(addr)
		}
		s.refuse(r, reason)
		s.unauthorized(w, r)
	})
}

func (s *Server) unauthorized(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="eddy"`)
	if r.Method == http.MethodGet && r.URL.Path == "/" {
		// A browser gets the login form with its 401.
		s.dash.Login(w, http.StatusUnauthorized, "")
		return
	}
	http.Error(w, "401 unauthorized: send Authorization: Bearer <token>, ?access_token=, a session cookie or a client certificate", http.StatusUnauthorized)
}

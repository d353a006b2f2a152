package server

import (
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Auth-failure throttling defaults (Options.AuthFailures,
// Options.AuthFailureWindow) and the bound of its per-address table.
const (
	DefaultAuthFailures      = 10
	DefaultAuthFailureWindow = time.Minute
	MaxThrottledAddrs        = 4096
)

// tooManyFailures answers 429 with Retry-After to an address that
// presented too many wrong tokens.
func (s *Server) tooManyFailures(w http.ResponseWriter, r *http.Request, wait time.Duration) {
	s.refuse(r, RefusedAuthThrottled)
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	http.Error(w, "429 too many failed logins or wrong tokens from this address: wait Retry-After seconds", http.StatusTooManyRequests)
}

// authThrottle counts wrong tokens per client address (IPv6 by /64, as
// one host usually holds a whole /64) and blocks an address that sent
// max of them within window, for window. Its table holds at most
// MaxThrottledAddrs addresses.
type authThrottle struct {
	max    int
	window time.Duration
	now    func() time.Time
	// until is the latest blockedUntil of any address (Unix ns): before
	// then no request needs the lock to learn that it is not blocked.
	until atomic.Int64

	mu        sync.Mutex // protects addrs and lastSweep
	addrs     map[netip.Prefix]*failures
	lastSweep time.Time
}

// failures is one address's record.
type failures struct {
	n            int       // failures since start
	start        time.Time // the window's start
	blockedUntil time.Time
}

func newAuthThrottle(max int, window time.Duration) *authThrottle {
	return &authThrottle{max: max, window: window, now: time.Now, addrs: map[netip.Prefix]*failures{}}
}

// throttleKey is the address itself for IPv4, its /64 for IPv6.
func throttleKey(a netip.Addr) netip.Prefix {
	bits := a.BitLen()
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// blocked returns how long addr stays blocked; 0 when it is not.
func (t *authThrottle) blocked(addr netip.Addr) time.Duration {
	if t.now().UnixNano() >= t.until.Load() {
		return 0 // no address is blocked
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.addrs[throttleKey(addr)]
	if f == nil {
		return 0
	}
	return max(f.blockedUntil.Sub(t.now()), 0)
}

// fail records a wrong token from addr.
func (t *authThrottle) fail(addr netip.Addr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	key := throttleKey(addr)
	f := t.addrs[key]
	if f == nil {
		if len(t.addrs) >= MaxThrottledAddrs {
			t.evict(now)
		}
		f = &failures{start: now}
		t.addrs[key] = f
	}
	if now.Sub(f.start) >= t.window {
		f.n, f.start = 0, now
	}
	if f.n++; f.n >= t.max {
		f.blockedUntil = now.Add(t.window)
		f.n, f.start = 0, now
		if u := f.blockedUntil.UnixNano(); u > t.until.Load() {
			t.until.Store(u) // under t.mu: no lost update
		}
	}
}

// forget clears addr's record after a successful login.
func (t *authThrottle) forget(addr netip.Addr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.addrs, throttleKey(addr))
}

// evict makes room in a full table: it drops the records whose window
// and block are over (at most one sweep a second), else one record at
// random. t.mu is held.
func (t *authThrottle) evict(now time.Time) {
	if now.Sub(t.lastSweep) >= time.Second {
		t.lastSweep = now
		for k, f := range t.addrs {
			if now.Sub(f.start) >= t.window && !now.Before(f.blockedUntil) {
				delete(t.addrs, k)
			}
		}
	}
	for k := range t.addrs {
		if len(t.addrs) < MaxThrottledAddrs {
			return
		}
		delete(t.addrs, k)
	}
}

package server

import (
	"net"
	"net/http"
	"net/netip"
	"sync"
)

// hostLimiter caps the concurrent requests of one client address across
// all its connections and protocols.
type hostLimiter struct {
	max int

	mu     sync.Mutex // protects active
	active map[netip.Addr]int
}

func newHostLimiter(max int) *hostLimiter {
	return &hostLimiter{max: max, active: make(map[netip.Addr]int)}
}

// acquire counts a request from addr; false when addr is at its cap.
func (l *hostLimiter) acquire(addr netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.active[addr] >= l.max {
		return false
	}
	l.active[addr]++
	return true
}

func (l *hostLimiter) release(addr netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.active[addr]--; l.active[addr] <= 0 {
		delete(l.active, addr) // the map holds only hosts with requests running
	}
}

// remoteHost is the client address of r; IPv4-mapped IPv6 counts as IPv4,
// so a dual-stack listener does not give one host two budgets.
func remoteHost(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap().WithZone("")
}

// limit answers 429 when the client's address has too many requests running.
func (s *Server) limit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.gate.begin()
		defer s.gate.end()
		addr := remoteHost(r)
		if !s.lim.acquire(addr) {
			s.refuse(r, RefusedHostLimit)
			w.Header().Set("Retry-After", "5")
			http.Error(w, "429 too many concurrent requests from this address", http.StatusTooManyRequests)
			return
		}
		defer s.lim.release(addr)
		next.ServeHTTP(w, r)
	})
}

// requestGate counts running requests on every protocol so that Shutdown
// can close HTTP/3 connections as soon as none is left (quic-go otherwise
// waits for each client to close its connection).
type requestGate struct {
	mu   sync.Mutex // protects n and idle
	n    int
	idle chan struct{} // closed when n drops to 0; nil when nobody waits
}

func (g *requestGate) begin() {
	g.mu.Lock()
	g.n++
	g.mu.Unlock()
}

func (g *requestGate) end() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n--; g.n == 0 && g.idle != nil {
		close(g.idle)
		g.idle = nil
	}
}

// idled returns a channel closed once no request is running.
func (g *requestGate) idled() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n == 0 {
		c := make(chan struct{})
		close(c)
		return c
	}
	if g.idle == nil {
		g.idle = make(chan struct{})
	}
	return g.idle
}

package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
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

// penaltyTime is how long an address whose connection was cut off for
// abuse (rapid reset, CONTINUATION flood, ...) may not connect again.
const penaltyTime = 10 * time.Second

// maxPenalized bounds the penalty box; beyond it expired entries are
// dropped, and then the oldest.
const maxPenalized = 4096

// connLimiter caps connections (in total and per client address) and
// handshakes in progress (in total and per address), and keeps addresses
// cut off for abuse out for penaltyTime. One limiter serves one
// transport: TCP and QUIC have their own budgets, so that a UDP flood
// never takes TCP's handshake slots.
//
// QUIC counts connections and handshakes with admit (quic-go cannot
// wait). TCP connections are counted with admitTCP and then wait, with
// waitSlots, for an open-connection slot of their address and for
// handshake slots, so that a client opening many connections at once is
// slowed, not refused: Go's net/http, for one, dials a connection per
// request when a burst of requests finds no connection open, and closes
// all but one once HTTP/2 is negotiated, so a burst of 300 requests briefly
// holds 300-450 connections, most of them about to close.
type connLimiter struct {
	maxConns, maxPerHost int
	maxHs, maxHsPerHost  int
	hsSem                chan struct{} // TCP: a token per handshake in progress

	mu         sync.Mutex // protects the fields below
	conns      int
	handshakes int                       // QUIC
	hosts      map[netip.Addr]*hostConns // hosts with a connection
	penalty    map[netip.Addr]time.Time  // until when an address is refused
}

type hostConns struct {
	conns, handshakes int           // TCP: conns counts the waiting ones too
	hsSem             chan struct{} // TCP: a token per handshake of this host
	connSem           chan struct{} // TCP: a token per open connection of this host
}

func (l *connLimiter) newHost() *hostConns {
	return &hostConns{hsSem: make(chan struct{}, l.maxHsPerHost), connSem: make(chan struct{}, l.maxPerHost)}
}

func newConnLimiter(maxConns, maxPerHost, maxHs, maxHsPerHost int) *connLimiter {
	return &connLimiter{
		maxConns: maxConns, maxPerHost: maxPerHost, maxHs: maxHs, maxHsPerHost: maxHsPerHost,
		hsSem: make(chan struct{}, maxHs),
		hosts: map[netip.Addr]*hostConns{}, penalty: map[netip.Addr]time.Time{},
	}
}

// admit counts a new connection from addr. perHost false (an unverified
// QUIC source address, which may be spoofed) counts it against the
// totals only; countHs also counts a handshake in progress (QUIC). It
// returns the reason when the connection must be refused.
func (l *connLimiter) admit(addr netip.Addr, perHost, countHs bool, now time.Time) (Refusal, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if until, ok := l.penalty[addr]; ok {
		if now.Before(until) {
			return RefusedPenalty, false
		}
		delete(l.penalty, addr)
	}
	if l.conns >= l.maxConns {
		return RefusedConnsTotal, false
	}
	if countHs && l.handshakes >= l.maxHs {
		return RefusedHandshakes, false
	}
	h := l.hosts[addr]
	if perHost && h != nil {
		if h.conns >= l.maxPerHost {
			return RefusedConnsPerHost, false
		}
		if countHs && h.handshakes >= l.maxHsPerHost {
			return RefusedHandshakesHost, false
		}
	}
	l.conns++
	if countHs {
		l.handshakes++
	}
	if perHost {
		if h == nil {
			h = l.newHost()
			l.hosts[addr] = h
		}
		h.conns++
		if countHs {
			h.handshakes++
		}
	}
	return 0, true
}

// admitTCP counts a new TCP connection from addr against the total and
// its address's budget: MaxConnsPerHost open, and half as many again
// waiting in waitSlots for one of them to close (so that one address
// never holds more than 3/4 of MaxConns at the default caps). It returns
// the reason when the connection must be refused.
func (l *connLimiter) admitTCP(addr netip.Addr, now time.Time) (*hostConns, Refusal, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if until, ok := l.penalty[addr]; ok {
		if now.Before(until) {
			return nil, RefusedPenalty, false
		}
		delete(l.penalty, addr)
	}
	if l.conns >= l.maxConns {
		return nil, RefusedConnsTotal, false
	}
	h := l.hosts[addr]
	if h == nil {
		h = l.newHost()
		l.hosts[addr] = h
	}
	if h.conns >= l.maxPerHost+l.maxPerHost/2 {
		return nil, RefusedConnsPerHost, false
	}
	l.conns++
	h.conns++
	return h, 0, true
}

// waitSlots waits until ctx ends for an open-connection slot of h (the
// host admitTCP returned), then for a handshake slot of h and one in the
// total. releaseHs returns the handshake slots; releaseConn, once the
// connection closes, its open-connection slot.
func (l *connLimiter) waitSlots(ctx context.Context, h *hostConns) (releaseHs, releaseConn func(), why Refusal, err error) {
	select {
	case h.connSem <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, RefusedConnsPerHost, ctx.Err()
	}
	releaseConn = func() { <-h.connSem }
	select {
	case h.hsSem <- struct{}{}:
	case <-ctx.Done():
		releaseConn()
		return nil, nil, RefusedHandshakesHost, ctx.Err()
	}
	select {
	case l.hsSem <- struct{}{}:
	case <-ctx.Done():
		<-h.hsSem
		releaseConn()
		return nil, nil, RefusedHandshakes, ctx.Err()
	}
	return func() { <-l.hsSem; <-h.hsSem }, releaseConn, 0, nil
}

// addHost counts an admitted connection (admitted with perHost false)
// against addr's budget; false when that is full.
func (l *connLimiter) addHost(addr netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.hosts[addr]
	if h == nil {
		h = l.newHost()
		l.hosts[addr] = h
	}
	if h.conns >= l.maxPerHost {
		if h.conns == 0 && h.handshakes == 0 {
			delete(l.hosts, addr)
		}
		return false
	}
	h.conns++
	return true
}

// handshakeDone ends the handshake counted by admit, whatever its outcome.
func (l *connLimiter) handshakeDone(addr netip.Addr, perHost bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.handshakes--
	if h := l.hosts[addr]; perHost && h != nil {
		h.handshakes--
	}
}

// closed ends the connection counted by admit.
func (l *connLimiter) closed(addr netip.Addr, perHost bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.conns--
	if h := l.hosts[addr]; perHost && h != nil {
		if h.conns--; h.conns <= 0 && h.handshakes <= 0 {
			delete(l.hosts, addr)
		}
	}
}

// penalize refuses addr's new connections for penaltyTime.
func (l *connLimiter) penalize(addr netip.Addr, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.penalty) >= maxPenalized {
		var oldest netip.Addr
		var oldestT time.Time
		for a, t := range l.penalty {
			if now.After(t) {
				delete(l.penalty, a)
			} else if oldestT.IsZero() || t.Before(oldestT) {
				oldest, oldestT = a, t
			}
		}
		if len(l.penalty) >= maxPenalized {
			delete(l.penalty, oldest)
		}
	}
	l.penalty[addr] = now.Add(penaltyTime)
}

// addrOf is the client address of a net.Addr, unmapped and without zone.
func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// Request admission limits; the defaults of Options.
const (
	DefaultMaxTopicFilters    = 64
	DefaultMaxHistoryRequests = 4
	// maxEventIDLen is the longest decimal uint64.
	maxEventIDLen = 20
)

// guard refuses requests before any work is done for them: new requests
// while memory is near the limit (503), more topic filters than
// MaxTopicFilters (400), a Last-Event-ID too long to be an event id (400,
// not echoed), and history requests beyond MaxHistoryRequests (503).
// /healthz always passes, so that a supervisor sees the server is up.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			next.ServeHTTP(w, r)
			return
		}
		if s.def.mem.isHigh() {
			s.def.refuse(RefusedMemory, "remote", r.RemoteAddr, "path", r.URL.Path)
			w.Header().Set("Retry-After", "5")
			http.Error(w, "503 busy: memory near its limit, retry later", http.StatusServiceUnavailable)
			return
		}
		if r.URL.Path == "/events" || r.URL.Path == "/api/history" {
			if n := len(r.URL.Query()["topic"]); n > s.opt.MaxTopicFilters {
				s.def.refuse(RefusedFilters, "remote", r.RemoteAddr, "filters", n)
				http.Error(w, fmt.Sprintf("400 bad request: topic: %d filters, at most %d", n, s.opt.MaxTopicFilters), http.StatusBadRequest)
				return
			}
		}
		if r.URL.Path == "/events" {
			id := r.Header.Get("Last-Event-ID")
			if id == "" {
				id = r.URL.Query().Get("lastEventID")
			}
			if len(id) > maxEventIDLen {
				s.def.refuse(RefusedBadRequest, "remote", r.RemoteAddr, "param", "Last-Event-ID")
				http.Error(w, fmt.Sprintf("400 bad request: last event id of %d characters is not a decimal event id", len(id)), http.StatusBadRequest)
				return
			}
		}
		if r.URL.Path == "/api/history" {
			select {
			case s.history <- struct{}{}:
				defer func() { <-s.history }()
			default:
				s.def.refuse(RefusedHistoryBusy, "remote", r.RemoteAddr)
				w.Header().Set("Retry-After", "1")
				http.Error(w, "503 busy: too many history requests running, retry later", http.StatusServiceUnavailable)
				return
			}
		}
		if cg, ok := r.Context().Value(connGuardKey{}).(*connGuard); ok {
			start := time.Now()
			next.ServeHTTP(w, r)
			cg.ended(r, start)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Per HTTP/3 connection: requests the client cancels within earlyCancel
// of their start may come earlyCancelBurst at once and earlyCancelRate a
// second after; beyond that the connection is closed (stream-reset abuse).
const (
	earlyCancel      = time.Second
	earlyCancelBurst = 200
	earlyCancelRate  = 20
)

type connGuardKey struct{}

// connGuard watches one HTTP/3 connection's requests for reset abuse
// (HTTP/2's are watched frame by frame, see h2Guard).
type connGuard struct {
	s     *Server
	addr  netip.Addr
	close func() // closes the connection

	mu     sync.Mutex // protects bucket and closed
	bucket tokenBucket
	cut    bool
}

// ended is told of every request when its handler returns.
func (g *connGuard) ended(r *http.Request, start time.Time) {
	now := time.Now()
	if r.Context().Err() == nil || now.Sub(start) >= earlyCancel {
		return
	}
	g.mu.Lock()
	ok := g.bucket.take(now)
	cut := !ok && !g.cut
	if cut {
		g.cut = true
	}
	g.mu.Unlock()
	if cut {
		g.s.def.refuse(RefusedH3Reset, "remote", r.RemoteAddr)
		g.s.quicLim.penalize(g.addr, now)
		g.close()
	}
}

package server

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// errQUICRefused rejects a QUIC connection attempt (quic-go answers it
// with CONNECTION_REFUSED).
var errQUICRefused = errors.New("server: quic connection refused")

type quicSlotKey struct{}

// quicSlot is one QUIC connection's place in the quicLim budget: its
// handshake slot ends when the handshake completes or fails, its
// connection slot when the connection ends.
type quicSlot struct {
	s      *Server
	addr   netip.Addr
	hsOnce sync.Once

	mu      sync.Mutex // protects perHost and done
	perHost bool       // counted against addr's budget
	done    bool       // the connection ended
}

func (q *quicSlot) counted() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.perHost
}

func (q *quicSlot) handshakeDone() {
	q.hsOnce.Do(func() { q.s.quicLim.handshakeDone(q.addr, q.counted()) })
}

// closed gives the connection's slots back.
func (q *quicSlot) closed() {
	q.handshakeDone()
	q.mu.Lock()
	q.done = true
	counted := q.perHost
	q.mu.Unlock()
	q.s.quicLim.closed(q.addr, counted)
}

// watchHandshake ends the handshake slot when c completes its handshake
// (the HTTP/3 server sees connections at 0.5-RTT, before that). A
// completed handshake proves the client's address: a connection admitted
// unverified is then counted against its address's budget, and closed if
// that is full.
func (q *quicSlot) watchHandshake(c *quic.Conn) {
	select {
	case <-c.HandshakeComplete():
	case <-c.Context().Done():
		q.handshakeDone()
		return
	}
	q.handshakeDone()
	q.mu.Lock()
	if q.perHost || q.done {
		q.mu.Unlock()
		return
	}
	ok := q.s.quicLim.addHost(q.addr)
	q.perHost = ok
	q.mu.Unlock()
	if !ok {
		q.s.def.refuse(RefusedConnsPerHost, "remote", c.RemoteAddr().String(), "proto", "quic")
		c.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeExcessiveLoad), "too many connections from this address")
	}
}

// quicAdmit is the QUIC transport's ConnContext: it admits a connection
// attempt within quicLim's caps and while memory is not near its limit.
// A source address not yet validated (it may be spoofed) is counted in
// the totals only, so a spoofer cannot use up a real host's budget.
func (s *Server) quicAdmit(ctx context.Context, info *quic.ClientInfo) (context.Context, error) {
	addr := addrOf(info.RemoteAddr)
	if s.def.mem.isHigh() {
		s.def.refuse(RefusedMemory, "remote", info.RemoteAddr.String(), "proto", "quic")
		return ctx, errQUICRefused
	}
	if why, ok := s.quicLim.admit(addr, info.AddrVerified, true, time.Now()); !ok {
		s.def.refuse(why, "remote", info.RemoteAddr.String(), "proto", "quic")
		return ctx, errQUICRefused
	}
	slot := &quicSlot{s: s, addr: addr, perHost: info.AddrVerified}
	// quic-go cancels ctx (the one it passed in) when the connection
	// closes or its handshake fails.
	context.AfterFunc(ctx, slot.closed)
	return context.WithValue(ctx, quicSlotKey{}, slot), nil
}

// quicVerifySource asks for QUIC address validation (a Retry round trip,
// which costs the server no state) once more than QUICRetryAbove
// handshakes are in progress, or memory is near its limit.
func (s *Server) quicVerifySource(a net.Addr) bool {
	s.quicLim.mu.Lock()
	busy := s.quicLim.handshakes >= s.opt.QUICRetryAbove
	s.quicLim.mu.Unlock()
	if busy || s.def.mem.isHigh() {
		s.def.refuse(RefusedQUICRetry, "remote", a.String())
		return true
	}
	return false
}

package server

import (
	"context"
	stdtls "crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/eddy-iot/eddy/backoff"
)

// portAttempts bounds the retries when port 0 picks a TCP port whose UDP
// twin is taken.
const portAttempts = 20

// bindHost is one address to bind; optional ones (::1 for "localhost")
// are skipped on a host without IPv6.
type bindHost struct {
	host     string
	optional bool
}

// bindHosts expands the listen host: "" stays the dual-stack wildcard, and
// "localhost" becomes both loopbacks, because browsers try ::1 first.
func bindHosts(host string) []bindHost {
	if host == "localhost" {
		return []bindHost{{host: "127.0.0.1"}, {host: "::1", optional: true}}
	}
	return []bindHost{{host: host}}
}

// listen binds TCP (and UDP when udp is set) on every host of addr, all on
// one port.
func listen(addr string, udp bool) ([]net.Listener, []net.PacketConn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("server: listen address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, nil, fmt.Errorf("server: listen address %q: bad port", addr)
	}
	hosts := bindHosts(host)
	for attempt := 0; ; attempt++ {
		tcp, pcs, err := bindAll(hosts, port, udp)
		if err == nil {
			return tcp, pcs, nil
		}
		// With port 0 the kernel chose a TCP port whose UDP twin (or other
		// host's twin) is busy: pick again.
		if port != 0 || attempt == portAttempts-1 || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, err
		}
	}
}

func bindAll(hosts []bindHost, port int, udp bool) (tcp []net.Listener, pcs []net.PacketConn, err error) {
	defer func() {
		if err != nil {
			closeAll(tcp, pcs)
			tcp, pcs = nil, nil
		}
	}()
	for _, h := range hosts {
		ln, err := net.Listen("tcp", net.JoinHostPort(h.host, strconv.Itoa(port)))
		if err != nil {
			if h.optional && !errors.Is(err, syscall.EADDRINUSE) {
				continue
			}
			return tcp, pcs, fmt.Errorf("server: listen tcp: %w", err)
		}
		tcp = append(tcp, ln)
		port = ln.Addr().(*net.TCPAddr).Port // fixed by the first bind
		if !udp {
			continue
		}
		pc, err := net.ListenPacket("udp", net.JoinHostPort(h.host, strconv.Itoa(port)))
		if err != nil {
			return tcp, pcs, fmt.Errorf("server: listen udp: %w", err)
		}
		pcs = append(pcs, pc)
	}
	return tcp, pcs, nil
}

func closeAll(tcp []net.Listener, pcs []net.PacketConn) {
	for _, ln := range tcp {
		ln.Close()
	}
	for _, pc := range pcs {
		pc.Close()
	}
}

// tlsListener accepts TCP connections within the connLimiter's caps,
// runs their TLS handshakes concurrently (each bounded by a timeout and
// counted against the handshake caps) and hands out the finished
// *tls.Conn. A client that opens connections and never completes a
// handshake costs one handshake slot of its address for at most the
// timeout, and memory for at most MaxHandshakes handshakes in total.
//
// It owns two kinds of goroutine: the accept loop, and one per handshake
// in progress. Close ends both and waits for them.
type tlsListener struct {
	raw      net.Listener
	tls      *stdtls.Config
	lim      *connLimiter
	def      *defense
	timeout  time.Duration
	coalesce time.Duration // 0: no write coalescing

	ready  chan net.Conn
	ctx    context.Context // ended by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	errOnce sync.Once
	err     error         // the accept loop's fatal error, set before failed closes
	failed  chan struct{} // closed when the accept loop ended with err
}

func newTLSListener(raw net.Listener, cfg *stdtls.Config, lim *connLimiter, def *defense, timeout, coalesce time.Duration) *tlsListener {
	ctx, cancel := context.WithCancel(context.Background())
	l := &tlsListener{
		raw: raw, tls: cfg, lim: lim, def: def, timeout: timeout, coalesce: coalesce,
		ready: make(chan net.Conn), ctx: ctx, cancel: cancel, failed: make(chan struct{}),
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

// Accept returns the next connection whose TLS handshake succeeded.
func (l *tlsListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.failed:
		return nil, l.err
	case <-l.ctx.Done():
		return nil, net.ErrClosed
	}
}

func (l *tlsListener) Addr() net.Addr { return l.raw.Addr() }

// Close stops accepting, aborts the handshakes in progress and waits for
// the listener's goroutines.
func (l *tlsListener) Close() error {
	l.cancel()
	err := l.raw.Close()
	l.wg.Wait()
	return err
}

func (l *tlsListener) acceptLoop() {
	defer l.wg.Done()
	bo := backoff.Backoff{First: 5 * time.Millisecond, Max: time.Second}
	for {
		c, err := l.raw.Accept()
		if err != nil {
			if l.ctx.Err() != nil {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of file descriptors, or a transient error: wait
				// rather than spin.
				wait := bo.Next()
				l.def.log.Warn("accept", "server: accept failed, retrying", "error", err, "in", wait)
				if !backoff.SleepFor(l.ctx, wait) {
					return
				}
				continue
			}
			l.errOnce.Do(func() { l.err = fmt.Errorf("server: accept: %w", err); close(l.failed) })
			return
		}
		bo.Reset()
		addr := addrOf(c.RemoteAddr())
		if l.def.mem.isHigh() {
			c.Close()
			l.def.refuse(RefusedMemory, "remote", c.RemoteAddr().String(), "proto", "tcp")
			continue
		}
		h, why, ok := l.lim.admitTCP(addr, time.Now())
		if !ok {
			c.Close()
			l.def.refuse(why, "remote", c.RemoteAddr().String(), "proto", "tcp")
			continue
		}
		l.wg.Add(1)
		go l.handshake(c, addr, h)
	}
}

// handshake waits for an open-connection slot of its address and for
// handshake slots, and runs the handshake, all within the handshake
// timeout, and hands the connection to Accept.
func (l *tlsListener) handshake(raw net.Conn, addr netip.Addr, h *hostConns) {
	defer l.wg.Done()
	var releaseConn func()
	var c net.Conn = &limitedConn{Conn: raw, release: func() {
		if releaseConn != nil {
			releaseConn()
		}
		l.lim.closed(addr, true)
	}}
	ctx, cancel := context.WithTimeout(l.ctx, l.timeout)
	defer cancel()
	release, relConn, why, err := l.lim.waitSlots(ctx, h)
	if err != nil {
		c.Close()
		if l.ctx.Err() == nil {
			l.def.refuse(why, "remote", raw.RemoteAddr().String(), "waited", l.timeout)
		}
		return
	}
	releaseConn = relConn
	if l.coalesce > 0 {
		c = &coalescingConn{Conn: c, delay: l.coalesce}
	}
	tc := stdtls.Server(c, l.tls)
	deadline, _ := ctx.Deadline()
	raw.SetDeadline(deadline)
	err = tc.HandshakeContext(ctx)
	release()
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			l.def.refuse(RefusedHandshakeSlow, "remote", raw.RemoteAddr().String(), "timeout", l.timeout)
		} // else: e.g. a browser distrusting the device certificate, routine
		tc.Close()
		return
	}
	raw.SetDeadline(time.Time{})
	select {
	case l.ready <- tc:
	case <-l.ctx.Done():
		tc.Close()
	}
}

// limitedConn releases its connLimiter slot once, on the first Close.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

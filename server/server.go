package server

import (
	"context"
	stdtls "crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"

	"github.com/eddy-iot/eddy/dashboard"
	"github.com/eddy-iot/eddy/ratelog"
	"github.com/eddy-iot/eddy/ringlog"
	"github.com/eddy-iot/eddy/sse"
)

// Defaults for the zero values of Options.
const (
	DefaultMaxStreamsPerHost = 1000
	DefaultMaxStreamsPerConn = 1000
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultSessionTTL        = 30 * 24 * time.Hour

	DefaultMaxConns             = 1024 // per transport: TCP, and QUIC
	DefaultMaxConnsPerHost      = 512
	DefaultMaxHandshakes        = 128
	DefaultMaxHandshakesPerHost = 16
	DefaultHandshakeTimeout     = 5 * time.Second
	DefaultMemoryLimit          = 128 << 20
	// DefaultQUICRetryAbove is how many QUIC handshakes may be in progress
	// before new clients must prove their address with a Retry first.
	DefaultQUICRetryAbove = 16
	// quicIdleTimeout ends a QUIC connection that has gone silent (the
	// keep-alive keeps a live one talking), and quicIdleNoStreams one that
	// carries no request.
	quicIdleTimeout   = 30 * time.Second
	quicKeepAlive     = 10 * time.Second
	quicIdleNoStreams = 30 * time.Second
)

// ErrNoTLS is returned by New when Options.TLS is nil: eddy never serves
// plain HTTP.
var ErrNoTLS = errors.New("server: no TLS configuration")

// Options configures a Server. Log and TLS are required.
type Options struct {
	// Listen is "host:port". An empty host serves every IPv4 and IPv6
	// address; port 0 picks a free port (the same one for TCP and UDP).
	Listen string
	// HTTP3 also serves HTTP/3 over QUIC on the same port (UDP).
	HTTP3 bool
	// TLS is the server configuration (tls.Device.ServerConfig). With
	// ClientCAs set, verified client certificates are auth.
	TLS *stdtls.Config
	// Log is the ring log behind /api/series, /api/history and /healthz.
	Log *ringlog.Log
	// Events serves GET /events (the sse hub); nil answers 503.
	Events http.Handler
	// ConnContext derives each connection's context from its identity, the
	// net.Conn (HTTP/1.1, HTTP/2) or *quic.Conn (HTTP/3). Default:
	// sse.WithConn, so the hub can write a connection's streams together.
	ConnContext func(ctx context.Context, conn any) context.Context
	// Tokens are the accepted bearer tokens; replace them with SetTokens.
	Tokens []string
	// StatelessResetKey lets a restarted server reset its previous run's
	// QUIC connections at once; derive it from a persistent secret (the
	// device key). Nil: no stateless resets.
	StatelessResetKey *quic.StatelessResetKey
	// SessionKey signs session cookies; default: random per process (a
	// restart logs dashboards out).
	SessionKey []byte
	SessionTTL time.Duration // default DefaultSessionTTL
	// Version is reported by /api/status.
	Version string
	// Health, when set, is asked by /healthz beside the server's own checks;
	// a non-nil error is reported as the reason for 503.
	Health func(ctx context.Context) error

	// WriteCoalesce is how long TCP connections hold small writes to merge
	// them (see coalescingListener); default DefaultWriteCoalesce, < 0: off.
	WriteCoalesce time.Duration

	// AuthFailures wrong tokens (bearer, access_token or POST /login) from
	// one address within AuthFailureWindow block its token checks for
	// AuthFailureWindow (429 with Retry-After); defaults
	// DefaultAuthFailures and DefaultAuthFailureWindow.
	AuthFailures      int
	AuthFailureWindow time.Duration

	MaxStreamsPerHost int // concurrent requests per client address; default 1000
	MaxStreamsPerConn int // HTTP/2 and QUIC concurrent streams per connection; default 1000
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int

	// Connection admission, per transport (TCP and QUIC separately).
	MaxConns             int           // open connections; default DefaultMaxConns
	MaxConnsPerHost      int           // open connections of one client address (TCP: half as many more wait); default DefaultMaxConnsPerHost
	MaxHandshakes        int           // handshakes in progress; default DefaultMaxHandshakes
	MaxHandshakesPerHost int           // TLS handshakes in progress of one address; default DefaultMaxHandshakesPerHost
	HandshakeTimeout     time.Duration // TLS and QUIC handshakes; default DefaultHandshakeTimeout
	QUICRetryAbove       int           // QUIC handshakes in progress before Retry is required; default DefaultQUICRetryAbove

	// MemoryLimit is the process's memory budget in bytes (the caller
	// sets Go's soft limit to it with debug.SetMemoryLimit). Above 80%
	// of it in Go heap and stacks, new connections are refused and new
	// requests get 503. Default DefaultMemoryLimit; < 0: no admission
	// control.
	MemoryLimit int64
	// MaxTopicFilters caps the topic parameters of one /events or
	// /api/history request (400 beyond); default DefaultMaxTopicFilters.
	MaxTopicFilters int
	// MaxHistoryRequests caps concurrent /api/history requests (503
	// beyond); default DefaultMaxHistoryRequests.
	MaxHistoryRequests int

	Logger *slog.Logger // default: discard
}

func (o *Options) withDefaults() (Options, error) {
	r := *o
	if r.TLS == nil {
		return r, ErrNoTLS
	}
	if r.Log == nil {
		return r, errors.New("server: no ring log")
	}
	if r.WriteCoalesce == 0 {
		r.WriteCoalesce = DefaultWriteCoalesce
	}
	if r.MaxStreamsPerHost <= 0 {
		r.MaxStreamsPerHost = DefaultMaxStreamsPerHost
	}
	if r.MaxStreamsPerConn <= 0 {
		r.MaxStreamsPerConn = DefaultMaxStreamsPerConn
	}
	if r.ReadHeaderTimeout <= 0 {
		r.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if r.IdleTimeout <= 0 {
		r.IdleTimeout = DefaultIdleTimeout
	}
	if r.MaxHeaderBytes <= 0 {
		r.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if r.MaxConns <= 0 {
		r.MaxConns = DefaultMaxConns
	}
	if r.MaxConnsPerHost <= 0 {
		r.MaxConnsPerHost = DefaultMaxConnsPerHost
	}
	if r.MaxHandshakes <= 0 {
		r.MaxHandshakes = DefaultMaxHandshakes
	}
	if r.MaxHandshakesPerHost <= 0 {
		r.MaxHandshakesPerHost = DefaultMaxHandshakesPerHost
	}
	if r.HandshakeTimeout <= 0 {
		r.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if r.QUICRetryAbove <= 0 {
		r.QUICRetryAbove = DefaultQUICRetryAbove
	}
	if r.MemoryLimit == 0 {
		r.MemoryLimit = DefaultMemoryLimit
	} else if r.MemoryLimit < 0 {
		r.MemoryLimit = 0
	}
	if r.MaxTopicFilters <= 0 {
		r.MaxTopicFilters = DefaultMaxTopicFilters
	}
	if r.MaxHistoryRequests <= 0 {
		r.MaxHistoryRequests = DefaultMaxHistoryRequests
	}
	if r.SessionTTL <= 0 {
		r.SessionTTL = DefaultSessionTTL
	}
	if r.AuthFailures <= 0 {
		r.AuthFailures = DefaultAuthFailures
	}
	if r.AuthFailureWindow <= 0 {
		r.AuthFailureWindow = DefaultAuthFailureWindow
	}
	if r.ConnContext == nil {
		r.ConnContext = sse.WithConn
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return r, nil
}

// Server serves eddy's HTTP API over HTTP/1.1, HTTP/2 and HTTP/3.
type Server struct {
	opt  Options
	log  *slog.Logger
	mux  *http.ServeMux
	auth *authenticator
	lim  *hostLimiter
	gate requestGate
	dash *dashboard.Dashboard
	stat statusState
	def  *defense
	// tcpLim and quicLim admit connections; history holds a token per
	// running /api/history request.
	tcpLim, quicLim *connLimiter
	history         chan struct{}

	throttle *authThrottle // per-address wrong-token throttle

	h2  *http.Server
	h2s *http2.Server // serves the connections h2 hands over after ALPN "h2"
	h3  *http3.Server // nil when HTTP/3 is off
	// transports own the QUIC state on each UDP socket; closed at shutdown.
	transports []*quic.Transport
	quic       quicConns

	stopping atomic.Bool // set by Shutdown; /healthz answers 503

	mu       sync.Mutex // protects the fields below
	started  bool
	tcp      []net.Listener
	udp      []net.PacketConn
	serveErr error // first unexpected serve error

	wg   sync.WaitGroup // serving goroutines
	done chan struct{}  // closed when a serving goroutine failed or Shutdown ran
	once sync.Once
}

// New builds a Server; Start binds it.
func New(opts Options) (*Server, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	dash, err := dashboard.New()
	if err != nil {
		return nil, fmt.Errorf("server: dashboard: %w", err)
	}
	s := &Server{
		dash: dash,
		opt:  o,
		log:  o.Logger,
		mux:  http.NewServeMux(),
		auth: newAuthenticator(o.Tokens, o.SessionKey, o.SessionTTL, o.TLS.ClientCAs != nil),
		lim:  newHostLimiter(o.MaxStreamsPerHost),
		def: &defense{
			log: ratelog.New(o.Logger, defenseLogInterval),
			mem: newMemGauge(o.MemoryLimit),
		},
		tcpLim:  newConnLimiter(o.MaxConns, o.MaxConnsPerHost, o.MaxHandshakes, o.MaxHandshakesPerHost),
		quicLim: newConnLimiter(o.MaxConns, o.MaxConnsPerHost, o.MaxHandshakes, o.MaxHandshakes),
		history: make(chan struct{}, o.MaxHistoryRequests),
		done:    make(chan struct{}),

		throttle: newAuthThrottle(o.AuthFailures, o.AuthFailureWindow),
	}
	s.stat.init(o.Log)
	s.routes()
	handler := s.handler()
	if s.h2, err = s.newHTTP2(handler); err != nil {
		return nil, err
	}
	if o.HTTP3 {
		s.h3 = s.newHTTP3(handler)
	}
	return s, nil
}

// Handle mounts h at pattern (http.ServeMux syntax) behind auth, e.g.
// "GET /metrics". It is safe to call at any time.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// SetTokens replaces the accepted bearer tokens (SIGHUP reload). Sessions
// made with a removed token stop working at once.
func (s *Server) SetTokens(tokens []string) { s.auth.setTokens(tokens) }

func (s *Server) newHTTP2(h http.Handler) (*http.Server, error) {
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         s.opt.TLS.Clone(),
		ReadHeaderTimeout: s.opt.ReadHeaderTimeout,
		IdleTimeout:       s.opt.IdleTimeout,
		MaxHeaderBytes:    s.opt.MaxHeaderBytes,
		// TLS handshake failures from browsers that distrust the device
		// certificate are routine: keep them out of the info log.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: s.opt.MaxStreamsPerConn,
			// Find dead peers of idle SSE connections.
			SendPingTimeout: 30 * time.Second,
			PingTimeout:     15 * time.Second,
			// A connection whose socket accepts nothing this long is
			// dead; per-stream deadlines cannot see a stalled socket.
			WriteByteTimeout: 30 * time.Second,
		},
	}
	// HTTP/2 runs in x/net/http2 rather than net/http's copy so that each
	// connection can be read through h2Guard: net/http hands its HTTP/2
	// server only a *tls.Conn.
	s.h2s = &http2.Server{
		MaxConcurrentStreams: uint32(s.opt.MaxStreamsPerConn),
		IdleTimeout:          s.opt.IdleTimeout,
		ReadIdleTimeout:      30 * time.Second,
		PingTimeout:          15 * time.Second,
		WriteByteTimeout:     30 * time.Second,
		CountError: func(errType string) {
			s.def.counts[RefusedH2Protocol].Add(1)
			s.def.log.Warn("h2proto", "server: http2 protocol error", "type", errType)
		},
	}
	// ConfigureServer ties s.h2s to srv's Shutdown (GOAWAY, then close
	// once idle); serveH2 replaces the connection handler it installs.
	if err := http2.ConfigureServer(srv, s.h2s); err != nil {
		return nil, fmt.Errorf("server: configure http2: %w", err)
	}
	srv.TLSNextProto = map[string]func(*http.Server, *stdtls.Conn, http.Handler){
		http2.NextProtoTLS: s.serveH2,
	}
	cc := s.opt.ConnContext
	srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context { return cc(ctx, c) }
	return srv, nil
}

// serveH2 serves one connection that chose HTTP/2 by ALPN, read through
// an h2Guard.
func (s *Server) serveH2(hs *http.Server, c *stdtls.Conn, h http.Handler) {
	// net/http passes the connection's context (ConnContext's) by a
	// method of h, as it does for its own HTTP/2 server.
	ctx := context.Background()
	if bc, ok := h.(interface{ BaseContext() context.Context }); ok {
		ctx = bc.BaseContext()
	}
	s.h2s.ServeConn(newH2Guard(c, s), &http2.ServeConnOpts{Context: ctx, Handler: h, BaseConfig: hs})
}

// tlsConfig is the TCP listeners' TLS configuration: HTTP/2 first.
func (s *Server) tlsConfig() *stdtls.Config {
	cfg := s.opt.TLS.Clone()
	if len(cfg.NextProtos) == 0 {
		cfg.NextProtos = []string{http2.NextProtoTLS, "http/1.1"}
	}
	return cfg
}

func (s *Server) newHTTP3(h http.Handler) *http3.Server {
	srv := &http3.Server{
		Handler:        h,
		TLSConfig:      s.opt.TLS.Clone(),
		MaxHeaderBytes: s.opt.MaxHeaderBytes,
		IdleTimeout:    min(s.opt.IdleTimeout, quicIdleNoStreams),
		QUICConfig: &quic.Config{
			MaxIncomingStreams:   int64(s.opt.MaxStreamsPerConn),
			HandshakeIdleTimeout: s.opt.HandshakeTimeout,
			MaxIdleTimeout:       quicIdleTimeout,
			KeepAlivePeriod:      quicKeepAlive,
		},
		Logger: s.log,
	}
	cc := s.opt.ConnContext
	srv.ConnContext = func(ctx context.Context, c *quic.Conn) context.Context {
		s.quic.track(c)
		if slot, ok := c.Context().Value(quicSlotKey{}).(*quicSlot); ok {
			go slot.watchHandshake(c) // ends with the handshake or the connection
		}
		ctx = context.WithValue(ctx, connGuardKey{}, &connGuard{
			s: s, addr: addrOf(c.RemoteAddr()),
			close:  func() { c.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeExcessiveLoad), "excessive load") },
			bucket: newTokenBucket(earlyCancelBurst, earlyCancelRate),
		})
		return cc(ctx, c)
	}
	return srv
}

// Start binds the listeners and serves in the background until Shutdown.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("server: already started")
	}
	tcp, udp, err := listen(s.opt.Listen, s.h3 != nil)
	if err != nil {
		return err
	}
	s.started, s.tcp, s.udp = true, tcp, udp
	if s.h3 != nil {
		// Advertise one port, the one we bound, whatever the listeners say.
		s.h3.Port = tcp[0].Addr().(*net.TCPAddr).Port
	}
	tlsCfg := s.tlsConfig()
	for _, raw := range tcp {
		ln := newTLSListener(raw, tlsCfg, s.tcpLim, s.def, s.opt.HandshakeTimeout, max(s.opt.WriteCoalesce, 0))
		s.goServe("h2", ln.Addr(), func() error { return s.h2.Serve(ln) })
	}
	for _, pc := range udp {
		ln, err := s.listenQUIC(pc)
		if err != nil {
			return err
		}
		s.goServe("h3", pc.LocalAddr(), func() error { return s.h3.ServeListener(ln) })
	}
	return nil
}

// listenQUIC opens the QUIC listener on pc. With a StatelessResetKey that
// survives restarts, a restarted eddy answers packets of connections its
// previous run had with a stateless reset, so clients reconnect at once
// instead of waiting for their idle timeout.
func (s *Server) listenQUIC(pc net.PacketConn) (*quic.EarlyListener, error) {
	tr := &quic.Transport{
		Conn:                pc,
		StatelessResetKey:   s.opt.StatelessResetKey,
		VerifySourceAddress: s.quicVerifySource,
		ConnContext:         s.quicAdmit,
	}
	ln, err := tr.ListenEarly(http3.ConfigureTLSConfig(s.h3.TLSConfig), s.h3.QUICConfig)
	if err != nil {
		return nil, fmt.Errorf("server: listen quic on %s: %w", pc.LocalAddr(), err)
	}
	s.transports = append(s.transports, tr)
	return ln, nil
}

func (s *Server) goServe(proto string, addr net.Addr, serve func() error) {
	s.log.Info("server: listening", "proto", proto, "addr", addr.String())
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := serve()
		if err == nil || errors.Is(err, http.ErrServerClosed) || s.stopping.Load() {
			return
		}
		s.log.Error("server: serve failed", "proto", proto, "addr", addr.String(), "error", err)
		s.mu.Lock()
		if s.serveErr == nil {
			s.serveErr = fmt.Errorf("server: serve %s on %s: %w", proto, addr, err)
		}
		s.mu.Unlock()
		s.once.Do(func() { close(s.done) })
	}()
}

// Addr is the bound TCP address of the first listener (the UDP port is the
// same); nil before Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.tcp) == 0 {
		return nil
	}
	return s.tcp[0].Addr()
}

// Done is closed when a listener failed (see Err) or Shutdown began.
func (s *Server) Done() <-chan struct{} { return s.done }

// Err is the first unexpected serving error, or nil.
func (s *Server) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.serveErr
}

// Shutdown stops accepting, waits for running requests until ctx ends (end
// SSE streams with the hub's Shutdown meanwhile), then closes every
// connection. It returns ctx's error when it had to cut requests short.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopping.Store(true)
	s.once.Do(func() { close(s.done) })
	defer s.def.log.Stop()
	var wg sync.WaitGroup
	var err2, err3 error
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err2 = s.h2.Shutdown(ctx); err2 != nil {
			s.h2.Close() // the deadline passed: cut the remaining streams
		}
	}()
	if s.h3 != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err3 = s.shutdownHTTP3(ctx)
		}()
	}
	wg.Wait()
	s.mu.Lock()
	for _, tr := range s.transports {
		tr.Close()
	}
	for _, pc := range s.udp {
		pc.Close() // http3.Server does not close what it was given
	}
	s.mu.Unlock()
	s.wg.Wait()
	if err := errors.Join(err2, err3); err != nil {
		return fmt.Errorf("server: shutdown: %w", err)
	}
	return nil
}

// shutdownHTTP3 stops the HTTP/3 server gracefully and closes its
// connections as soon as no request runs, or when ctx ends.
func (s *Server) shutdownHTTP3(ctx context.Context) error {
	idleCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.gate.idled():
			cancel()
		case <-idleCtx.Done():
		}
	}()
	// quic-go's Shutdown closes every connection itself when idleCtx ends.
	err := s.h3.Shutdown(idleCtx)
	if errors.Is(err, context.Canceled) && ctx.Err() == nil {
		return nil // ended because no request was left, not by the deadline
	}
	return err
}

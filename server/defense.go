package server

import (
	"net/http"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eddy-iot/eddy/ratelog"
)

// Refusal is one reason the server refused a connection or request, or
// cut off a client. Each has a counter in DefenseStats, a label value in
// /metrics (eddy_server_refused_total{reason=...}) and a rate-limited
// "server: refused" log line (see defense.refuse).
type Refusal int

// The reasons, in the order of DefenseStats.Refused.
const (
	RefusedConnsTotal     Refusal = iota // TCP or QUIC connection over Options.MaxConns
	RefusedConnsPerHost                  // connection over Options.MaxConnsPerHost
	RefusedHandshakes                    // TLS/QUIC handshake over Options.MaxHandshakes
	RefusedHandshakesHost                // TLS handshake over Options.MaxHandshakesPerHost
	RefusedHandshakeSlow                 // TLS handshake not done within Options.HandshakeTimeout
	RefusedPenalty                       // connection from an address cut off for abuse moments ago
	RefusedMemory                        // connection or request while memory is near Options.MemoryLimit
	RefusedQUICRetry                     // QUIC Initial answered with a Retry (address validation)
	RefusedH2RapidReset                  // HTTP/2 connection closed: streams reset too fast
	RefusedH2Continuation                // HTTP/2 connection closed: CONTINUATION flood
	RefusedH2Control                     // HTTP/2 connection closed: PING/SETTINGS/PRIORITY flood
	RefusedH2Streams                     // HTTP/2 connection closed: streams opened too fast
	RefusedH2Protocol                    // HTTP/2 protocol error counted by x/net/http2
	RefusedH3Reset                       // HTTP/3 connection closed: requests cancelled too fast
	RefusedFilters                       // request with more than Options.MaxTopicFilters topic filters
	RefusedHistoryBusy                   // /api/history over Options.MaxHistoryRequests
	RefusedBadRequest                    // malformed parameter caught before the handler (Last-Event-ID)
	RefusedNoCredentials                 // 401: a protected path without a token, cookie or client certificate
	RefusedBadToken                      // 401: a wrong bearer token or access_token
	RefusedBadSession                    // 401: an invalid or expired session cookie
	RefusedLoginFailed                   // 401: POST /login with a wrong token
	RefusedAuthThrottled                 // 429: too many wrong tokens from this address
	RefusedHostLimit                     // 429: too many concurrent requests from this address
	numRefusals
)

var refusalNames = [numRefusals]string{
	"conns_total", "conns_per_host", "handshakes", "handshakes_per_host",
	"handshake_timeout", "penalty", "memory", "quic_retry",
	"h2_rapid_reset", "h2_continuation", "h2_control_flood", "h2_stream_flood",
	"h2_protocol_error", "h3_reset", "topic_filters", "history_busy", "bad_request",
	"no_credentials", "bad_token", "bad_session", "login_failed", "auth_throttled", "host_limit",
}

func (r Refusal) String() string {
	if r < 0 || r >= numRefusals {
		return "unknown"
	}
	return refusalNames[r]
}

// DefenseStats are the server's refusal counters since start, and its
// memory figure as admission control sees it.
type DefenseStats struct {
	Refused     [numRefusals]uint64 // by Refusal
	MemoryBytes uint64              // Go heap objects and stacks, as last sampled
	MemoryLimit int64               // Options.MemoryLimit (0: no admission control)
}

// Refusals lists every Refusal, for exporters.
func Refusals() []Refusal {
	r := make([]Refusal, numRefusals)
	for i := range r {
		r[i] = Refusal(i)
	}
	return r
}

// defense holds the refusal counters and the rate-limited log of refusals.
type defense struct {
	counts [numRefusals]atomic.Uint64
	log    *ratelog.Logger
	mem    *memGauge
}

// refuse counts one refusal and logs it: "server: refused" at warn, at
// most once per defenseLogInterval per reason, with the count held back
// since the last line. args name the client ("remote") and what it did;
// never a token or a query (it may hold an access_token).
func (d *defense) refuse(r Refusal, args ...any) {
	d.counts[r].Add(1)
	d.log.Warn(r.String(), "server: refused", append([]any{"reason", r.String()}, args...)...)
}

// refuse counts and logs a refused request, by path (never the query).
func (s *Server) refuse(r *http.Request, why Refusal) {
	s.def.refuse(why, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
}

// DefenseStats returns the refusal counters.
func (s *Server) DefenseStats() DefenseStats {
	var st DefenseStats
	for i := range st.Refused {
		st.Refused[i] = s.def.counts[i].Load()
	}
	st.MemoryBytes = s.def.mem.sample()
	st.MemoryLimit = s.def.mem.limit
	return st
}

// defenseLogInterval is the least time between two log lines of one
// refusal reason.
const defenseLogInterval = 10 * time.Second

// memSampleEvery bounds how often admission control reads the runtime's
// memory figures.
const memSampleEvery = 20 * time.Millisecond

// memHighPercent of Options.MemoryLimit is where admission closes.
const memHighPercent = 80

// memGauge tells whether the Go heap is near the memory limit. It reads
// runtime/metrics (no stop-the-world) at most every memSampleEvery.
type memGauge struct {
	limit int64         // 0: never high
	high  atomic.Uint64 // threshold in bytes

	mu      sync.Mutex // protects samples
	samples []metrics.Sample
	at      atomic.Int64 // unix nanos of the last sample
	val     atomic.Uint64
}

func newMemGauge(limit int64) *memGauge {
	g := &memGauge{limit: limit, samples: []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/stacks:bytes"},
	}}
	if limit > 0 {
		g.high.Store(uint64(limit) / 100 * memHighPercent)
	}
	return g
}

// sample returns the heap objects and stacks in bytes, at most
// memSampleEvery old.
func (g *memGauge) sample() uint64 {
	now := time.Now().UnixNano()
	if now-g.at.Load() >= int64(memSampleEvery) && g.mu.TryLock() {
		metrics.Read(g.samples)
		var v uint64
		for _, s := range g.samples {
			if s.Value.Kind() == metrics.KindUint64 {
				v += s.Value.Uint64()
			}
		}
		g.val.Store(v)
		g.at.Store(now)
		g.mu.Unlock()
	}
	return g.val.Load()
}

// isHigh reports whether memory is above memHighPercent of the limit.
func (g *memGauge) isHigh() bool {
	return g.limit > 0 && g.sample() > g.high.Load()
}

// tokenBucket allows burst events at once and rate per second after; not
// safe for concurrent use.
type tokenBucket struct {
	tokens float64
	burst  float64
	rate   float64
	last   time.Time
}

func newTokenBucket(burst, rate float64) tokenBucket {
	return tokenBucket{tokens: burst, burst: burst, rate: rate}
}

// take spends one token; false when none is left.
func (b *tokenBucket) take(now time.Time) bool {
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

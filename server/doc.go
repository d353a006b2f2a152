// Package server owns eddy's HTTP front door: one TLS listener serving
// HTTP/2 and HTTP/1.1 (TCP) and, when enabled, quic-go's HTTP/3 server on
// the same port (UDP), both around one handler; authentication; the JSON
// endpoints beside the live stream (/api/series, /api/history with its
// decimated form, /api/status with sections the daemon adds through
// AddStatus, /healthz); and the mounting of the dashboard package at /
// (its assets under /assets/ need no auth: they hold no data).
//
// Guarantees:
//
//   - Every endpoint but /healthz, /login and /logout needs auth: a bearer
//     token (Authorization header or access_token query parameter), a
//     session cookie set by POST /login, or a client certificate verified
//     against tls.client_ca. Tokens are compared in constant time, the
//     cookie holds an HMAC-signed session bound to the token that made it
//     (never the token), and no token reaches a log: requests are logged by
//     path, without the query.
//   - Every refusal, of a request (no_credentials, bad_token, bad_session,
//     login_failed, auth_throttled, host_limit, ...) or of a connection
//     (see below), is counted by reason (Server.DefenseStats;
//     eddy_server_refused_total{reason} in /metrics) and logged as
//     "server: refused" at warn at most once per reason every 10 s, with
//     the count held back (package ratelog), so a scanner cannot flood
//     the log.
//   - Wrong tokens are throttled per address (IPv6 per /64): after
//     Options.AuthFailures of them (bearer, access_token or POST /login)
//     within Options.AuthFailureWindow, the address's tokens are not
//     checked for a window: 429 with Retry-After. Its valid sessions and
//     client certificates still pass. The table is bounded
//     (MaxThrottledAddrs); requests without any credential are not
//     counted as failures.
//   - One client address holds at most Options.MaxStreamsPerHost concurrent
//     requests (429 beyond), whatever protocol or connection it uses; each
//     connection may carry 1000 concurrent streams (HTTP/2 and QUIC), so a
//     browser's tabs sharing one connection are not silently stalled.
//   - An empty listen host serves IPv4 and IPv6 on TCP and UDP; "localhost"
//     serves 127.0.0.1 and ::1. HTTP/2 and HTTP/1.1 responses advertise
//     HTTP/3 with one Alt-Svc header when it is on.
//   - Shutdown stops accepting at once, lets running requests finish until
//     its context ends (the caller ends SSE streams with the hub's
//     Shutdown), then closes every connection; all goroutines the server
//     started have ended when it returns.
//   - Hostile clients cost bounded memory and never stall the others
//     (issue 12). Per transport (TCP, QUIC): at most MaxConns connections,
//     MaxConnsPerHost per client address, MaxHandshakes handshakes in
//     progress (TCP: MaxHandshakesPerHost per address). Over TCP a
//     connection beyond its address's caps waits for a slot, within
//     HandshakeTimeout, rather than being refused (up to MaxConnsPerHost/2
//     of them per address wait): a burst of requests on a fresh Go client
//     dials a connection per request and closes the extra ones at once;
//     the TLS handshake runs in the listener, bounded by HandshakeTimeout.
//     QUIC asks for address validation (Retry) once QUICRetryAbove
//     handshakes are in progress, so spoofed Initials cost no state; a
//     silent QUIC connection ends after 30 s. HTTP/2 is served by
//     x/net/http2 through h2Guard, which reads the frame headers and
//     closes a connection that resets streams (rapid reset), opens them,
//     or sends PING/SETTINGS/PRIORITY faster than any client needs, or a
//     header block of more than 16 CONTINUATION frames; HTTP/3
//     connections whose requests are cancelled as fast are closed too.
//     An address cut off for abuse is refused for 10 s. Above 80% of
//     MemoryLimit (Go heap and stacks), new connections are refused and
//     new requests get 503 (not /healthz). A request may carry
//     MaxTopicFilters topic filters (400 beyond), /api/history runs
//     MaxHistoryRequests at a time (503 beyond), since= is clamped to
//     what the ring log can order, and a Last-Event-ID longer than any
//     event id is refused without being echoed. Every refusal is counted
//     and logged as above.
//   - QUICStats sums the QUIC statistics of every HTTP/3 connection served,
//     open or ended (packets sent, received and declared lost, bytes), so
//     loss on collectors' links can be seen from /metrics.
package server

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
//   - QUICStats sums the QUIC statistics of every HTTP/3 connection served,
//     open or ended (packets sent, received and declared lost, bytes), so
//     loss on collectors' links can be seen from /metrics.
package server

package server

import (
	"net/http"
	"time"

	"github.com/eddy-iot/eddy/dashboard"
)

// routes mounts the built-in endpoints.
func (s *Server) routes() {
	s.mux.HandleFunc("GET /healthz", s.handleHealth)
	s.mux.HandleFunc("POST /login", s.handleLogin)
	s.mux.HandleFunc("POST /logout", s.handleLogout)
	s.mux.HandleFunc("GET /api/series", s.handleSeries)
	s.mux.HandleFunc("GET /api/history", s.handleHistory)
	s.mux.HandleFunc("GET /api/status", s.handleStatus)
	s.mux.Handle("GET /{$}", s.dash)
	s.mux.Handle("GET "+dashboard.AssetPrefix, s.dash)
	events := s.opt.Events
	if events == nil {
		events = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "503 no event stream configured", http.StatusServiceUnavailable)
		})
	}
	s.mux.Handle("GET /events", events)
}

// handler is the one handler both servers run: limits first (so floods of
// unauthenticated requests are capped too), then Alt-Svc, then auth, then
// the admission guard (memory, filters, history slots) for the requests
// that would cost something.
func (s *Server) handler() http.Handler {
	return s.limit(s.logged(s.altSvc(s.requireAuth(s.guard(s.mux)))))
}

// altSvc advertises HTTP/3 on HTTP/1.1 and HTTP/2 responses.
func (s *Server) altSvc(next http.Handler) http.Handler {
	if !s.opt.HTTP3 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor < 3 {
			s.h3.SetQUICHeaders(w.Header())
		}
		next.ServeHTTP(w, r)
	})
}

// logged logs each request at debug level by path: never the query, which
// may hold an access_token.
func (s *Server) logged(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		next.ServeHTTP(w, r)
		s.log.Debug("server: request", "method", r.Method, "path", r.URL.Path,
			"proto", r.Proto, "remote", r.RemoteAddr, "took", time.Since(start))
	})
}

package sse

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// serveHTTP2 serves h over HTTP/2 with TLS on a loopback port, marking
// each request with its connection as the server package does.
func serveHTTP2(t *testing.T, h http.Handler) (func() *http.Client, string) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			http.Error(w, "test expects HTTP/2, got "+r.Proto, http.StatusHTTPVersionNotSupported)
			return
		}
		h.ServeHTTP(w, r)
	}))
	srv.EnableHTTP2 = true
	srv.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context { return WithConn(ctx, c) }
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return cloneClient(t, srv.Client()), srv.URL
}

// cloneClient returns a function making clients like base, each with its
// own connections.
func cloneClient(t *testing.T, base *http.Client) func() *http.Client {
	return func() *http.Client {
		tr := base.Transport.(*http.Transport).Clone()
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr}
	}
}

func TestStreamHTTP2(t *testing.T) {
	runStreamSuite(t, serveHTTP2)
}

// newBenchServer serves h over HTTP/2 for benchmarks.
func newBenchServer(b *testing.B, h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context { return WithConn(ctx, c) }
	srv.StartTLS()
	b.Cleanup(srv.Close)
	b.Cleanup(srv.Client().CloseIdleConnections)
	return srv
}

// serveHTTP1 serves h over plain HTTP/1.1 on a loopback port: the
// contract is the same there (one connection per stream).
func serveHTTP1(t *testing.T, h http.Handler) (func() *http.Client, string) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 1 {
			http.Error(w, "test expects HTTP/1.1, got "+r.Proto, http.StatusHTTPVersionNotSupported)
			return
		}
		h.ServeHTTP(w, r)
	}))
	srv.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context { return WithConn(ctx, c) }
	srv.Start()
	t.Cleanup(srv.Close)
	return cloneClient(t, srv.Client()), srv.URL
}

func TestStreamHTTP1(t *testing.T) {
	runStreamSuite(t, serveHTTP1)
}

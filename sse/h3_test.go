package sse

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// serveHTTP3 serves h over HTTP/3 (QUIC) on a loopback UDP port, marking
// each request with its QUIC connection as the server package does.
func serveHTTP3(t *testing.T, h http.Handler) (func() *http.Client, string) {
	// Borrow httptest's certificate (valid for 127.0.0.1) and its pool.
	certSrv := httptest.NewTLSServer(http.NotFoundHandler())
	certs := certSrv.TLS.Certificates
	roots := certSrv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	certSrv.Close()

	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http3.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ProtoMajor != 3 {
				http.Error(w, "test expects HTTP/3, got "+r.Proto, http.StatusHTTPVersionNotSupported)
				return
			}
			h.ServeHTTP(w, r)
		}),
		TLSConfig:   http3.ConfigureTLSConfig(&tls.Config{Certificates: certs}),
		QUICConfig:  &quic.Config{MaxIncomingStreams: 1000},
		ConnContext: func(ctx context.Context, c *quic.Conn) context.Context { return WithConn(ctx, c) },
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(udp) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, quic.ErrServerClosed) {
			t.Errorf("http3 serve: %v", err)
		}
		udp.Close()
	})
	newClient := func() *http.Client {
		tr := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
		t.Cleanup(func() { tr.Close() })
		return &http.Client{Transport: tr}
	}
	return newClient, "https://" + udp.LocalAddr().String()
}

func TestStreamHTTP3(t *testing.T) {
	runStreamSuite(t, serveHTTP3)
}

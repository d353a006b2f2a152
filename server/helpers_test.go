package server

import (
	"bytes"
	"context"
	stdtls "crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"go.uber.org/goleak"

	"github.com/eddy-iot/eddy/ringlog"
	eddytls "github.com/eddy-iot/eddy/tls"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testToken = "test-token-0123456789"

// testEnv is a running server over a real ring log and device certificate.
type testEnv struct {
	srv  *Server
	log  *ringlog.Log
	dev  *eddytls.Device
	logs *syncBuffer // the server's log output
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startServer runs a server on 127.0.0.1:0 with HTTP/3 and testToken;
// edit adjusts the options first. It is shut down in t.Cleanup.
func startServer(t testing.TB, edit func(*Options)) *testEnv {
	t.Helper()
	dir := t.TempDir()
	l, err := ringlog.Open(dir, &ringlog.Options{SyncInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	dev, err := eddytls.Load(eddytls.Options{Dir: dir, Hostname: "eddy-test",
		Addrs: func() ([]net.IP, error) { return nil, nil }})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	o := Options{
		Listen: "127.0.0.1:0",
		HTTP3:  true,
		TLS:    dev.ServerConfig(),
		Log:    l,
		Tokens: []string{testToken},
		Events: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "events") }),
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if edit != nil {
		edit(&o)
	}
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return &testEnv{srv: srv, log: l, dev: dev, logs: logs}
}

func (e *testEnv) port() string { return strconv.Itoa(e.srv.Addr().(*net.TCPAddr).Port) }

// url is https://127.0.0.1:<port><path>.
func (e *testEnv) url(path string) string { return "https://127.0.0.1:" + e.port() + path }

func (e *testEnv) roots(t testing.TB) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(e.dev.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(b)
	return p
}

// proto is a client protocol under test.
type proto struct {
	name   string
	major  int
	client func(t testing.TB, e *testEnv, certs ...stdtls.Certificate) *http.Client
}

// protos are the protocols every endpoint test runs over; h2 and h3 come
// first (the multiplexed ones).
var protos = []proto{{"h2", 2, h2Client}, {"h3", 3, h3Client}, {"h1", 1, h1Client}}

// h1Client speaks only HTTP/1.1 over TLS and trusts the device CA.
func h1Client(t testing.TB, e *testEnv, certs ...stdtls.Certificate) *http.Client {
	t.Helper()
	tr := &http.Transport{
		TLSClientConfig:     &stdtls.Config{RootCAs: e.roots(t), Certificates: certs},
		Protocols:           new(http.Protocols),
		TLSHandshakeTimeout: 10 * time.Second,
	}
	tr.Protocols.SetHTTP1(true)
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// h2Client speaks only HTTP/2 and trusts the device CA.
func h2Client(t testing.TB, e *testEnv, certs ...stdtls.Certificate) *http.Client {
	t.Helper()
	tr := &http.Transport{
		TLSClientConfig:     &stdtls.Config{RootCAs: e.roots(t), Certificates: certs},
		Protocols:           new(http.Protocols),
		TLSHandshakeTimeout: 10 * time.Second,
	}
	tr.Protocols.SetHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// h3Client speaks HTTP/3 over QUIC and trusts the device CA.
func h3Client(t testing.TB, e *testEnv, certs ...stdtls.Certificate) *http.Client {
	t.Helper()
	tr := &http3.Transport{
		TLSClientConfig: &stdtls.Config{RootCAs: e.roots(t), Certificates: certs},
		QUICConfig:      &quic.Config{HandshakeIdleTimeout: 10 * time.Second},
	}
	t.Cleanup(func() { tr.Close() })
	return &http.Client{Transport: tr, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// get performs a GET with optional headers and returns status, header and body.
func get(t *testing.T, c *http.Client, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return do(t, c, req)
}

func do(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", req.Method, req.URL.Path, err)
	}
	return resp, string(b)
}

func appendRec(t *testing.T, l *ringlog.Log, topic string, kind ringlog.Kind, value, unit string, ts time.Time) uint64 {
	t.Helper()
	seq, err := l.Append(ringlog.Record{Topic: topic, Kind: kind, Value: []byte(value), Unit: unit, Time: ts})
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

package tls

import (
	"context"
	stdtls "crypto/tls"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/tls/tlstest"
)

// serveOnce accepts one TLS connection on loopback with cfg, completes the
// handshake and reports the server's view of it (or its error).
type handshakeResult struct {
	state stdtls.ConnectionState
	err   error
}

func serveOnce(t *testing.T, cfg *stdtls.Config) (addr string, result <-chan handshakeResult) {
	t.Helper()
	ln, err := stdtls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan handshakeResult, 1)
	go func() {
		defer ln.Close()
		c, err := ln.Accept()
		if err != nil {
			ch <- handshakeResult{err: err}
			return
		}
		defer c.Close()
		tc := c.(*stdtls.Conn)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = tc.HandshakeContext(ctx)
		ch <- handshakeResult{state: tc.ConnectionState(), err: err}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String(), ch
}

func dial(addr string, cfg *stdtls.Config) error {
	d := &stdtls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

func clientConfig(t *testing.T, o ClientOptions) *stdtls.Config {
	t.Helper()
	c, err := ClientConfig(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestClientTrust(t *testing.T) {
	d := load(t, Options{Dir: t.TempDir(), Hostname: "dev", Addrs: fixedAddrs()})
	other := load(t, Options{Dir: t.TempDir(), Hostname: "dev", Addrs: fixedAddrs()})
	plainPin := strings.ToLower(strings.ReplaceAll(d.Fingerprint(), ":", ""))
	for _, tc := range []struct {
		name    string
		o       ClientOptions
		wantErr error // nil: success; errAny: any failure
	}{
		{"pin colon hex", ClientOptions{Fingerprint: d.Fingerprint()}, nil},
		{"pin plain hex", ClientOptions{Fingerprint: plainPin}, nil},
		{"wrong pin", ClientOptions{Fingerprint: other.Fingerprint()}, ErrFingerprintMismatch},
		{"device CA", ClientOptions{CAFile: d.CAFile()}, nil},
		{"other device's CA", ClientOptions{CAFile: other.CAFile()}, errAny},
		{"CA and right pin", ClientOptions{CAFile: d.CAFile(), Fingerprint: d.Fingerprint()}, nil},
		{"CA and wrong pin", ClientOptions{CAFile: d.CAFile(), Fingerprint: other.Fingerprint()}, ErrFingerprintMismatch},
		{"system roots", ClientOptions{}, errAny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, res := serveOnce(t, d.ServerConfig())
			cfg := clientConfig(t, tc.o)
			cfg.ServerName = "127.0.0.1"
			err := dial(addr, cfg)
			<-res
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("handshake failed: %v", err)
			case tc.wantErr == errAny && err == nil, tc.wantErr != nil && tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
				t.Fatalf("handshake error %v, want %v", err, tc.wantErr)
			}
		})
	}
}

var errAny = errors.New("any error")

func TestClientCertificateAuth(t *testing.T) {
	ca, err := tlstest.NewCA("collectors")
	if err != nil {
		t.Fatal(err)
	}
	rogue, err := tlstest.NewCA("rogue")
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "clients.pem")
	if err := ca.WriteCertFile(caFile); err != nil {
		t.Fatal(err)
	}
	d := load(t, Options{Dir: t.TempDir(), Hostname: "dev", Addrs: fixedAddrs(), ClientCAFile: caFile})
	if !d.ClientAuth() {
		t.Fatal("ClientAuth() = false with a client CA")
	}
	good, _ := ca.ClientCert("collector-1")
	bad, _ := rogue.ClientCert("intruder")

	for _, tc := range []struct {
		name       string
		certs      []stdtls.Certificate
		wantOK     bool
		wantChains bool
	}{
		{"signed by client CA", []stdtls.Certificate{good}, true, true},
		{"no certificate (token users)", nil, true, false},
		{"signed by another CA", []stdtls.Certificate{bad}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, res := serveOnce(t, d.ServerConfig())
			cfg := clientConfig(t, ClientOptions{CAFile: d.CAFile(), ServerName: "localhost"})
			// Present the certificate whatever CAs the server names (Go's
			// client would otherwise quietly withhold the rogue one).
			cfg.GetClientCertificate = func(*stdtls.CertificateRequestInfo) (*stdtls.Certificate, error) {
				if len(tc.certs) == 0 {
					return &stdtls.Certificate{}, nil
				}
				return &tc.certs[0], nil
			}
			// In TLS 1.3 the client learns of a rejected certificate only
			// on its first read; the server's side is authoritative.
			_ = dial(addr, cfg)
			r := <-res
			if ok := r.err == nil; ok != tc.wantOK {
				t.Fatalf("server handshake error %v, want ok=%v", r.err, tc.wantOK)
			}
			if got := len(r.state.VerifiedChains) > 0; got != tc.wantChains {
				t.Fatalf("verified chains present = %v, want %v", got, tc.wantChains)
			}
		})
	}
}

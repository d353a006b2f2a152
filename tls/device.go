package tls

import (
	"crypto/hkdf"
	"crypto/sha256"
	stdtls "crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go/http3"
)

// Validity periods of generated certificates and the renewal margin.
const (
	CAValidity   = 20 * 365 * 24 * time.Hour
	LeafValidity = 365 * 24 * time.Hour
	RenewBefore  = 30 * 24 * time.Hour
)

// File names under <dir>/tls/.
const (
	CAFileName   = "ca.pem"
	CAKeyName    = "ca.key"
	CertFileName = "cert.pem"
	KeyFileName  = "key.pem"
)

// ErrHalfConfigured is returned by Load when only one of the cert and key
// files is configured.
var ErrHalfConfigured = errors.New("tls: tls.cert and tls.key must be set together")

// Options says where the device identity comes from. Zero fields take the
// documented defaults.
type Options struct {
	// Dir is the data directory; generated files live in Dir/tls.
	Dir string
	// CertFile and KeyFile, when both set, are loaded instead of generating.
	CertFile, KeyFile string
	// ClientCAFile, when set, enables client-certificate auth.
	ClientCAFile string
	// Hostname names the device in generated certificates; default os.Hostname.
	Hostname string
	// Addrs lists the addresses the leaf must name beside the loopback ones;
	// default: every interface address.
	Addrs func() ([]net.IP, error)
	// Now is the clock; default time.Now.
	Now    func() time.Time
	Logger *slog.Logger // default: discard
}

func (o Options) withDefaults() (Options, error) {
	if (o.CertFile == "") != (o.KeyFile == "") {
		return o, ErrHalfConfigured
	}
	if o.CertFile == "" && o.Dir == "" {
		return o, errors.New("tls: no data directory for generated certificates")
	}
	if o.Hostname == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "eddy"
		}
		o.Hostname = h
	}
	o.Hostname = strings.ToLower(o.Hostname)
	if o.Addrs == nil {
		o.Addrs = interfaceAddrs
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return o, nil
}

// Device is the server's certificate and client-certificate trust. Its
// methods are safe for concurrent use; Refresh swaps the certificate under
// running servers.
type Device struct {
	opt       Options
	clientCAs *x509.CertPool // nil: no client-certificate auth

	mu  sync.Mutex // serializes Refresh
	cur atomic.Pointer[stdtls.Certificate]
}

// Load loads the configured certificate, or the generated one under
// <dir>/tls/, generating or renewing it as needed.
func Load(opt Options) (*Device, error) {
	o, err := opt.withDefaults()
	if err != nil {
		return nil, err
	}
	d := &Device{opt: o}
	if o.ClientCAFile != "" {
		if d.clientCAs, err = loadPool(o.ClientCAFile); err != nil {
			return nil, err
		}
	}
	if _, err := d.Refresh(); err != nil {
		return nil, err
	}
	return d, nil
}

// Refresh reloads configured files, or renews the generated leaf when an
// address is missing from it or it nears expiry. It reports whether the
// certificate changed. Call it on SIGHUP or periodically.
func (d *Device) Refresh() (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var cert *stdtls.Certificate
	var err error
	if d.Generated() {
		cert, err = d.ensureGenerated()
	} else {
		cert, err = loadPair(d.opt.CertFile, d.opt.KeyFile)
	}
	if err != nil {
		return false, err
	}
	old := d.cur.Load()
	changed := old == nil || !old.Leaf.Equal(cert.Leaf)
	if changed {
		d.cur.Store(cert)
	}
	return changed, nil
}

// Generated reports whether the certificate is eddy's own (not configured).
func (d *Device) Generated() bool { return d.opt.CertFile == "" }

// Certificate is the current server certificate, with Leaf set.
func (d *Device) Certificate() *stdtls.Certificate { return d.cur.Load() }

// Fingerprint is the current leaf's SHA-256 fingerprint.
func (d *Device) Fingerprint() string { return Fingerprint(d.cur.Load().Leaf.Raw) }

// CAFile is the generated CA certificate clients should trust, or "" when
// the certificate is configured.
func (d *Device) CAFile() string {
	if !d.Generated() {
		return ""
	}
	return filepath.Join(d.opt.Dir, "tls", CAFileName)
}

// ClientAuth reports whether client certificates are verified (a client CA
// is configured).
func (d *Device) ClientAuth() bool { return d.clientCAs != nil }

// ServerConfig is the TLS configuration for the HTTP/2 and HTTP/1.1
// listener. It always serves the current certificate.
func (d *Device) ServerConfig() *stdtls.Config {
	c := &stdtls.Config{
		MinVersion: stdtls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetCertificate: func(*stdtls.ClientHelloInfo) (*stdtls.Certificate, error) {
			return d.cur.Load(), nil
		},
	}
	if d.clientCAs != nil {
		c.ClientAuth = stdtls.VerifyClientCertIfGiven
		c.ClientCAs = d.clientCAs
	}
	return c
}

func loadPair(certFile, keyFile string) (*stdtls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("tls: read certificate %s: %w", certFile, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: read key %s: %w", keyFile, err)
	}
	cert, err := stdtls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tls: load %s and %s: %w", certFile, keyFile, err)
	}
	return &cert, nil
}

func loadPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tls: read client CA %s: %w", file, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("tls: client CA %s: no PEM certificate in it", file)
	}
	return pool, nil
}

// interfaceAddrs lists the IP address of every interface.
func interfaceAddrs() ([]net.IP, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("tls: interface addresses: %w", err)
	}
	var ips []net.IP
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			ips = append(ips, n.IP)
		}
	}
	return ips, nil
}

// HTTP3Config is ServerConfig prepared for a QUIC listener serving HTTP/3
// (ALPN h3). http3.Server.Serve does this itself; use it with ServeListener.
func (d *Device) HTTP3Config() *stdtls.Config {
	return http3.ConfigureTLSConfig(d.ServerConfig())
}

// Secret derives n bytes for purpose from the device's private key
// (HKDF-SHA256), so that secrets which must survive restarts (QUIC
// stateless-reset keys, session-cookie keys) need no file of their own and
// change when the key does.
func (d *Device) Secret(purpose string, n int) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(d.Certificate().PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("tls: derive %s: %w", purpose, err)
	}
	out, err := hkdf.Key(sha256.New, der, nil, "eddy "+purpose, n)
	if err != nil {
		return nil, fmt.Errorf("tls: derive %s: %w", purpose, err)
	}
	return out, nil
}

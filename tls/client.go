package tls

import (
	"crypto/sha256"
	"crypto/subtle"
	stdtls "crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// ErrFingerprintMismatch is returned by the handshake of a pinned client
// configuration when the server's leaf has another fingerprint.
var ErrFingerprintMismatch = errors.New("tls: server certificate fingerprint does not match the pinned one")

// ClientOptions says how a client (eddy tail) trusts a device.
type ClientOptions struct {
	// CAFile, when set, is the only CA trusted (e.g. the device's ca.pem).
	CAFile string
	// Fingerprint, when set, pins the server's leaf certificate by its
	// SHA-256 (see ParseFingerprint). Without CAFile the CA check is then
	// skipped: the pin is the trust. With CAFile both must hold.
	Fingerprint string
	// Certificates are presented for client-certificate auth.
	Certificates []stdtls.Certificate
	// ServerName overrides the name verified against the certificate.
	ServerName string
}

// ClientConfig builds the client TLS configuration. With neither CAFile
// nor Fingerprint it trusts the system roots.
func ClientConfig(o ClientOptions) (*stdtls.Config, error) {
	c := &stdtls.Config{
		MinVersion:   stdtls.VersionTLS12,
		Certificates: o.Certificates,
		ServerName:   o.ServerName,
	}
	if o.CAFile != "" {
		b, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: read CA %s: %w", o.CAFile, err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("tls: CA %s: no PEM certificate in it", o.CAFile)
		}
	}
	if o.Fingerprint != "" {
		pin, err := ParseFingerprint(o.Fingerprint)
		if err != nil {
			return nil, err
		}
		// The pin replaces chain verification only when no CA is given;
		// VerifyConnection runs on every handshake, resumed ones included.
		c.InsecureSkipVerify = o.CAFile == ""
		c.VerifyConnection = func(cs stdtls.ConnectionState) error {
			return checkPin(cs, pin)
		}
	}
	return c, nil
}

func checkPin(cs stdtls.ConnectionState, pin []byte) error {
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("%w: no certificate presented", ErrFingerprintMismatch)
	}
	sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
	if subtle.ConstantTimeCompare(sum[:], pin) != 1 {
		return fmt.Errorf("%w: got %s", ErrFingerprintMismatch, Fingerprint(cs.PeerCertificates[0].Raw))
	}
	return nil
}

package tls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	stdtls "crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// clockSkew backdates NotBefore so a device whose clock is slightly ahead
// of a client's still presents a valid certificate.
const clockSkew = time.Hour

type signer struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// ensureGenerated loads the generated CA and leaf, creating the CA when
// absent and the leaf when absent, unusable, stale or missing a name.
func (d *Device) ensureGenerated() (*stdtls.Certificate, error) {
	dir := filepath.Join(d.opt.Dir, "tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("tls: create %s: %w", dir, err)
	}
	ca, err := d.loadOrCreateCA(dir)
	if err != nil {
		return nil, err
	}
	dns, ips, err := d.wantNames()
	if err != nil {
		return nil, err
	}
	certFile, keyFile := filepath.Join(dir, CertFileName), filepath.Join(dir, KeyFileName)
	cert, err := loadPair(certFile, keyFile)
	if err == nil {
		reason := d.leafProblem(cert.Leaf, ca, dns, ips)
		if reason == "" {
			return cert, nil
		}
		d.opt.Logger.Info("tls: renewing device certificate", "reason", reason)
	} else if !errors.Is(err, fs.ErrNotExist) {
		d.opt.Logger.Warn("tls: replacing unusable device certificate", "error", err)
	}
	return d.createLeaf(ca, dns, ips, certFile, keyFile)
}

// leafProblem says why leaf must be replaced, or "" when it is fine.
func (d *Device) leafProblem(leaf *x509.Certificate, ca *signer, dns []string, ips []net.IP) string {
	if err := leaf.CheckSignatureFrom(ca.cert); err != nil {
		return "not signed by the device CA"
	}
	if d.opt.Now().Add(RenewBefore).After(leaf.NotAfter) {
		return "expires " + leaf.NotAfter.Format(time.RFC3339)
	}
	for _, n := range dns {
		if !slices.Contains(leaf.DNSNames, n) {
			return "name " + n + " missing"
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(leaf.IPAddresses, ip.Equal) {
			return "address " + ip.String() + " missing"
		}
	}
	return ""
}

// wantNames is what the leaf's SANs must cover.
func (d *Device) wantNames() ([]string, []net.IP, error) {
	h := d.opt.Hostname
	dns := []string{h, h + ".local", "localhost"}
	if h == "localhost" {
		dns = []string{"localhost"}
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1).To4(), net.IPv6loopback}
	more, err := d.opt.Addrs()
	if err != nil {
		return nil, nil, err
	}
	for _, ip := range more {
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		if !slices.ContainsFunc(ips, ip.Equal) {
			ips = append(ips, ip)
		}
	}
	return dns, ips, nil
}

func (d *Device) loadOrCreateCA(dir string) (*signer, error) {
	certFile, keyFile := filepath.Join(dir, CAFileName), filepath.Join(dir, CAKeyName)
	pair, err := loadPair(certFile, keyFile)
	if err == nil {
		key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
		if !ok || !pair.Leaf.IsCA {
			return nil, fmt.Errorf("tls: %s is not an ECDSA CA certificate and key", certFile)
		}
		return &signer{cert: pair.Leaf, key: key}, nil
	}
	if _, statErr := os.Stat(certFile); !errors.Is(statErr, fs.ErrNotExist) {
		// Never replace a CA that clients may already trust. A key without
		// its certificate (a crash between the two writes) was never shown
		// to anyone and is replaced.
		return nil, fmt.Errorf("tls: device CA unusable (move %s and %s away to make a new one): %w", certFile, keyFile, err)
	}
	return d.createCA(certFile, keyFile)
}

func (d *Device) createCA(certFile, keyFile string) (*signer, error) {
	now := d.opt.Now()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "eddy device CA " + d.opt.Hostname, Organization: []string{"eddy"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(CAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	key, der, err := issue(tmpl, nil)
	if err != nil {
		return nil, fmt.Errorf("tls: create CA: %w", err)
	}
	if err := writeFiles(certFile, keyFile, der, key); err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("tls: parse new CA: %w", err)
	}
	d.opt.Logger.Info("tls: created device CA", "file", certFile)
	return &signer{cert: cert, key: key}, nil
}

func (d *Device) createLeaf(ca *signer, dns []string, ips []net.IP, certFile, keyFile string) (*stdtls.Certificate, error) {
	now := d.opt.Now()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: d.opt.Hostname, Organization: []string{"eddy"}},
		NotBefore:   now.Add(-clockSkew),
		NotAfter:    now.Add(LeafValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    dns,
		IPAddresses: ips,
	}
	key, der, err := issue(tmpl, ca)
	if err != nil {
		return nil, fmt.Errorf("tls: create leaf: %w", err)
	}
	if err := writeFiles(certFile, keyFile, der, key); err != nil {
		return nil, err
	}
	cert, err := loadPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	d.opt.Logger.Info("tls: created device certificate", "file", certFile, "fingerprint", Fingerprint(der))
	return cert, nil
}

// issue makes a P-256 key and a certificate for it, signed by ca (nil: self-signed).
func issue(tmpl *x509.Certificate, ca *signer) (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	if tmpl.SerialNumber, err = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127)); err != nil {
		return nil, nil, err
	}
	parent, signKey := tmpl, key
	if ca != nil {
		parent, signKey = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signKey)
	return key, der, err
}

// writeFiles writes the key (0600) then the certificate, each atomically.
func writeFiles(certFile, keyFile string, der []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("tls: marshal key: %w", err)
	}
	if err := writeAtomic(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeAtomic(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// writeAtomic replaces path with data so a crash leaves the old or the new
// file, never a torn one.
func writeAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("tls: write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("tls: write %s: %w", path, err)
	}
	return nil
}

package tls

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fixedAddrs returns an Addrs func reporting ips.
func fixedAddrs(ips ...string) func() ([]net.IP, error) {
	return func() ([]net.IP, error) {
		var out []net.IP
		for _, s := range ips {
			out = append(out, net.ParseIP(s))
		}
		return out, nil
	}
}

func load(t *testing.T, o Options) *Device {
	t.Helper()
	d, err := Load(o)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return d
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGenerateCoversNamesAndVerifies(t *testing.T) {
	dir := t.TempDir()
	d := load(t, Options{Dir: dir, Hostname: "Pump-7", Addrs: fixedAddrs("192.0.2.7", "fd00::7")})
	if !d.Generated() {
		t.Fatal("Generated() = false for a generated certificate")
	}
	for name, perm := range map[string]os.FileMode{CAFileName: 0o644, CAKeyName: 0o600, CertFileName: 0o644, KeyFileName: 0o600} {
		fi, err := os.Stat(filepath.Join(dir, "tls", name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if fi.Mode().Perm() != perm {
			t.Errorf("%s mode %v, want %v", name, fi.Mode().Perm(), perm)
		}
	}
	leaf := d.Certificate().Leaf
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Fatalf("leaf key %T, want ECDSA P-256", leaf.PublicKey)
	}
	if leaf.IsCA {
		t.Error("leaf is a CA")
	}
	if got := leaf.NotAfter.Sub(leaf.NotBefore); got < 360*24*time.Hour || got > 370*24*time.Hour {
		t.Errorf("leaf validity %v, want about a year", got)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(readFile(t, d.CAFile())) {
		t.Fatal("ca.pem holds no certificate")
	}
	for _, host := range []string{"pump-7", "pump-7.local", "localhost", "127.0.0.1", "::1", "192.0.2.7", "fd00::7"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots}); err != nil {
			t.Errorf("verify for %s: %v", host, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "192.0.2.8", Roots: roots}); err == nil {
		t.Error("leaf verifies for an address it should not name")
	}
}

func TestSecondLoadReusesCertificate(t *testing.T) {
	dir := t.TempDir()
	o := Options{Dir: dir, Hostname: "dev", Addrs: fixedAddrs("192.0.2.7")}
	fp1 := load(t, o).Fingerprint()
	ca1 := readFile(t, filepath.Join(dir, "tls", CAFileName))
	d2 := load(t, o)
	if fp2 := d2.Fingerprint(); fp2 != fp1 {
		t.Fatalf("fingerprint changed on reload: %s -> %s", fp1, fp2)
	}
	if !bytes.Equal(ca1, readFile(t, filepath.Join(dir, "tls", CAFileName))) {
		t.Fatal("CA changed on reload")
	}
	if changed, err := d2.Refresh(); err != nil || changed {
		t.Fatalf("Refresh with nothing new = %v, %v; want false, nil", changed, err)
	}
}

func TestAddressChangeRenewsLeafKeepsCA(t *testing.T) {
	dir := t.TempDir()
	addrs := []string{"192.0.2.7"}
	o := Options{Dir: dir, Hostname: "dev", Addrs: func() ([]net.IP, error) { return fixedAddrs(addrs...)() }}
	d := load(t, o)
	fp1 := d.Fingerprint()
	ca1 := readFile(t, filepath.Join(dir, "tls", CAFileName))
	cfg := d.ServerConfig()

	addrs = []string{"198.51.100.9"} // the device moved networks
	changed, err := d.Refresh()
	if err != nil || !changed {
		t.Fatalf("Refresh after address change = %v, %v; want true, nil", changed, err)
	}
	if d.Fingerprint() == fp1 {
		t.Fatal("leaf not renewed")
	}
	// A server configured before the renewal serves the new leaf.
	if c, _ := cfg.GetCertificate(nil); Fingerprint(c.Leaf.Raw) != d.Fingerprint() {
		t.Fatal("ServerConfig still serves the old leaf")
	}
	if !bytes.Equal(ca1, readFile(t, filepath.Join(dir, "tls", CAFileName))) {
		t.Fatal("CA replaced on leaf renewal")
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca1)
	if _, err := d.Certificate().Leaf.Verify(x509.VerifyOptions{DNSName: "198.51.100.9", Roots: roots}); err != nil {
		t.Fatalf("renewed leaf: %v", err)
	}
	// A fresh process sees the renewed leaf on disk.
	if fp := load(t, o).Fingerprint(); fp != d.Fingerprint() {
		t.Fatalf("reload after renewal: %s, want %s", fp, d.Fingerprint())
	}
}

func TestNearExpiryRenewsLeaf(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	o := Options{Dir: dir, Hostname: "dev", Addrs: fixedAddrs(), Now: func() time.Time { return now }}
	fp1 := load(t, o).Fingerprint()
	ca1 := readFile(t, filepath.Join(dir, "tls", CAFileName))

	now = t0.Add(LeafValidity - RenewBefore - 24*time.Hour)
	if fp := load(t, o).Fingerprint(); fp != fp1 {
		t.Fatal("leaf renewed with more than RenewBefore left")
	}
	now = t0.Add(LeafValidity - RenewBefore + 24*time.Hour)
	d := load(t, o)
	if d.Fingerprint() == fp1 {
		t.Fatal("leaf not renewed with less than RenewBefore left")
	}
	if !d.Certificate().Leaf.NotAfter.After(now.Add(300 * 24 * time.Hour)) {
		t.Fatalf("renewed leaf expires %v", d.Certificate().Leaf.NotAfter)
	}
	if !bytes.Equal(ca1, readFile(t, filepath.Join(dir, "tls", CAFileName))) {
		t.Fatal("CA replaced on leaf renewal")
	}
}

func TestConfiguredFiles(t *testing.T) {
	gen := load(t, Options{Dir: t.TempDir(), Hostname: "dev", Addrs: fixedAddrs()})
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	genDir := filepath.Dir(gen.CAFile())
	os.WriteFile(cert, readFile(t, filepath.Join(genDir, CertFileName)), 0o644)
	os.WriteFile(key, readFile(t, filepath.Join(genDir, KeyFileName)), 0o600)

	d := load(t, Options{CertFile: cert, KeyFile: key})
	if d.Generated() || d.CAFile() != "" {
		t.Fatal("configured certificate reported as generated")
	}
	if d.Fingerprint() != gen.Fingerprint() {
		t.Fatal("configured certificate not the one in the files")
	}

	missing := filepath.Join(dir, "nope.pem")
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"missing cert", Options{CertFile: missing, KeyFile: key}, missing},
		{"missing key", Options{CertFile: cert, KeyFile: missing}, missing},
		{"key is a cert", Options{CertFile: cert, KeyFile: cert}, cert},
		{"missing client CA", Options{CertFile: cert, KeyFile: key, ClientCAFile: missing}, missing},
		{"client CA not PEM", Options{CertFile: cert, KeyFile: key, ClientCAFile: key}, key},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load error %v, want one naming %s", err, tc.want)
			}
		})
	}
	if _, err := Load(Options{CertFile: cert}); !errors.Is(err, ErrHalfConfigured) {
		t.Fatalf("cert without key: %v, want ErrHalfConfigured", err)
	}
}

func TestUnusableCAIsNeverReplaced(t *testing.T) {
	dir := t.TempDir()
	o := Options{Dir: dir, Hostname: "dev", Addrs: fixedAddrs()}
	load(t, o)
	caFile := filepath.Join(dir, "tls", CAFileName)
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}), 0o644)
	_, err := Load(o)
	if err == nil || !strings.Contains(err.Error(), caFile) {
		t.Fatalf("Load with a broken CA: %v, want an error naming %s", err, caFile)
	}
	if b := readFile(t, caFile); !bytes.Contains(b, []byte("CERTIFICATE")) || len(b) > 100 {
		t.Fatal("broken CA file was overwritten")
	}
}

func TestParseFingerprint(t *testing.T) {
	fp := Fingerprint([]byte("x"))
	plain := strings.ToLower(strings.ReplaceAll(fp, ":", ""))
	for _, s := range []string{fp, plain, strings.ToLower(fp), "sha256:" + plain, "SHA256=" + fp, " " + fp + "\n"} {
		b, err := ParseFingerprint(s)
		if err != nil || Fingerprint([]byte("x")) != colonHex(b) {
			t.Errorf("ParseFingerprint(%q) = %x, %v", s, b, err)
		}
	}
	for _, s := range []string{"", "zz", plain[:62], plain + "00", fp[:len(fp)-1] + "G"} {
		if _, err := ParseFingerprint(s); err == nil {
			t.Errorf("ParseFingerprint(%q) accepted", s)
		}
	}
}

func colonHex(b []byte) string {
	var parts []string
	for _, c := range b {
		parts = append(parts, strings.ToUpper(string("0123456789abcdef"[c>>4])+string("0123456789abcdef"[c&15])))
	}
	return strings.Join(parts, ":")
}

func FuzzParseFingerprint(f *testing.F) {
	fp := Fingerprint([]byte("seed"))
	for _, s := range []string{fp, strings.ReplaceAll(fp, ":", ""), "sha256:" + fp, "", "zz", ":::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseFingerprint(s)
		if err != nil {
			return
		}
		if len(b) != 32 {
			t.Fatalf("ParseFingerprint(%q) = %d bytes", s, len(b))
		}
		// What parses round-trips through the printed form.
		again, err := ParseFingerprint(colonHex(b))
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("round trip of %q: %x, %v", s, again, err)
		}
	})
}

func TestSecretStableAcrossLoads(t *testing.T) {
	dir := t.TempDir()
	d1, err := Load(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	a, err := d1.Secret("quic stateless reset", 32)
	if err != nil || len(a) != 32 {
		t.Fatalf("Secret: %x, %v", a, err)
	}
	d2, err := Load(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := d2.Secret("quic stateless reset", 32)
	c, _ := d2.Secret("session cookie", 32)
	if string(a) != string(b) {
		t.Error("the same key and purpose gave different secrets across loads")
	}
	if string(a) == string(c) {
		t.Error("different purposes gave the same secret")
	}
	other, _ := Load(Options{Dir: t.TempDir()})
	if o, _ := other.Secret("quic stateless reset", 32); string(o) == string(a) {
		t.Error("two devices derived the same secret")
	}
}

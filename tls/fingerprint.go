package tls

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// Fingerprint is the SHA-256 of der as colon-separated upper-case hex
// ("AB:CD:..."), as openssl x509 -fingerprint -sha256 prints it.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	var b strings.Builder
	b.Grow(len(sum) * 3)
	for i, c := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", c)
	}
	return b.String()
}

// ParseFingerprint accepts a SHA-256 fingerprint as colon-separated or
// plain hex, in either case, optionally prefixed "sha256:" or "SHA256=".
func ParseFingerprint(s string) ([]byte, error) {
	t := strings.TrimSpace(s)
	lower := strings.ToLower(t)
	for _, p := range []string{"sha256:", "sha256="} {
		lower = strings.TrimPrefix(lower, p)
	}
	lower = strings.ReplaceAll(lower, ":", "")
	b, err := hex.DecodeString(lower)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("tls: fingerprint %q is not 64 hex digits of SHA-256", s)
	}
	return b, nil
}

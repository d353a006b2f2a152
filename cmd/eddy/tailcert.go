package main

import (
	stdtls "crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	devtls "github.com/eddy-iot/eddy/tls"
)

// certError turns a failed TLS verification of the device into the
// configuration error it is: which certificate the device presented (its
// SHA-256 fingerprint), why it was refused, and the flags that fix it. It
// returns nil for any other error. Retrying cannot fix a certificate, so
// tail reports it once and exits.
func certError(err error, f tailFlags, host string) error {
	var leaf *x509.Certificate
	var cause error
	var cve *stdtls.CertificateVerificationError
	switch {
	case errors.As(err, &cve):
		if len(cve.UnverifiedCertificates) > 0 {
			leaf = cve.UnverifiedCertificates[0]
		}
		cause = cve.Err
	case errors.Is(err, devtls.ErrFingerprintMismatch):
		return fmt.Errorf("the device's certificate does not match --fingerprint %s (%v).\n"+
			"  Run `eddy cert` on the device and compare: a new data directory or a renewed\n"+
			"  configured certificate has a new fingerprint. Or trust its CA with --ca FILE instead",
			f.fingerprint, errorText(err))
	default:
		var ua x509.UnknownAuthorityError
		var he x509.HostnameError
		var ci x509.CertificateInvalidError
		switch {
		case errors.As(err, &ua):
			leaf, cause = ua.Cert, ua
		case errors.As(err, &he):
			leaf, cause = he.Certificate, he
		case errors.As(err, &ci):
			leaf, cause = ci.Cert, ci
		default:
			return nil
		}
	}
	fp := "(none presented)"
	if leaf != nil {
		fp = devtls.Fingerprint(leaf.Raw)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "the device's certificate cannot be verified: %v.\n", cause)
	fmt.Fprintf(&b, "  The device at %s presented a certificate with SHA-256 fingerprint\n    %s\n", host, fp)
	var he x509.HostnameError
	switch {
	case errors.As(cause, &he) && leaf != nil:
		names := append(append([]string{}, leaf.DNSNames...), ipStrings(leaf)...)
		fmt.Fprintf(&b, "  It is valid for %s, not %s: connect by one of those names,\n", strings.Join(names, ", "), host)
		fmt.Fprintf(&b, "  or pin it with --fingerprint %s once `eddy cert` on the device shows the same.", fp)
	case f.ca != "":
		fmt.Fprintf(&b, "  It is not signed by the CA in --ca %s: that file belongs to another device or\n", f.ca)
		fmt.Fprint(&b, "  another data directory. `eddy cert` on the device prints its CA file (<data>/tls/ca.pem);\n")
		fmt.Fprintf(&b, "  or pin the certificate with --fingerprint %s once `eddy cert` shows the same.", fp)
	default:
		fmt.Fprint(&b, "  Trust the device with --ca FILE, its CA (`eddy cert` on the device prints the path,\n")
		fmt.Fprint(&b, "  <data>/tls/ca.pem; copy it over), or pin this certificate with\n")
		fmt.Fprintf(&b, "    --fingerprint %s\n  once `eddy cert` on the device shows the same fingerprint.", fp)
	}
	return errors.New(b.String())
}

func ipStrings(c *x509.Certificate) []string {
	var s []string
	for _, ip := range c.IPAddresses {
		s = append(s, ip.String())
	}
	return s
}

// errorText is err's message from where the pin's own error begins,
// without the URL and protocol wrappers around it.
func errorText(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, devtls.ErrFingerprintMismatch.Error()); i >= 0 {
		return msg[i:]
	}
	return msg
}

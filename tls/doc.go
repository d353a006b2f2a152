// Package tls owns eddy's device identity on the wire: the server
// certificate, client-certificate (mTLS) trust, and the client-side trust
// settings eddy tail uses to talk to a device.
//
// Guarantees:
//
//   - With no certificate configured, a device CA (ECDSA P-256, ~20 years)
//     and a leaf certificate signed by it (~1 year) are generated once under
//     <dir>/tls/ (ca.pem, ca.key, cert.pem, key.pem; keys 0600, written
//     atomically) and reused on every later start. The leaf's SANs cover
//     the hostname, <hostname>.local, every interface address, localhost,
//     127.0.0.1 and ::1.
//   - The leaf, never the CA, is regenerated when an address it should name
//     is missing from it or when it has less than RenewBefore left, so a
//     browser or collector that trusts ca.pem keeps trusting the device.
//   - Configured cert/key files are loaded as given; a failure names the file.
//   - With a client CA configured, the server verifies client certificates
//     signed by it (tls.VerifyClientCertIfGiven): a verified certificate is
//     auth, and a client without one can still use a token.
//   - Fingerprints are SHA-256 over the leaf's DER, printed as colon-separated
//     upper-case hex; ParseFingerprint also accepts plain hex. Pinning
//     (ClientOptions.Fingerprint) checks the leaf's fingerprint in a real
//     verification callback and only then skips the CA check.
package tls

package main

import (
	"fmt"
	"io"

	"github.com/eddy-iot/eddy/config"
	"github.com/eddy-iot/eddy/server"
	devtls "github.com/eddy-iot/eddy/tls"
)

// certCmd prints the device certificate's fingerprint and the CA file a
// browser or `eddy tail --ca` should trust, generating them as `eddy run`
// would when they do not exist yet.
func certCmd(args []string, stdout, stderr io.Writer) int {
	cfg, rc := adminConfig(args, stderr)
	if cfg == nil {
		return rc
	}
	dev, err := devtls.Load(devtls.Options{Dir: cfg.Storage.Dir, CertFile: cfg.TLS.Cert, KeyFile: cfg.TLS.Key, ClientCAFile: cfg.TLS.ClientCA})
	if err != nil {
		fmt.Fprintln(stderr, "eddy cert:", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "fingerprint: %s\n", dev.Fingerprint())
	if ca := dev.CAFile(); ca != "" {
		fmt.Fprintf(stdout, "ca: %s\n", ca)
	}
	return exitOK
}

// tokenCmd prints the first configured token, or the generated one.
func tokenCmd(args []string, stdout, stderr io.Writer) int {
	cfg, rc := adminConfig(args, stderr)
	if cfg == nil {
		return rc
	}
	if len(cfg.Auth.Tokens) > 0 {
		fmt.Fprintln(stdout, cfg.Auth.Tokens[0])
		return exitOK
	}
	tok, err := server.LoadOrCreateToken(cfg.Storage.Dir)
	if err != nil {
		fmt.Fprintln(stderr, "eddy token:", err)
		return exitFail
	}
	fmt.Fprintln(stdout, tok)
	return exitOK
}

// adminConfig reads the config the daemon would (flags --config and
// --data); on failure it returns nil and the exit status.
func adminConfig(args []string, stderr io.Writer) (*config.Config, int) {
	f, err := parseRunFlags(args, stderr)
	if err != nil {
		return nil, exitConfig
	}
	cfg, _, err := loadConfig(f)
	if err != nil {
		fmt.Fprintln(stderr, "eddy:", err)
		return nil, exitConfig
	}
	return cfg, exitOK
}

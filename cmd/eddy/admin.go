package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/eddy-iot/eddy/config"
	"github.com/eddy-iot/eddy/server"
	devtls "github.com/eddy-iot/eddy/tls"
)

const adminNotes = `
Reads what the running daemon uses and never creates anything: eddy run
generates the token and certificate in its data directory when it first
starts. Point this command at the daemon's data with --data DIR, or
--config FILE (its storage.dir), or STATE_DIRECTORY=DIR in the environment
(the .deb's daemon: --data /var/lib/eddy). Without them it reads
` + config.DefaultPath + ` when it exists, else the default data directory
./eddy-data in the current directory. Exit status 1 when there is nothing
to read there.`

// certCmd prints the device certificate's fingerprint and the CA file a
// browser or `eddy tail --ca` should trust.
func certCmd(args []string, stdout, stderr io.Writer) int {
	a, rc := adminConfig("cert", args, stdout, stderr)
	if a == nil {
		return rc
	}
	certFile := a.cfg.TLS.Cert
	caFile := ""
	if certFile == "" {
		if !a.dataDirExists(stderr) {
			return exitFail
		}
		certFile = filepath.Join(a.cfg.Storage.Dir, "tls", devtls.CertFileName)
		caFile = filepath.Join(a.cfg.Storage.Dir, "tls", devtls.CAFileName)
	}
	fp, err := certFingerprint(certFile)
	if errors.Is(err, fs.ErrNotExist) && a.cfg.TLS.Cert == "" {
		fmt.Fprintf(stderr, "eddy cert: no certificate at %s: eddy run generates it there when it first starts.\n%s", abs(certFile), a.where())
		return exitFail
	}
	if err != nil {
		fmt.Fprintf(stderr, "eddy cert: %v%s\n", err, permissionHint(err, a))
		return exitFail
	}
	fmt.Fprintf(stdout, "fingerprint: %s\n", fp)
	if caFile != "" {
		if _, err := os.Stat(caFile); err == nil {
			fmt.Fprintf(stdout, "ca: %s\n", abs(caFile))
		}
	}
	return exitOK
}

// certFingerprint is the SHA-256 fingerprint of the first certificate
// in a PEM file.
func certFingerprint(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read certificate: %w", err)
	}
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return "", fmt.Errorf("certificate %s: no PEM CERTIFICATE block in it", path)
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
			return "", fmt.Errorf("certificate %s: %w", path, err)
		}
		return devtls.Fingerprint(blk.Bytes), nil
	}
}

// tokenCmd prints the first configured token, or the one eddy run
// generated in the data directory.
func tokenCmd(args []string, stdout, stderr io.Writer) int {
	a, rc := adminConfig("token", args, stdout, stderr)
	if a == nil {
		return rc
	}
	if len(a.cfg.Auth.Tokens) > 0 {
		fmt.Fprintln(stdout, a.cfg.Auth.Tokens[0])
		return exitOK
	}
	if a.cfg.TLS.ClientCA != "" {
		fmt.Fprintf(stderr, "eddy token: %s sets no auth.tokens and accepts client certificates (tls.client_ca): there is no token to print\n", a.path)
		return exitFail
	}
	if !a.dataDirExists(stderr) {
		return exitFail
	}
	path := filepath.Join(a.cfg.Storage.Dir, server.TokenFileName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(stderr, "eddy token: no token at %s: eddy run generates it there when it first starts.\n%s", abs(path), a.where())
		return exitFail
	}
	if err != nil {
		fmt.Fprintf(stderr, "eddy token: %v%s\n", err, permissionHint(err, a))
		return exitFail
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		fmt.Fprintf(stderr, "eddy token: %s is empty; delete it and restart eddy run to generate a new token\n", abs(path))
		return exitFail
	}
	fmt.Fprintln(stdout, tok)
	return exitOK
}

// adminCfg is the config a reading command found, and how it found it.
type adminCfg struct {
	name  string // the command
	cfg   *config.Config
	flags runFlags
	path  string // the config file read; "" for the embedded defaults
}

// adminConfig reads the config the daemon would (flags --config and
// --data); on failure it returns nil and the exit status.
func adminConfig(name string, args []string, stdout, stderr io.Writer) (*adminCfg, int) {
	var f runFlags
	fs := newFlagSet(name, stderr)
	addConfigFlags(fs, &f)
	pos, err := parseFlags(fs, name, adminNotes, args, stdout, stderr)
	if err != nil {
		return nil, flagsExit(err)
	}
	if len(pos) > 0 {
		return nil, usageError(stderr, name, fmt.Sprintf("unexpected argument %q", pos[0]))
	}
	cfg, path, err := loadConfig(f)
	if err != nil {
		printConfigError(stderr, name, err)
		return nil, exitConfig
	}
	return &adminCfg{name: name, cfg: cfg, flags: f, path: path}, exitOK
}

// dataDirExists reports whether the data directory exists, explaining
// where it looked when it does not.
func (a *adminCfg) dataDirExists(stderr io.Writer) bool {
	fi, err := os.Stat(a.cfg.Storage.Dir)
	if err == nil && fi.IsDir() {
		return true
	}
	why := "it does not exist"
	switch {
	case err == nil:
		why = "it is not a directory"
	case !errors.Is(err, fs.ErrNotExist):
		why = err.Error()
	}
	fmt.Fprintf(stderr, "eddy %s: no data directory at %s: %s.\n%s", a.name, abs(a.cfg.Storage.Dir), why, a.where())
	return false
}

// where explains which data directory was used and why, and how to point
// the command at the daemon's.
func (a *adminCfg) where() string {
	var src string
	switch {
	case a.flags.data != "":
		src = "--data"
	case a.path != "":
		src = "storage.dir in " + a.path
	case os.Getenv("STATE_DIRECTORY") != "":
		src = "$STATE_DIRECTORY"
	default:
		wd, _ := os.Getwd()
		src = "the default ./eddy-data, in the current directory " + wd
	}
	return fmt.Sprintf("  The data directory came from %s.\n"+
		"  Point eddy %s at the running daemon's data: --data DIR (the .deb's: /var/lib/eddy),\n"+
		"  --config FILE (its storage.dir), or STATE_DIRECTORY=DIR. The daemon logs its data\n"+
		"  directory at start (\"ring log open\", path).\n", src, a.name)
}

// permissionHint explains a permission error: the daemon's files belong
// to its user.
func permissionHint(err error, a *adminCfg) string {
	if !errors.Is(err, fs.ErrPermission) {
		return ""
	}
	return fmt.Sprintf("\n  The daemon's files are readable by its user only: run eddy %s as that user or with sudo.", a.name)
}

// abs makes a path absolute for messages, so that "./eddy-data" says
// which directory it meant.
func abs(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

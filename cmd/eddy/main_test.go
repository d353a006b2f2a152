package main

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if rc := realMain([]string{"version"}, &out, &errb); rc != exitOK {
		t.Fatalf("rc %d", rc)
	}
	if !strings.HasPrefix(out.String(), "eddy ") || !strings.Contains(out.String(), runtime.Version()) || !strings.Contains(out.String(), runtime.GOARCH) {
		t.Errorf("version output %q", out.String())
	}
}

func TestBadConfigExits2NamingKey(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ doc, want string }{
		{"[server]\nlisten = \":8443\"\nbogus = 1\n", "bad.toml:3: server.bogus: unknown key"},
		{"[storage]\nsync_interval = \"fast\"\n", "bad.toml:2: storage.sync_interval"},
		{"[[mqtt]]\nbroker = \"tcp://127.0.0.1:1883\"\ntopics = [\"a/#/b\"]\n", "mqtt[0].topics"},
	}
	for _, tt := range tests {
		path := filepath.Join(dir, "bad.toml")
		if err := os.WriteFile(path, []byte(tt.doc), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"run", "--config", path, "--data", dir}, {"check-config", path}} {
			var out, errb bytes.Buffer
			if rc := realMain(args, &out, &errb); rc != exitConfig {
				t.Errorf("%v: rc %d, want %d", args, rc, exitConfig)
			}
			if !strings.Contains(errb.String(), tt.want) {
				t.Errorf("%v: stderr %q does not contain %q", args, errb.String(), tt.want)
			}
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{nil, {"frobnicate"}, {"run", "--nope"}, {"run", "extra"}, {"check-config"}} {
		var out, errb bytes.Buffer
		if rc := realMain(args, &out, &errb); rc != exitConfig {
			t.Errorf("%v: rc %d, want %d", args, rc, exitConfig)
		}
	}
}

func TestTokenAndCert(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if rc := realMain(args, &out, &errb); rc != exitOK {
			t.Fatalf("%v: rc %d: %s", args, rc, errb.String())
		}
		return strings.TrimSpace(out.String())
	}
	tok := run("token", "--data", dir)
	if len(tok) < 40 || run("token", "--data", dir) != tok {
		t.Errorf("token %q is short or not stable", tok)
	}
	if fi, err := os.Stat(filepath.Join(dir, "token")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("token file: %v %v", fi, err)
	}
	cert := run("cert", "--data", dir)
	if !strings.HasPrefix(cert, "fingerprint: ") || strings.Count(cert, ":") < 32 || !strings.Contains(cert, filepath.Join(dir, "tls", "ca.pem")) {
		t.Errorf("cert output %q", cert)
	}
	if run("cert", "--data", dir) != cert {
		t.Error("the certificate changed between two calls")
	}
	cfg := filepath.Join(dir, "eddy.toml")
	os.WriteFile(cfg, []byte("[auth]\ntokens = [\"configured-token-0123456789\"]\n[storage]\ndir = \""+dir+"\"\n"), 0o600)
	if got := run("token", "--config", cfg); got != "configured-token-0123456789" {
		t.Errorf("token with a configured token = %q", got)
	}
}

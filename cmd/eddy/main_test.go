package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/eddy-iot/eddy/config"
	"github.com/eddy-iot/eddy/server"
	devtls "github.com/eddy-iot/eddy/tls"
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
	for _, args := range [][]string{nil, {"frobnicate"}, {"run", "--nope"}, {"run", "extra"}, {"check-config"},
		{"check-config", "a", "b"}, {"token", "extra"}, {"cert", "--nope"}, {"tail"}, {"tail", "--last-event-id", "x", "https://h"},
		{"version", "extra"}, {"help", "frobnicate"}} {
		var out, errb bytes.Buffer
		if rc := realMain(args, &out, &errb); rc != exitConfig {
			t.Errorf("%v: rc %d, want %d", args, rc, exitConfig)
		}
		if errb.Len() == 0 {
			t.Errorf("%v: nothing on stderr", args)
		}
	}
}

// TestHelp: every subcommand answers -h, --help and `eddy help NAME` with
// its own usage on stdout and exit 0; `eddy help` and `eddy` alone list
// every subcommand, one line each.
func TestHelp(t *testing.T) {
	cmds := commands()
	for _, c := range cmds {
		if c.run == nil {
			continue
		}
		for _, args := range [][]string{{c.name, "-h"}, {c.name, "--help"}, {c.name, "-help"}, {"help", c.name}} {
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				var out, errb bytes.Buffer
				if rc := realMain(args, &out, &errb); rc != exitOK {
					t.Fatalf("rc %d, want 0; stderr %q", rc, errb.String())
				}
				if errb.Len() > 0 {
					t.Errorf("stderr %q, want nothing", errb.String())
				}
				if want := "usage: eddy " + c.name + " "; !strings.HasPrefix(out.String(), want) {
					t.Errorf("stdout %q does not start with %q", out.String(), want)
				}
				if !strings.Contains(out.String(), upperFirst(c.summary)) {
					t.Errorf("usage does not say what %s does: %q", c.name, out.String())
				}
			})
		}
	}
	for _, args := range [][]string{nil, {"help"}, {"--help"}, {"-h"}, {"help", "help"}, {"help", "--help"}} {
		var out, errb bytes.Buffer
		rc := realMain(args, &out, &errb)
		text, want := out.String(), exitOK
		if args == nil {
			text, want = errb.String(), exitConfig // a usage error, but the same list
		}
		if rc != want {
			t.Errorf("%q: rc %d, want %d", args, rc, want)
		}
		for _, c := range cmds {
			if !strings.Contains(text, "\n  "+c.name+" ") || !strings.Contains(text, c.summary+"\n") {
				t.Errorf("%q: the list lacks %q on one line:\n%s", args, c.name, text)
			}
		}
	}
}

// TestReadingCommandsNeverCreate: eddy token and eddy cert pointed at a
// data directory the daemon never used say where they looked and how to
// point them at the daemon's, exit 1, and create nothing.
func TestReadingCommandsNeverCreate(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nonexistent")
	empty := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "eddy.toml")
	os.WriteFile(cfg, []byte("[storage]\ndir = \""+missing+"\"\n"), 0o600)
	wd, _ := os.Getwd()
	for _, tt := range []struct {
		args []string
		env  string // STATE_DIRECTORY
		want []string
	}{
		{[]string{"token", "--data", missing}, "", []string{"no data directory at " + missing, "came from --data"}},
		{[]string{"cert", "--data", missing}, "", []string{"no data directory at " + missing, "came from --data"}},
		{[]string{"token", "--data", empty}, "", []string{"no token at " + filepath.Join(empty, "token")}},
		{[]string{"cert", "--data", empty}, "", []string{"no certificate at " + filepath.Join(empty, "tls", "cert.pem")}},
		{[]string{"token", "--config", cfg}, "", []string{"no data directory at " + missing, "storage.dir in " + cfg}},
		{[]string{"cert"}, missing, []string{"no data directory at " + missing, "$STATE_DIRECTORY"}},
		{[]string{"token"}, "", []string{"no data directory at " + filepath.Join(wd, "eddy-data"), "the default ./eddy-data"}},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Setenv("STATE_DIRECTORY", tt.env)
			if _, err := os.Stat("/etc/eddy/eddy.toml"); err == nil && !slices.Contains(tt.args, "--config") {
				t.Skip("/etc/eddy/eddy.toml exists on this machine")
			}
			var out, errb bytes.Buffer
			if rc := realMain(tt.args, &out, &errb); rc != exitFail {
				t.Fatalf("rc %d, want %d; stdout %q stderr %q", rc, exitFail, out.String(), errb.String())
			}
			for _, w := range append(tt.want, "--data DIR", "--config FILE", "STATE_DIRECTORY=DIR") {
				if !strings.Contains(errb.String(), w) {
					t.Errorf("stderr does not say %q:\n%s", w, errb.String())
				}
			}
		})
	}
	if _, err := os.Stat(missing); err == nil {
		t.Error("a reading command created the data directory")
	}
	if entries, _ := os.ReadDir(empty); len(entries) > 0 {
		t.Errorf("a reading command created %v", entries)
	}
	if _, err := os.Stat("eddy-data"); err == nil {
		t.Error("a reading command created ./eddy-data")
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
	// What eddy run creates at its first start.
	want, err := server.LoadOrCreateToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := devtls.Load(devtls.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if tok := run("token", "--data", dir); tok != want {
		t.Errorf("token %q, want %q", tok, want)
	}
	cert := run("cert", "--data", dir)
	if want := "fingerprint: " + dev.Fingerprint() + "\nca: " + filepath.Join(dir, "tls", "ca.pem"); cert != want {
		t.Errorf("cert output %q, want %q", cert, want)
	}
	cfg := filepath.Join(dir, "eddy.toml")
	os.WriteFile(cfg, []byte("[auth]\ntokens = [\"configured-token-0123456789\"]\n[storage]\ndir = \""+dir+"\"\n"), 0o600)
	if got := run("token", "--config", cfg); got != "configured-token-0123456789" {
		t.Errorf("token with a configured token = %q", got)
	}
	if got := run("cert", "--config", cfg); got != cert {
		t.Errorf("cert with --config = %q, want %q", got, cert)
	}
}

// TestWarnNothingRecorded: a config with neither sensors nor MQTT is
// legal, and eddy run says at start that it will record nothing.
func TestWarnNothingRecorded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "empty.toml")
	os.WriteFile(path, []byte("[server]\nlisten = \"127.0.0.1:8443\"\n"), 0o600)
	var out, errb bytes.Buffer
	if rc := realMain([]string{"check-config", path}, &out, &errb); rc != exitOK {
		t.Fatalf("a config without sensors or MQTT is refused: %s", errb.String())
	}
	cfg, _, err := loadConfig(runFlags{config: path})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	warnNothingRecorded(cfg, path, slog.New(slog.NewTextHandler(&logs, nil)))
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "nothing will be recorded") {
		t.Errorf("no warning: %q", logs.String())
	}
	logs.Reset()
	warnNothingRecorded(config.Default(), "", slog.New(slog.NewTextHandler(&logs, nil)))
	if logs.Len() > 0 {
		t.Errorf("warned about the defaults, which record the system sensor: %q", logs.String())
	}
}

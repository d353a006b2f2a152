package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	devtls "github.com/eddy-iot/eddy/tls"
)

// TestE2ETailUnverifiableCert: a certificate eddy tail cannot verify is a
// configuration error, reported once with the fingerprint the device
// presented and the flags that fix it (exit 1), on HTTP/2 and HTTP/3; the
// fix it names works.
func TestE2ETailUnverifiableCert(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	base := fmt.Sprintf("https://127.0.0.1:%d", port)
	d := startEddy(t, "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--data", dir)
	waitHealthy(t, d, base, dir)
	dev, err := devtls.Load(devtls.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	fp := dev.Fingerprint()
	token, _ := os.ReadFile(filepath.Join(dir, "token"))
	tok := strings.TrimSpace(string(token))
	otherCA := filepath.Join(t.TempDir(), "other")
	if _, err := devtls.Load(devtls.Options{Dir: otherCA}); err != nil {
		t.Fatal(err)
	}
	wrongPin := strings.Repeat("AB:", 31) + "AB"

	tail := func(args ...string) (int, string, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, eddyBin, append([]string{"tail", base, "--token", tok, "--topic", "system/#"}, args...)...)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		cmd.Run()
		if ctx.Err() != nil {
			t.Fatalf("tail %v still running after 20 s; stderr:\n%s", args, errb.String())
		}
		return cmd.ProcessState.ExitCode(), out.String(), errb.String()
	}
	for _, proto := range [][]string{nil, {"--http3"}} {
		for _, tt := range []struct {
			name string
			args []string
			want []string
		}{
			{"no trust", nil, []string{"--ca FILE", "--fingerprint " + fp, "eddy cert"}},
			{"another device's CA", []string{"--ca", filepath.Join(otherCA, "tls", "ca.pem")}, []string{"not signed by the CA in --ca", "--fingerprint " + fp}},
			{"wrong pin", []string{"--fingerprint", wrongPin}, []string{"does not match --fingerprint " + wrongPin, "got " + fp, "--ca FILE"}},
		} {
			t.Run(fmt.Sprintf("%s %v", tt.name, proto), func(t *testing.T) {
				rc, out, errs := tail(append(tt.args, proto...)...)
				if rc != exitFail {
					t.Errorf("exit %d, want %d", rc, exitFail)
				}
				if out != "" {
					t.Errorf("stdout %q", out)
				}
				for _, w := range tt.want {
					if !strings.Contains(errs, w) {
						t.Errorf("stderr does not say %q:\n%s", w, errs)
					}
				}
				if strings.Contains(errs, "reconnecting") || strings.Count(errs, "eddy tail:") != 1 {
					t.Errorf("not reported exactly once:\n%s", errs)
				}
			})
		}
	}
	// A wrong token is the other configuration error: once, exit 1.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, eddyBin, "tail", base, "--ca", dev.CAFile(), "--token", "wrong-token-0123456789").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitFail || strings.Count(string(out), "eddy tail:") != 1 ||
		!strings.Contains(string(out), "refused the token") || strings.Contains(string(out), "not retrying") {
		t.Errorf("wrong token: %v\n%s", err, out)
	}
	// The fixes it names work: pinned, tail prints records until stopped.
	for _, args := range [][]string{{"--fingerprint", fp}, {"--ca", dev.CAFile(), "--http3"}} {
		tp := startTail(t, append([]string{base, "--token", tok, "--topic", "system/#"}, args...)...)
		waitUntil(t, 10*time.Second, fmt.Sprintf("tail %v printing", args), func() bool { return len(tp.snapshot()) > 0 })
		tp.stop(t)
	}
}

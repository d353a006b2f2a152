package config

import (
	"errors"
	"strings"
	"testing"
)

// TestParseReportsEveryError: one pass over a file names every problem
// in it, in file order, each with file:line and key; a value of the wrong
// type is reported once, not again as a missing value.
func TestParseReportsEveryError(t *testing.T) {
	doc := `[server]
listen = "nowhere"
bogus = 1

[storage]
sync_interval = "fast"
max_bytes = [
  1,
]
max_age = "-1h"

[auth]
tokens = ["short", "0123456789abcdef0123"]

[stream]
client_buffer = "many"
heartbeat = "1ms"

[[mqtt]]
broker = "ftp://x"
topics = ["a/#/b"]
qos = 7

[[sensor]]
kind = "system"
interval = "0.1ms"

[[sensor]]
kind = "warp-drive"
`
	_, err := Parse("eddy.toml", []byte(doc))
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("Parse: %v (%T), want Errors", err, err)
	}
	want := []string{
		"config: eddy.toml:2: server.listen: ",
		"config: eddy.toml:3: server.bogus: unknown key",
		"config: eddy.toml:6: storage.sync_interval: ",
		"config: eddy.toml:7: storage.max_bytes: ",
		"config: eddy.toml:10: storage.max_age: must be positive",
		"config: eddy.toml:13: auth.tokens[0]: a token must be at least 16 characters",
		"config: eddy.toml:16: stream.client_buffer: ",
		"config: eddy.toml:17: stream.heartbeat: must be at least 100ms",
		"config: eddy.toml:20: mqtt[0].broker: ",
		"config: eddy.toml:21: mqtt[0].topics[0]: ",
		"config: eddy.toml:22: mqtt[0].qos: 7 is not 0, 1 or 2",
		"config: eddy.toml:26: sensor[0].interval: ",
		"config: eddy.toml:29: sensor[1].kind: unknown sensor kind",
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d errors, want %d:\n%s", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("error %d: %q, want it to start with %q", i, lines[i], w)
		}
	}
	var first *Error
	if !errors.As(err, &first) || first.Key != "server.listen" {
		t.Errorf("errors.As finds %+v, want the first error", first)
	}
}

// TestParseSyntaxErrorAlone: a file that is not TOML gets one error,
// where parsing stopped.
func TestParseSyntaxErrorAlone(t *testing.T) {
	_, err := Parse("eddy.toml", []byte("[server]\nlisten = \":8443\"\nhttp3 = tru\nbogus = 1\n"))
	if err == nil || strings.Count(err.Error(), "\n") != 0 || !strings.Contains(err.Error(), "eddy.toml:3") {
		t.Errorf("syntax error: %v", err)
	}
}

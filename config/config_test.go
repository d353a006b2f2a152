package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	t.Setenv("STATE_DIRECTORY", "")
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	if c.Server.Listen != ":8443" || !c.Server.HTTP3 || c.Storage.Dir != "./eddy-data" ||
		c.Storage.MaxBytes != 256<<20 || c.Storage.SyncInterval.Duration != 100*time.Millisecond || c.Server.MemoryLimit != 128<<20 ||
		c.Stream.ClientBuffer != 1024 || c.Stream.Heartbeat.Duration != 15*time.Second ||
		len(c.Sensors) != 1 || c.Sensors[0].Kind != "system" || len(c.MQTT) != 0 {
		t.Errorf("unexpected defaults: %+v", c)
	}
	t.Setenv("STATE_DIRECTORY", "/var/lib/eddy:/other")
	if d := Default().Storage.Dir; d != "/var/lib/eddy" {
		t.Errorf("under systemd dir = %q", d)
	}
}

func TestParseDesignExample(t *testing.T) {
	doc := `
[server]
listen = "127.0.0.1:8443"
http3 = true

[storage]
dir = "/var/lib/eddy"
max_bytes = "256MiB"
max_age = "168h"
sync_interval = "100ms"

[tls]
cert = ""
key = ""
client_ca = ""

[auth]
tokens = ["0123456789abcdef0123"]

[stream]
client_buffer = 1024
heartbeat = "15s"

[[mqtt]]
broker = "tcp://127.0.0.1:1883"
topics = ["sensors/#"]
qos = 1
client_id = "eddy-lab-1"

[[sensor]]
kind = "system"
interval = "1s"
`
	c, err := Parse("eddy.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if c.Server.Listen != "127.0.0.1:8443" || c.Storage.MaxBytes != 256<<20 || c.Storage.MaxAge.Duration != 168*time.Hour ||
		len(c.MQTT) != 1 || c.MQTT[0].QoS == nil || *c.MQTT[0].QoS != 1 || len(c.Sensors) != 1 || c.Auth.Tokens[0] != "0123456789abcdef0123" {
		t.Errorf("parsed %+v", c)
	}
}

func TestParseErrorsNameKeyAndLine(t *testing.T) {
	tests := []struct {
		doc      string
		key      string
		line     int
		contains string
	}{
		{"[server]\nlisten = \":8443\"\nbogus = 1\n", "server.bogus", 3, "unknown key"},
		{"[nope]\n", "nope", 1, "unknown key"},
		{"[server]\nhttp3 = \"yes\"\n", "server.http3", 2, "bool"},
		{"[storage]\nmax_bytes = \"12MiBx\"\n", "storage.max_bytes", 2, "size"},
		{"[storage]\nmax_bytes = 1000\n", "storage.max_bytes", 2, "too small"},
		{"[storage]\nmax_age = \"3 days\"\n", "storage.max_age", 2, "duration"},
		{"[storage]\n\nsync_interval = \"2m\"\n", "storage.sync_interval", 3, "out of range"},
		{"[stream]\nclient_buffer = 1\n", "stream.client_buffer", 2, "out of range"},
		{"[server]\nlisten = \"8443\"\n", "server.listen", 2, "host:port"},
		{"[server]\nlisten = \":99999\"\n", "server.listen", 2, "port"},
		{"[tls]\ncert = \"/x.pem\"\n", "tls.key", 1, "together"},
		{"[auth]\ntokens = [\"short\"]\n", "auth.tokens[0]", 2, "16"},
		{"[[mqtt]]\nbroker = \"tcp://h:1883\"\ntopics = [\"a\"]\nqos = 3\n", "mqtt[0].qos", 4, "0, 1 or 2"},
		{"[[sensor]]\nkind = \"laser\"\n", "sensor[0].kind", 2, "laser"},
		{"[[mqtt]]\nbroker = \"tcp://h:1883\"\ntopics = [\"a\"]\nack_delay = \"2m\"\n", "mqtt[0].ack_delay", 4, "out of range"},
		{"[[mqtt]]\nbroker = \"tcp://h:1883\"\ntopics = [\"a\"]\nclient_id = \"x\"\n[[mqtt]]\nbroker = \"tcp://h:1883\"\ntopics = [\"b\"]\nclient_id = \"x\"\n", "mqtt[1].client_id", 8, "used twice"},
		{"[server]\nmemory_limit = \"16MiB\"\n", "server.memory_limit", 2, "too small"},
		{"[server\n", "", 1, "]"},
	}
	for _, tt := range tests {
		_, err := Parse("eddy.toml", []byte(tt.doc))
		var ce *Error
		if !errors.As(err, &ce) {
			t.Errorf("%q: error %v is not a *config.Error", tt.doc, err)
			continue
		}
		if ce.Key != tt.key || ce.Line != tt.line || !strings.Contains(ce.Error(), tt.contains) || ce.File != "eddy.toml" {
			t.Errorf("%q: got key %q line %d: %v; want key %q line %d containing %q", tt.doc, ce.Key, ce.Line, err, tt.key, tt.line, tt.contains)
		}
	}
}

func TestMaxBytes32(t *testing.T) {
	c := Default()
	c.Storage.MaxBytes = 2 << 30
	err := c.Validate()
	if is32bit() {
		if err == nil || !strings.Contains(err.Error(), "32-bit") {
			t.Errorf("2GiB accepted on 32-bit: %v", err)
		}
	} else if err != nil {
		t.Errorf("2GiB refused on 64-bit: %v", err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]Size{"1024": 1024, "64MiB": 64 << 20, "1GiB": 1 << 30, "500kB": 500000, "2 MiB": 2 << 20, "10B": 10} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1XB", "abc", "NaN"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("[server]\nlisten=\":8443\"\n"))
	f.Add([]byte("[[mqtt]]\nbroker=\"tcp://a:1\"\ntopics=[\"#\"]\n"))
	f.Add([]byte("[storage]\nmax_bytes=\"1GiB\"\n"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		c, err := Parse("fuzz.toml", doc)
		if err == nil {
			if verr := c.Validate(); verr != nil {
				t.Fatalf("Parse accepted a config that Validate refuses: %v", verr)
			}
			return
		}
		var ce *Error
		if !errors.As(err, &ce) {
			t.Fatalf("error %v is not a *config.Error", err)
		}
	})
}

func TestNestedArrayTablePositions(t *testing.T) {
	doc := "[[sensor]]\nkind = \"system\"\n\n[[sensor]]\nkind = \"ads1115\"\nname = \"adc\"\n[[sensor.channel]]\ninput = 0\n[[sensor.channel]]\ninput = 1\ngain = 3\n"
	pos, err := indexPositions([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	for key, line := range map[string]int{"sensor[0].kind": 2, "sensor[1].kind": 5, "sensor[1].channel[0].input": 8, "sensor[1].channel[1].gain": 11, "sensor[1].channel[1]": 9} {
		if got := pos.line(key); got != line {
			t.Errorf("line(%q) = %d, want %d", key, got, line)
		}
	}
}

package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMQTTDefaultsAndMapping(t *testing.T) {
	doc := `
[[mqtt]]
broker = "tcp://127.0.0.1:1883"
topics = ["sensors/#"]

[[mqtt.map]]
topic = "sensors/+/env"
fields = { t = "°C", h = "%", "wind.speed" = "m/s" }

[[mqtt.map]]
topic = "sensors/+/pressure"
unit = "bar"

[[mqtt]]
broker = "ws://127.0.0.1:9001/mqtt"
topics = ["plant/+/status"]
qos = 0
client_id = "eddy-lab-1"
keepalive = "10s"
max_payload = "1KiB"
max_topics = 50
reconnect_max = "5s"
ack_batch = 0
`
	c, err := Parse("eddy.toml", []byte(doc))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if len(c.MQTT) != 2 {
		t.Fatalf("got %d [[mqtt]] blocks, want 2", len(c.MQTT))
	}
	a, b := c.MQTT[0], c.MQTT[1]
	host, _ := os.Hostname()
	if a.ClientID != "eddy-"+host {
		t.Errorf("default client_id = %q, want eddy-%s", a.ClientID, host)
	}
	if a.QoSLevel() != 1 || a.Keepalive.Duration != 30*time.Second || a.MaxPayload != 64<<10 ||
		a.MaxTopics != 10000 || a.ReconnectMax.Duration != 30*time.Second || *a.AckBatch != 10 {
		t.Errorf("defaults not applied: %+v", a)
	}
	if len(a.Map) != 2 || a.Map[0].Fields["wind.speed"] != "m/s" || a.Map[0].Fields["t"] != "°C" || a.Map[1].Unit != "bar" {
		t.Errorf("mapping = %+v", a.Map)
	}
	if b.QoSLevel() != 0 || b.ClientID != "eddy-lab-1" || b.Keepalive.Duration != 10*time.Second ||
		b.MaxPayload != 1024 || b.MaxTopics != 50 || b.ReconnectMax.Duration != 5*time.Second || *b.AckBatch != 0 {
		t.Errorf("explicit values lost: %+v", b)
	}
	// A second block with the default client id must not take over the
	// first one's session on the same broker.
	var d MQTT
	d.SetDefaults(1)
	if d.ClientID == a.ClientID {
		t.Errorf("blocks 0 and 1 share the default client id %q", d.ClientID)
	}
}

func TestMQTTValidationErrors(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	head := "[[mqtt]]\n" // line 1
	ok := "broker = \"tcp://127.0.0.1:1883\"\ntopics = [\"a/#\"]\n"
	// Lines: 1 [[mqtt]], 2 broker, 3 topics, 4 the line under test.
	tests := []struct {
		name, body string
		key        string
		line       int
		msg        string
	}{
		{"bad url", "broker = \"not a url\"\ntopics = [\"a\"]\n", "mqtt[0].broker", 2, "broker URL"},
		{"bad scheme", "broker = \"http://h:1\"\ntopics = [\"a\"]\n", "mqtt[0].broker", 2, "scheme"},
		{"no port", "broker = \"tcp://h\"\ntopics = [\"a\"]\n", "mqtt[0].broker", 2, "no port"},
		{"no topics", "broker = \"tcp://h:1\"\n", "mqtt[0].topics", 1, "at least one"},
		{"bad filter", "broker = \"tcp://h:1\"\ntopics = [\"a/#\", \"a/#/b\"]\n", "mqtt[0].topics[1]", 3, "'#' must be the last level"},
		{"qos", ok + "qos = 3\n", "mqtt[0].qos", 4, "not 0, 1 or 2"},
		{"password alone", ok + "password = \"p\"\n", "mqtt[0].password", 4, "needs a username"},
		{"cert without key", "broker = \"ssl://h:8883\"\ntopics = [\"a\"]\ncert_file = \"" + ca + "\"\n", "mqtt[0].key_file", 1, "together"},
		{"tls on tcp", ok + "ca_file = \"" + ca + "\"\n", "mqtt[0].broker", 2, "not a TLS URL"},
		{"ca missing", "broker = \"ssl://h:8883\"\ntopics = [\"a\"]\nca_file = \"" + missing + "\"\n", "mqtt[0].ca_file", 4, "no such file"},
		{"keepalive", ok + "keepalive = \"10ms\"\n", "mqtt[0].keepalive", 4, "out of range"},
		{"max_payload", ok + "max_payload = \"2MiB\"\n", "mqtt[0].max_payload", 4, "out of range"},
		{"max_topics", ok + "max_topics = -1\n", "mqtt[0].max_topics", 4, "out of range"},
		{"reconnect_max", ok + "reconnect_max = \"2h\"\n", "mqtt[0].reconnect_max", 4, "out of range"},
		{"ack_batch", ok + "ack_batch = -1\n", "mqtt[0].ack_batch", 4, "out of range"},
		{"unknown key", ok + "qos_level = 1\n", "mqtt[0].qos_level", 4, "unknown key"},
		// Lines 4 on: [[mqtt.map]], then its keys.
		{"map without topic", ok + "[[mqtt.map]]\nunit = \"bar\"\n", "mqtt[0].map[0].topic", 4, "is required"},
		{"map bad filter", ok + "[[mqtt.map]]\ntopic = \"a+\"\n", "mqtt[0].map[0].topic", 5, "whole level"},
		{"map bad path", ok + "[[mqtt.map]]\ntopic = \"a\"\nfields = { \"x..y\" = \"\" }\n", "mqtt[0].map[0].fields.x..y", 6, "empty segment"},
		{"map slash path", ok + "[[mqtt.map]]\ntopic = \"a\"\nfields = { \"x/y\" = \"\" }\n", "mqtt[0].map[0].fields.x/y", 6, "must not contain"},
		{"map long unit", ok + "[[mqtt.map]]\ntopic = \"a\"\nunit = \"" + strings.Repeat("u", 65) + "\"\n", "mqtt[0].map[0].unit", 6, "at most 64"},
		{"map unit and fields", ok + "[[mqtt.map]]\ntopic = \"a\"\nunit = \"bar\"\nfields = { t = \"C\" }\n", "mqtt[0].map[0].unit", 6, "not both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("eddy.toml", []byte(head+tt.body))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Parse error = %v, want *Error", err)
			}
			if ce.Key != tt.key || ce.Line != tt.line || !strings.Contains(ce.Msg, tt.msg) {
				t.Errorf("got key %q line %d msg %q; want key %q line %d msg containing %q",
					ce.Key, ce.Line, ce.Msg, tt.key, tt.line, tt.msg)
			}
			if !strings.Contains(err.Error(), "eddy.toml") {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func TestValidFieldPath(t *testing.T) {
	for _, p := range []string{"t", "wind.speed", "values.0", "a b.c"} {
		if err := ValidFieldPath(p); err != nil {
			t.Errorf("ValidFieldPath(%q) = %v, want nil", p, err)
		}
	}
	for _, p := range []string{"", ".", "a.", ".a", "a/b", "a+", "#", "a\x01"} {
		if err := ValidFieldPath(p); err == nil {
			t.Errorf("ValidFieldPath(%q) = nil, want an error", p)
		}
	}
}

// An error in the mapping of a second [[mqtt]] block names that block's
// index and the line of the bad key.
func TestMQTTMapErrorInSecondBlock(t *testing.T) {
	doc := `[[mqtt]]
broker = "tcp://127.0.0.1:1883"
topics = ["a/#"]
[[mqtt.map]]
topic = "a/+"
unit = "bar"

[[mqtt]]
broker = "tcp://127.0.0.1:1884"
topics = ["b/#"]
[[mqtt.map]]
topic = "b/#/x"
`
	_, err := Parse("eddy.toml", []byte(doc))
	var ce *Error
	if !errors.As(err, &ce) || ce.Key != "mqtt[1].map[0].topic" || ce.Line != 12 {
		t.Fatalf("error = %v; want key mqtt[1].map[0].topic at line 12", err)
	}
}

package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const collectBase = `[collector]
listen = "127.0.0.1:9464"
%s
[nats]
servers = ["nats://127.0.0.1:4222"]

[[device]]
name = "pump-house-1"
url = "https://127.0.0.1:8443"
token = "t0123456789"
fingerprint = "3F:9A:1C:07:5B:E2:44:80:D1:6C:2A:9E:73:0B:58:F4:C6:19:8D:2E:A7:51:0F:B3:64:E8:92:3D:C5:7A:16:4B"
`

func collectDoc(collector string) []byte {
	return []byte(strings.Replace(collectBase, "%s", collector, 1))
}

func TestParseCollectParkAfter(t *testing.T) {
	for _, tc := range []struct {
		line string
		want time.Duration
	}{
		{"", time.Minute},
		{`park_after = "0s"`, 0},
		{`park_after = "90s"`, 90 * time.Second},
	} {
		c, err := ParseCollect("collect.toml", collectDoc(tc.line))
		if err != nil {
			t.Errorf("%q: %v", tc.line, err)
			continue
		}
		if got := c.Collector.ParkAfter.Duration; got != tc.want {
			t.Errorf("%q: park_after %s, want %s", tc.line, got, tc.want)
		}
	}
}

func TestParseCollectRefuses(t *testing.T) {
	for _, tc := range []struct {
		line, key string
	}{
		{`park_after = "500ms"`, "collector.park_after"},
		{`park_after = "48h"`, "collector.park_after"},
		{`park_after = "soon"`, "collector.park_after"},
		{`lease_ttl = "10m"`, "collector.lease_ttl"},
		{`idle = "10ms"`, "collector.idle"},
		{`parkafter = "1m"`, "collector.parkafter"},
	} {
		_, err := ParseCollect("collect.toml", collectDoc(tc.line))
		var ce *Error
		if !errors.As(err, &ce) {
			t.Errorf("%q: got %v, want a config error", tc.line, err)
			continue
		}
		if ce.Key != tc.key || ce.File != "collect.toml" || ce.Line != 3 {
			t.Errorf("%q: error names %s line %d key %q, want collect.toml line 3 key %q (%v)", tc.line, ce.File, ce.Line, ce.Key, tc.key, err)
		}
	}
}

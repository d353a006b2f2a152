package ingest

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/config"
	"github.com/eddy-iot/eddy/ringlog"
)

func TestDecodePayload(t *testing.T) {
	tests := []struct {
		in    string
		kind  ringlog.Kind
		value string
	}{
		{`21.5`, ringlog.KindJSON, `21.5`},
		{" {\"t\" : 21.5,\r\n \"s\": \"a\\nb\"}\n", ringlog.KindJSON, `{"t":21.5,"s":"a\nb"}`},
		{`[1, 2]`, ringlog.KindJSON, `[1,2]`},
		{`"x"`, ringlog.KindJSON, `"x"`},
		{`true`, ringlog.KindJSON, `true`},
		{`null`, ringlog.KindJSON, `null`},
		{`{"a":1`, ringlog.KindText, `{"a":1`},
		{`on`, ringlog.KindText, `on`},
		{"line1\nline2", ringlog.KindText, "line1\nline2"},
		{``, ringlog.KindText, ``},
		{"\"\xff\"", ringlog.KindBinary, "\"\xff\""}, // JSON-shaped but not UTF-8
		{"\x00\x01\xfe", ringlog.KindBinary, "\x00\x01\xfe"},
	}
	for _, tt := range tests {
		kind, value := decodePayload([]byte(tt.in))
		if kind != tt.kind || string(value) != tt.value {
			t.Errorf("decodePayload(%q) = %s %q, want %s %q", tt.in, kind, value, tt.kind, tt.value)
		}
	}
}

func TestDecodeMessageMapping(t *testing.T) {
	maps, err := parseMappings([]config.MQTTMap{
		{Topic: "env/#", Fields: map[string]string{"t": "°C", "a.b.c": "", "arr.0": "x", "arr.9": "y"}},
		{Topic: "p", Unit: "bar"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Unix(1700000000, 0)
	tests := []struct {
		topic, payload string
		want           []string // topic=value|unit
	}{
		{"env/1", `{"t":1,"a":{"b":{"c":[1, 2]}},"arr":["s"]}`, []string{"env/1/a/b/c=[1,2]|", "env/1/arr/0=\"s\"|x", "env/1/t=1|°C"}},
		{"env/1", `{"a":{"b":3}}`, []string{`env/1={"a":{"b":3}}|`}}, // path ends early: whole payload
		{"env/1", `[1]`, []string{"env/1=[1]|"}},
		{"env/1", `{"t":{"deep":true}}`, []string{`env/1/t={"deep":true}|°C`}},
		{"p", `2.5`, []string{"p=2.5|bar"}},
		{"q", `2.5`, []string{"q=2.5|"}},
	}
	for _, tt := range tests {
		recs, err := decodeMessage(tt.topic, []byte(tt.payload), findMapping(maps, tt.topic), ts)
		if err != nil {
			t.Errorf("%s %s: %v", tt.topic, tt.payload, err)
			continue
		}
		var got []string
		for _, r := range recs {
			got = append(got, r.Topic+"="+string(r.Value)+"|"+r.Unit)
			if !r.Time.Equal(ts) {
				t.Errorf("%s: time %v, want %v", r.Topic, r.Time, ts)
			}
		}
		if strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("%s %s:\n got %v\nwant %v", tt.topic, tt.payload, got, tt.want)
		}
	}

	// The mapping is passed directly: "env/#" does not match this name.
	long := strings.Repeat("x", ringlog.MaxTopicLen-1)
	if _, err := decodeMessage(long, []byte(`{"t":1}`), &maps[0], ts); err == nil {
		t.Errorf("a series name over %d bytes was accepted", ringlog.MaxTopicLen)
	}
}

// FuzzDecodePayload: any payload, with or without a field mapping, gives
// records or an error, never a panic; every KindJSON value is valid JSON
// on one line, and every record would be accepted by the ring log.
func FuzzDecodePayload(f *testing.F) {
	for _, s := range []string{`21.5`, `{"t":1,"h":{"x":[1,2]}}`, "a\nb", "\xff", `"\u2028"`, `{"t":"\ud800"}`, ``, `[[[[1]]]]`} {
		f.Add([]byte(s))
	}
	maps, err := parseMappings([]config.MQTTMap{{Topic: "m/#", Fields: map[string]string{"t": "°C", "h.x.1": "", "h": "u"}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		for _, name := range []string{"plain", "m/a"} {
			recs, err := decodeMessage(name, payload, findMapping(maps, name), time.Now())
			if err != nil {
				continue
			}
			if len(recs) == 0 {
				t.Fatalf("%s: no records and no error for %q", name, payload)
			}
			for _, r := range recs {
				if r.Kind == ringlog.KindJSON && (!json.Valid(r.Value) || bytes.ContainsAny(r.Value, "\r\n")) {
					t.Fatalf("%s: KindJSON value %q is not one line of valid JSON", r.Topic, r.Value)
				}
				if r.Kind == ringlog.KindText && bytes.ContainsRune(r.Value, 0xfffd) && !bytes.Contains(payload, []byte("\xef\xbf\xbd")) {
					t.Fatalf("%s: text value %q was altered", r.Topic, r.Value)
				}
				if len(r.Topic) > ringlog.MaxTopicLen || len(r.Unit) > ringlog.MaxUnitLen {
					t.Fatalf("record %s would be refused by the ring log", r.Topic)
				}
			}
		}
	})
}

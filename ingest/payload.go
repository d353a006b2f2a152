package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/eddy-iot/eddy/config"
	"github.com/eddy-iot/eddy/ringlog"
	"github.com/eddy-iot/eddy/topic"
)

// decodePayload classifies an MQTT payload as DESIGN.md says: a JSON text
// (number, object, string, ...) that is also valid UTF-8 is KindJSON,
// compacted to one line; other UTF-8 is KindText; anything else is
// KindBinary. The value returned for JSON is a fresh slice; for text and
// binary it is p itself.
func decodePayload(p []byte) (ringlog.Kind, []byte) {
	if !utf8.Valid(p) {
		// encoding/json accepts invalid UTF-8 inside strings; a stream
		// that must stay valid UTF-8 does not.
		return ringlog.KindBinary, p
	}
	if json.Valid(p) && jsonDepth(p) <= MaxJSONDepth {
		var b bytes.Buffer
		b.Grow(len(p))
		// Compact cannot fail on valid JSON, and removes every newline
		// (a JSON string cannot hold a raw one).
		if err := json.Compact(&b, p); err == nil {
			return ringlog.KindJSON, b.Bytes()
		}
	}
	return ringlog.KindText, p
}

// MaxJSONDepth is the deepest nesting of arrays and objects stored as
// JSON. A deeper payload is stored as text: wrapped in an event it would
// be one level deeper still, and JSON decoders (Go's among them, at
// 10,000) refuse very deep documents, so a client could loop on it.
const MaxJSONDepth = 64

// jsonDepth returns the deepest nesting of arrays and objects in valid
// JSON p.
func jsonDepth(p []byte) int {
	depth, deepest := 0, 0
	inString, escaped := false, false
	for _, c := range p {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			depth++
			deepest = max(deepest, depth)
		case c == ']' || c == '}':
			depth--
		}
	}
	return deepest
}

// mapping is a parsed [[mqtt.map]] entry.
type mapping struct {
	filter topic.Filter
	unit   string  // unit of the whole payload (no fields)
	fields []field // sorted by path
}

// field is one JSON field path of a mapping and the series it feeds.
type field struct {
	path   []string // "wind.speed" -> ["wind", "speed"]
	suffix string   // "/wind/speed", appended to the message topic
	unit   string
}

// parseMappings turns config mappings into their parsed form, in order.
func parseMappings(ms []config.MQTTMap) ([]mapping, error) {
	out := make([]mapping, 0, len(ms))
	for i, m := range ms {
		f, err := topic.ParseFilter(m.Topic)
		if err != nil {
			return nil, fmt.Errorf("ingest: mapping %d: %w", i, err)
		}
		mp := mapping{filter: f, unit: m.Unit}
		for path, unit := range m.Fields {
			if err := config.ValidFieldPath(path); err != nil {
				return nil, fmt.Errorf("ingest: mapping %d: %w", i, err)
			}
			segs := strings.Split(path, ".")
			mp.fields = append(mp.fields, field{path: segs, suffix: "/" + strings.Join(segs, "/"), unit: unit})
		}
		sort.Slice(mp.fields, func(a, b int) bool { return mp.fields[a].suffix < mp.fields[b].suffix })
		out = append(out, mp)
	}
	return out, nil
}

// findMapping returns the first mapping whose filter matches name, or nil.
func findMapping(ms []mapping, name string) *mapping {
	for i := range ms {
		if ms[i].filter.Match(name) {
			return &ms[i]
		}
	}
	return nil
}

// errTopicTooLong is returned when a mapped series name exceeds the ring
// log's bound.
var errTopicTooLong = errors.New("series topic too long")

// decodeMessage turns one message into the records to append, all observed
// at ts. Without a mapping, or when a mapping's fields find nothing in the
// payload, it is one record of the whole payload under name.
func decodeMessage(name string, payload []byte, m *mapping, ts time.Time) ([]ringlog.Record, error) {
	kind, value := decodePayload(payload)
	if m != nil && len(m.fields) > 0 && kind == ringlog.KindJSON {
		recs, err := splitFields(name, value, m.fields, ts)
		if err != nil || len(recs) > 0 {
			return recs, err
		}
	}
	unit := ""
	if m != nil {
		unit = m.unit
	}
	return []ringlog.Record{{Time: ts, Topic: name, Kind: kind, Value: value, Unit: unit}}, nil
}

// splitFields extracts each field of a compact JSON object into its own
// record. Fields the payload lacks are skipped.
func splitFields(name string, obj []byte, fields []field, ts time.Time) ([]ringlog.Record, error) {
	if len(obj) == 0 || obj[0] != '{' {
		return nil, nil
	}
	var recs []ringlog.Record
	for _, f := range fields {
		raw, ok := lookup(obj, f.path)
		if !ok {
			continue
		}
		series := name + f.suffix
		if len(series) > ringlog.MaxTopicLen {
			return nil, fmt.Errorf("ingest: %w: %d bytes", errTopicTooLong, len(series))
		}
		// raw is a copy (json.Unmarshal copies into RawMessage) of a part
		// of compact JSON, hence compact itself.
		recs = append(recs, ringlog.Record{Time: ts, Topic: series, Kind: ringlog.KindJSON, Value: raw, Unit: f.unit})
	}
	return recs, nil
}

// lookup follows path through nested objects (by key) and arrays (by
// index) and returns the raw JSON found there.
func lookup(doc []byte, path []string) (json.RawMessage, bool) {
	cur := json.RawMessage(doc)
	for _, seg := range path {
		switch {
		case len(cur) > 0 && cur[0] == '{':
			var obj map[string]json.RawMessage
			if json.Unmarshal(cur, &obj) != nil {
				return nil, false
			}
			next, ok := obj[seg]
			if !ok {
				return nil, false
			}
			cur = next
		case len(cur) > 0 && cur[0] == '[':
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 {
				return nil, false
			}
			var arr []json.RawMessage
			if json.Unmarshal(cur, &arr) != nil || i >= len(arr) {
				return nil, false
			}
			cur = arr[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/eddy-iot/eddy/ringlog"
)

// appendRecordJSON appends r as the JSON object of an SSE reading event:
// {"seq":..,"topic":..,"ts":"2026-11-23T17:00:00.123Z","value":..,"unit":..}.
// value is the payload as JSON when it is JSON, else a string when it is
// UTF-8, else value_b64 holds it base64-encoded.
func appendRecordJSON(dst []byte, r *ringlog.Record) []byte {
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendUint(dst, r.Seq, 10)
	dst = append(dst, `,"topic":`...)
	dst = appendJSONString(dst, r.Topic)
	dst = append(dst, `,"ts":"`...)
	dst = r.Time.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z07:00")
	dst = append(dst, '"')
	dst = appendValue(dst, r.Kind, r.Value)
	if r.Unit != "" {
		dst = append(dst, `,"unit":`...)
		dst = appendJSONString(dst, r.Unit)
	}
	return append(dst, '}')
}

func appendValue(dst []byte, kind ringlog.Kind, v []byte) []byte {
	if kind == ringlog.KindJSON && utf8.Valid(v) && json.Valid(v) {
		dst = append(dst, `,"value":`...)
		buf := bytes.NewBuffer(dst)
		json.Compact(buf, v) // valid JSON: cannot fail
		return buf.Bytes()
	}
	if kind != ringlog.KindBinary && utf8.Valid(v) {
		dst = append(dst, `,"value":`...)
		return appendJSONString(dst, string(v))
	}
	dst = append(dst, `,"value_b64":"`...)
	dst = base64.StdEncoding.AppendEncode(dst, v)
	return append(dst, '"')
}

func appendJSONString(dst []byte, s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.Encode(s) // a string always encodes
	return append(dst, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
}

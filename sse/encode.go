package sse

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/eddy-iot/eddy/ringlog"
)

// appendReading appends r as one complete "reading" event:
//
//	id: <seq>
//	event: reading
//	data: {"seq":...,"topic":...,"ts":...,"value":...,"unit":...}
//
// followed by the blank line that dispatches it.
func appendReading(dst []byte, r *ringlog.Record) []byte {
	dst = append(dst, "id: "...)
	dst = strconv.AppendUint(dst, r.Seq, 10)
	dst = append(dst, "\nevent: reading\ndata: "...)
	dst = AppendRecordJSON(dst, r)
	return append(dst, "\n\n"...)
}

// AppendRecordJSON appends the JSON object of a reading, the data of a
// `reading` event; /api/series and /api/history use it too, so a record
// reads the same everywhere. It is built by hand: this runs once per
// record on the hot path, and the envelope is fixed.
func AppendRecordJSON(dst []byte, r *ringlog.Record) []byte {
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendUint(dst, r.Seq, 10)
	dst = append(dst, `,"topic":`...)
	dst = appendString(dst, r.Topic)
	dst = append(dst, `,"ts":"`...)
	dst = appendTime(dst, r.Time)
	dst = append(dst, '"')
	dst = appendValue(dst, r.Kind, r.Value)
	if r.Unit != "" {
		dst = append(dst, `,"unit":`...)
		dst = appendString(dst, r.Unit)
	}
	return append(dst, '}')
}

// appendValue appends ,"value":... or ,"value_b64":"...". A JSON value that
// does not validate falls back to text, and text that is not UTF-8 to
// base64, so a mislabelled record still yields valid JSON on one line.
func appendValue(dst []byte, kind ringlog.Kind, v []byte) []byte {
	switch kind {
	case ringlog.KindJSON:
		if ok, clean := jsonValue(v); ok {
			dst = append(dst, `,"value":`...)
			if clean {
				return append(dst, bytes.TrimSpace(v)...)
			}
			return appendCompact(dst, v)
		}
		fallthrough
	case ringlog.KindText:
		if utf8.Valid(v) {
			dst = append(dst, `,"value":`...)
			return appendString(dst, string(v))
		}
	}
	dst = append(dst, `,"value_b64":"`...)
	dst = base64.StdEncoding.AppendEncode(dst, v)
	return append(dst, '"')
}

// jsonValue reports whether v is one valid UTF-8 JSON text, and whether it
// is free of CR and LF (which JSON allows only as whitespace between
// tokens, and which would break an SSE data line).
func jsonValue(v []byte) (ok, clean bool) {
	if isNumber(v) {
		return true, true // the usual sensor value: skip the general validator
	}
	if !utf8.Valid(v) || !json.Valid(v) {
		return false, false
	}
	return true, bytes.IndexByte(v, '\n') < 0 && bytes.IndexByte(v, '\r') < 0
}

// isNumber reports whether v is exactly one JSON number:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func isNumber(v []byte) bool {
	i := 0
	if i < len(v) && v[i] == '-' {
		i++
	}
	switch {
	case i < len(v) && v[i] == '0':
		i++
	case i < len(v) && v[i] >= '1' && v[i] <= '9':
		i = skipDigits(v, i+1)
	default:
		return false
	}
	if i < len(v) && v[i] == '.' {
		j := skipDigits(v, i+1)
		if j == i+1 {
			return false
		}
		i = j
	}
	if i < len(v) && (v[i] == 'e' || v[i] == 'E') {
		i++
		if i < len(v) && (v[i] == '+' || v[i] == '-') {
			i++
		}
		j := skipDigits(v, i)
		if j == i {
			return false
		}
		i = j
	}
	return i == len(v)
}

func skipDigits(v []byte, i int) int {
	for i < len(v) && v[i] >= '0' && v[i] <= '9' {
		i++
	}
	return i
}

// appendCompact appends v (valid JSON) without insignificant whitespace.
func appendCompact(dst []byte, v []byte) []byte {
	buf := bytes.NewBuffer(dst)
	if err := json.Compact(buf, v); err != nil {
		// Unreachable for valid JSON; never emit a half-written value.
		return append(dst, "null"...)
	}
	return buf.Bytes()
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Like encoding/json it escapes
// control characters, quote, backslash, U+2028 and U+2029 (line breaks to
// JavaScript), and replaces invalid UTF-8 bytes with U+FFFD; unlike it, it
// leaves <, > and & alone. The output never contains CR or LF.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			dst = appendEscapedByte(dst, b)
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\u202`...)
			dst = append(dst, hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

func appendEscapedByte(dst []byte, b byte) []byte {
	switch b {
	case '"', '\\':
		return append(dst, '\\', b)
	case '\n':
		return append(dst, '\\', 'n')
	case '\r':
		return append(dst, '\\', 'r')
	case '\t':
		return append(dst, '\\', 't')
	}
	return append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
}

// appendTime appends t in UTC as RFC 3339 with milliseconds, e.g.
// 2026-11-23T17:00:00.123Z. It computes the civil date from the Unix
// time in one pass (time.Time's Date and Clock each redo the work).
func appendTime(dst []byte, t time.Time) []byte {
	secs := t.Unix()
	if secs < 0 || secs >= maxUnix {
		return t.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z07:00")
	}
	year, month, day := civil(secs / 86400)
	rem := int(secs % 86400)
	hour, minute, sec := rem/3600, rem/60%60, rem%60
	ms := t.Nanosecond() / 1e6
	return append(dst,
		byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-',
		byte('0'+month/10), byte('0'+month%10), '-',
		byte('0'+day/10), byte('0'+day%10), 'T',
		byte('0'+hour/10), byte('0'+hour%10), ':',
		byte('0'+minute/10), byte('0'+minute%10), ':',
		byte('0'+sec/10), byte('0'+sec%10), '.',
		byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z')
}

// maxUnix is 10000-01-01T00:00:00Z: four-digit years only.
const maxUnix = 253402300800

// civil converts days since 1970-01-01 (non-negative) to a proleptic
// Gregorian date (H. Hinnant's days_from_civil, inverted).
func civil(days int64) (year, month, day int) {
	z := days + 719468
	era := z / 146097
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	day = int(doy - (153*mp+2)/5 + 1)
	month = int(mp + 3)
	if month > 12 {
		month -= 12
	}
	year = int(yoe + era*400)
	if month <= 2 {
		year++
	}
	return year, month, day
}

// appendGap appends a gap event: records from..to (inclusive) that the
// stream will not deliver, dropped of them matching its filters. It has
// no id line, so it does not move the client's Last-Event-ID.
func appendGap(dst []byte, g gap) []byte {
	dst = append(dst, "event: gap\ndata: {\"dropped\":"...)
	dst = strconv.AppendUint(dst, g.dropped, 10)
	dst = append(dst, `,"from_seq":`...)
	dst = strconv.AppendUint(dst, g.from, 10)
	dst = append(dst, `,"to_seq":`...)
	dst = strconv.AppendUint(dst, g.to, 10)
	if g.unknownID != 0 {
		dst = append(dst, `,"unknown_id":`...)
		dst = strconv.AppendUint(dst, g.unknownID, 10)
	}
	return append(dst, "}\n\n"...)
}

// appendRetry appends a retry hint in milliseconds, and a comment so that
// the block is a complete (if empty) event.
func appendRetry(dst []byte, d time.Duration, comment string) []byte {
	dst = append(dst, "retry: "...)
	dst = strconv.AppendInt(dst, max(d.Milliseconds(), 0), 10)
	dst = append(dst, "\n: "...)
	dst = append(dst, comment...)
	return append(dst, "\n\n"...)
}

// heartbeat is the comment sent when a stream has been quiet for a
// Heartbeat period; it keeps proxies and NAT entries from timing out.
const heartbeat = ": heartbeat\n\n"

// gap describes records a stream skips. The zero gap is "none".
type gap struct {
	dropped   uint64
	from, to  uint64
	unknownID uint64 // a Last-Event-ID the log never issued (resetUnknown)
}

// add widens g to include n dropped records between from and to.
func (g *gap) add(n, from, to uint64) {
	if n == 0 {
		return
	}
	if g.dropped == 0 || from < g.from {
		g.from = from
	}
	g.to = max(g.to, to)
	g.dropped += n
}

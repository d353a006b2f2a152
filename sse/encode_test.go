package sse

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/eddy-iot/eddy/ringlog"
)

func TestEncodeReadingExample(t *testing.T) {
	r := ringlog.Record{
		Seq:   4711,
		Time:  time.Date(2026, 11, 23, 18, 0, 0, 123_456_789, time.FixedZone("CET", 3600)),
		Topic: "sensors/pump1/pressure",
		Kind:  ringlog.KindJSON,
		Value: []byte("2.31"),
		Unit:  "bar",
	}
	want := "id: 4711\nevent: reading\ndata: " +
		`{"seq":4711,"topic":"sensors/pump1/pressure","ts":"2026-11-23T17:00:00.123Z","value":2.31,"unit":"bar"}` + "\n\n"
	if got := string(appendReading(nil, &r)); got != want {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
}

func TestEncodeValues(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)
	tests := []struct {
		name  string
		kind  ringlog.Kind
		value string
		unit  string
		want  string // the JSON after "ts"
	}{
		{"number", ringlog.KindJSON, "21.5", "°C", `,"value":21.5,"unit":"°C"}`},
		{"object with newlines", ringlog.KindJSON, "{\n \"a\": [1,\r\n2]\n}", "", `,"value":{"a":[1,2]}}`},
		{"padded json", ringlog.KindJSON, "  true ", "", `,"value":true}`},
		{"invalid json as text", ringlog.KindJSON, "{oops\n", "", `,"value":"{oops\n"}`},
		{"text", ringlog.KindText, "on\r\nid: 9\n\ndata: x", "", `,"value":"on\r\nid: 9\n\ndata: x"}`},
		{"text escapes", ringlog.KindText, "\"\\\x00\x1f\u2028\u2029é", "", `,"value":"\"\\\u0000\u001f\u2028\u2029é"}`},
		{"binary", ringlog.KindBinary, "\xff\x00\n", "", `,"value_b64":"/wAK"}`},
		{"text not utf8", ringlog.KindText, "a\xffb", "", `,"value_b64":"Yf9i"}`},
		{"empty text", ringlog.KindText, "", "u", `,"value":"","unit":"u"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ringlog.Record{Seq: 1, Time: ts, Topic: "a/b", Kind: tt.kind, Value: []byte(tt.value), Unit: tt.unit}
			want := `{"seq":1,"topic":"a/b","ts":"2026-01-02T03:04:05.006Z"` + tt.want
			got := string(AppendRecordJSON(nil, &r))
			if got != want {
				t.Fatalf("got  %s\nwant %s", got, want)
			}
			if !json.Valid([]byte(got)) {
				t.Fatalf("not valid JSON: %s", got)
			}
		})
	}
}

func TestEncodeGapAndRetry(t *testing.T) {
	got := string(appendGap(nil, gap{dropped: 3, from: 10, to: 20})) +
		string(appendRetry(nil, 2500*time.Millisecond, "hi"))
	want := "event: gap\ndata: {\"dropped\":3,\"from_seq\":10,\"to_seq\":20}\n\nretry: 2500\n: hi\n\n"
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	evs, p := parseAll([]byte(got))
	if len(evs) != 1 || evs[0].typ != "gap" || evs[0].hasID || p.retry != "2500" {
		t.Fatalf("parsed %+v retry %q", evs, p.retry)
	}
}

func TestAppendTimeMatchesFormat(t *testing.T) {
	for _, ts := range []time.Time{
		time.Unix(0, 0), time.Unix(1<<40, 999_999_999), time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC), time.Date(2026, 11, 23, 17, 0, 0, 1e6, time.Local),
	} {
		want := ts.UTC().Format("2006-01-02T15:04:05.000Z07:00")
		if got := string(appendTime(nil, ts)); got != want {
			t.Errorf("appendTime(%v) = %s, want %s", ts, got, want)
		}
	}
}

func FuzzAppendTime(f *testing.F) {
	f.Add(int64(0), int64(0))
	f.Add(int64(253402300799), int64(999999999))
	f.Add(int64(951782400), int64(5e8)) // 2000-02-29
	f.Fuzz(func(t *testing.T, sec, nsec int64) {
		ts := time.Unix(sec, nsec)
		want := ts.UTC().Format("2006-01-02T15:04:05.000Z07:00")
		if got := string(appendTime(nil, ts)); got != want {
			t.Fatalf("appendTime(%d, %d) = %s, want %s", sec, nsec, got, want)
		}
	})
}

// fixUTF8 replaces each invalid byte with U+FFFD, as appendString does.
func fixUTF8(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		b.WriteRune(r)
		i += n
	}
	return b.String()
}

func FuzzEncode(f *testing.F) {
	f.Add(uint64(4711), int64(1795453200123456789), "sensors/pump1/pressure", uint8(1), []byte("2.31"), "bar")
	f.Add(uint64(1), int64(0), "a\nb\r\nc\rd", uint8(2), []byte("x\r\ny\n\nid: 3\rdata: z"), "u\n")
	f.Add(uint64(0), int64(-1), "t", uint8(1), []byte("{\"a\":\n1}\r\n"), "")
	f.Add(uint64(1<<63), int64(1<<62), "\xff\u2028", uint8(3), []byte{0, '\n', 0xff}, "\x00")
	f.Add(uint64(7), int64(5), ":x", uint8(1), []byte("\"\xff\""), "")
	f.Fuzz(func(t *testing.T, seq uint64, nanos int64, topic string, kind uint8, value []byte, unit string) {
		r := ringlog.Record{Seq: seq, Time: time.Unix(0, nanos), Topic: topic, Kind: ringlog.Kind(kind%3 + 1), Value: value, Unit: unit}
		out := appendReading(nil, &r)
		if bytes.IndexByte(out, '\r') >= 0 {
			t.Fatalf("output holds CR: %q", out)
		}
		evs, _ := parseAll(out)
		if len(evs) != 1 {
			t.Fatalf("parsed %d events from %q", len(evs), out)
		}
		ev := evs[0]
		if ev.typ != "reading" || ev.lastID != strconv.FormatUint(seq, 10) || !ev.hasID {
			t.Fatalf("event %+v", ev)
		}
		wantData := string(AppendRecordJSON(nil, &r))
		if ev.data != wantData {
			t.Fatalf("data %q, want %q", ev.data, wantData)
		}
		checkReadingJSON(t, &r, []byte(ev.data))
	})
}

// checkReadingJSON decodes data and compares it with r.
func checkReadingJSON(t *testing.T, r *ringlog.Record, data []byte) {
	t.Helper()
	var got struct {
		Seq      uint64          `json:"seq"`
		Topic    string          `json:"topic"`
		TS       string          `json:"ts"`
		Value    json.RawMessage `json:"value"`
		ValueB64 *string         `json:"value_b64"`
		Unit     *string         `json:"unit"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("data %q is not the reading JSON: %v", data, err)
	}
	if got.Seq != r.Seq || got.Topic != fixUTF8(r.Topic) {
		t.Fatalf("seq/topic %d %q, want %d %q", got.Seq, got.Topic, r.Seq, r.Topic)
	}
	if y := r.Time.UTC().Year(); y >= 0 && y <= 9999 {
		ts, err := time.Parse(time.RFC3339Nano, got.TS)
		want := r.Time.Add(-time.Duration(r.Time.Nanosecond() % 1e6)) // floor to the millisecond
		if err != nil || !ts.Equal(want) {
			t.Fatalf("ts %q (%v) for %v", got.TS, err, r.Time)
		}
	}
	if (r.Unit == "") != (got.Unit == nil) || got.Unit != nil && *got.Unit != fixUTF8(r.Unit) {
		t.Fatalf("unit %v, want %q", got.Unit, r.Unit)
	}
	switch {
	case got.ValueB64 != nil:
		b, err := base64.StdEncoding.DecodeString(*got.ValueB64)
		if err != nil || !bytes.Equal(b, r.Value) {
			t.Fatalf("value_b64 %q decodes to %q (%v), want %q", *got.ValueB64, b, err, r.Value)
		}
		if r.Kind != ringlog.KindBinary && utf8.Valid(r.Value) {
			t.Fatalf("UTF-8 value %q of kind %v sent as base64", r.Value, r.Kind)
		}
	case r.Kind == ringlog.KindJSON && utf8.Valid(r.Value) && json.Valid(r.Value):
		var want bytes.Buffer
		json.Compact(&want, r.Value)
		if !bytes.Equal(got.Value, want.Bytes()) {
			t.Fatalf("value %s, want %s", got.Value, want.Bytes())
		}
	default:
		var s string
		if err := json.Unmarshal(got.Value, &s); err != nil || s != string(r.Value) {
			t.Fatalf("value %s (%v), want the string %q", got.Value, err, r.Value)
		}
	}
}

func FuzzIsNumber(f *testing.F) {
	for _, s := range []string{"0", "-0", "2.31", "1e5", "-1.5E-3", "01", "1.", ".5", "-", "1e", "+1", "1e+", " 1", "NaN"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		if isNumber(v) {
			var f64 json.Number
			if !json.Valid(v) || json.Unmarshal(v, &f64) != nil {
				t.Fatalf("isNumber(%q) but it is not a JSON number", v)
			}
		} else if json.Valid(v) && len(v) > 0 && (v[0] == '-' || v[0] >= '0' && v[0] <= '9') && !bytes.ContainsAny(v, " \t\r\n") {
			t.Fatalf("isNumber(%q) is false for a JSON number", v)
		}
	})
}

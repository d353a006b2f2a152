package sse

import (
	"errors"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseParams(t *testing.T) {
	tests := []struct {
		url, header string
		wantErr     string // substring; "" means success
		check       func(params) bool
	}{
		{"/events", "", "", func(p params) bool { return p.key == "#" && p.mode == modeDownsample && !p.resume && p.interval == 0 }},
		{"/events?topic=b/%2B&topic=a/%23&topic=b/%2B", "", "", func(p params) bool { return p.key == "a/#\x00b/+" && p.filters.Match("a/x") }},
		{"/events?mode=exact", "", "", func(p params) bool { return p.mode == modeExact }},
		{"/events?rate=4", "", "", func(p params) bool { return p.interval == 250*time.Millisecond }},
		{"/events?lastEventID=7", "", "", func(p params) bool { return p.resume && p.lastID == 7 }},
		{"/events?lastEventID=7", "9", "", func(p params) bool { return p.lastID == 9 }},
		{"/events?lastEventID=0", "", "", func(p params) bool { return p.resume && p.lastID == 0 }},
		{"/events?topic=a/b%23", "", "a wildcard must fill a whole level", nil},
		{"/events?topic=", "", "empty", nil},
		{"/events?mode=fast", "", "mode", nil},
		{"/events?rate=0", "", "rate", nil},
		{"/events?rate=NaN", "", "rate", nil},
		{"/events?rate=-1", "", "rate", nil},
		{"/events?rate=2&mode=exact", "", "one or the other", nil},
		{"/events", "x1", "not a decimal", nil},
		{"/events", "11", "", func(p params) bool { return p.resume && p.lastID == 0 && p.unknownID == 11 }},
		{"/events", "10", "", func(p params) bool { return p.lastID == 0 && p.unknownID == 10 }},
		{"/events", "9", "", func(p params) bool { return p.lastID == 9 && p.unknownID == 0 }},
		{"/events", strings.Repeat("9", 10000), "not a decimal", func(p params) bool { return true }},
		{"/events?lastEventID=%2B3", "", "not a decimal", nil},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", tt.url, nil)
		if tt.header != "" {
			r.Header.Set("Last-Event-ID", tt.header)
		}
		p, err := parseParams(r, 10)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrBadRequest) {
				t.Errorf("%.40s [%.40s]: err %v, want one containing %q", tt.url, tt.header, err, tt.wantErr)
			}
			if err != nil && len(err.Error()) > 200 {
				t.Errorf("error echoes %d bytes of the request", len(err.Error()))
			}
			continue
		}
		if err != nil || !tt.check(p) {
			t.Errorf("%s [%s]: %+v, %v", tt.url, tt.header, p, err)
		}
	}
}

func FuzzLastEventID(f *testing.F) {
	for _, s := range []string{"0", "1", "42", "18446744073709551615", "18446744073709551616", "-1", "+1", " 1", "1 ", "0x10", "1e3", "", "00012", "１"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := parseLastEventID(s)
		n, perr := strconv.ParseUint(s, 10, 64)
		decimal := perr == nil && s != "" && strings.Trim(s, "0123456789") == ""
		switch {
		case !decimal:
			if err == nil {
				t.Fatalf("%q accepted as %d", s, id)
			}
			if len(err.Error()) > 200 {
				t.Fatalf("error for %d bytes echoes them: %d bytes", len(s), len(err.Error()))
			}
		default:
			if err != nil || id != n {
				t.Fatalf("%q: %d, %v; want %d", s, id, err, n)
			}
		}
		if err != nil && !errors.Is(err, ErrBadRequest) {
			t.Fatalf("error %v does not wrap ErrBadRequest", err)
		}
	})
}

// FuzzParseParams feeds arbitrary query strings and Last-Event-ID headers
// through the request parser (topic filters included): it never panics,
// every error is a 400 with a reason, and an accepted request is usable.
func FuzzParseParams(f *testing.F) {
	for _, q := range []string{"", "topic=a/%2B&topic=%23", "topic=a/b%23", "topic=%2B/%2B/%23&mode=exact", "rate=2.5", "rate=1e400", "rate=1e-300", "rate=0.001", "mode=&lastEventID=5", "topic=%00", "topic=%ff"} {
		f.Add(q, "")
		f.Add(q, "3")
	}
	f.Fuzz(func(t *testing.T, query, header string) {
		r := httptest.NewRequest("GET", "/events", nil)
		r.URL.RawQuery = query
		if header != "" {
			r.Header.Set("Last-Event-ID", header)
		}
		p, err := parseParams(r, 10)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) || err.Error() == "" {
				t.Fatalf("error %v is not a bad request", err)
			}
			return
		}
		if len(p.filters) == 0 || p.key == "" || p.lastID >= 10 || p.unknownID != 0 && p.unknownID < 10 || p.interval < 0 || p.interval > 17*time.Minute || p.mode == modeExact && p.interval > 0 {
			t.Fatalf("accepted %q [%q] as %+v", query, header, p)
		}
		for _, f := range r.URL.Query()["topic"] {
			if !strings.Contains(p.key, f) {
				t.Fatalf("filter %q missing from key %q", f, p.key)
			}
		}
	})
}

package sse

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestReadEvents(t *testing.T) {
	base := ": hello\nretry: 1500\n\nid: 7\nevent: reading\ndata: {\"a\":\ndata: 1}\n\nid: 8\ndata: {}\n\n"
	for _, sep := range []string{"\n", "\r\n", "\r"} {
		var got []Event
		err := ReadEvents(strings.NewReader(strings.ReplaceAll(base, "\n", sep)), 1<<10, func(ev Event) error { got = append(got, ev); return nil })
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 || got[0].Retry != 1500*time.Millisecond || got[0].Type != "retry" ||
			got[1].ID != "7" || got[1].Type != "reading" || got[1].Data != "{\"a\":\n1}" ||
			got[2].ID != "8" || got[2].Type != "" || got[2].Data != "{}" {
			t.Errorf("separator %q: got %+v", sep, got)
		}
	}
	long := "data: " + strings.Repeat("x", 2000) + "\n\n"
	if err := ReadEvents(strings.NewReader(long), 1<<10, func(Event) error { return nil }); !errors.Is(err, bufio.ErrTooLong) {
		t.Errorf("an oversized line: %v, want bufio.ErrTooLong", err)
	}
}

func FuzzReadEvents(f *testing.F) {
	f.Add([]byte("id: 1\ndata: {}\n\n"))
	f.Add([]byte("retry: x\r\r\ndata\n\n:"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n := 0
		err := ReadEvents(bytes.NewReader(b), 1<<12, func(ev Event) error {
			n++
			if strings.ContainsAny(ev.ID, "\r\n") || strings.ContainsAny(ev.Type, "\r\n") {
				t.Fatalf("a field kept a line break: %+v", ev)
			}
			return nil
		})
		if err != nil && !errors.Is(err, bufio.ErrTooLong) {
			t.Fatalf("ReadEvents: %v", err)
		}
		if n > len(b) {
			t.Fatalf("%d events from %d bytes", n, len(b))
		}
	})
}

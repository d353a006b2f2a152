package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"
)

func TestReadEventsLineEndings(t *testing.T) {
	// The same two events with \n, \r\n and lone \r line endings, a
	// comment, a retry hint and a multi-line data field.
	base := ": hello\nretry: 1500\n\nid: 7\nevent: reading\ndata: {\"a\":\ndata: 1}\n\nid: 8\ndata: {}\n\n"
	for _, sep := range []string{"\n", "\r\n", "\r"} {
		in := strings.ReplaceAll(base, "\n", sep)
		var got []sseEvent
		err := readEvents(strings.NewReader(in), func(ev sseEvent) error { got = append(got, ev); return nil })
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 || got[0].retry != 1500*time.Millisecond ||
			got[1].id != "7" || got[1].event != "reading" || got[1].data != "{\"a\":\n1}" ||
			got[2].id != "8" || got[2].event != "" || got[2].data != "{}" {
			t.Errorf("separator %q: got %+v", sep, got)
		}
	}
}

func TestTailPrintsEachIDOnce(t *testing.T) {
	var out, errb bytes.Buffer
	tl, err := newTailer(tailFlags{url: "https://127.0.0.1:1", mode: "exact", idle: time.Second}, &out, &errb)
	if err != nil {
		t.Fatal(err)
	}
	defer tl.close()
	for _, ev := range []sseEvent{
		{id: "5", event: "reading", data: `{"seq":5}`},
		{id: "6", event: "reading", data: `{"seq":6}`},
		{id: "5", event: "reading", data: `{"seq":5}`}, // replayed after a reconnect
		{event: "gap", data: `{"dropped":3,"from_seq":7,"to_seq":9}`},
		{id: "10", event: "reading", data: `{"seq":10}`},
	} {
		if _, err := tl.handle(ev); err != nil {
			t.Fatal(err)
		}
	}
	if got := out.String(); got != "{\"seq\":5}\n{\"seq\":6}\n{\"seq\":10}\n" {
		t.Errorf("stdout %q", got)
	}
	if !strings.Contains(errb.String(), "gap") {
		t.Errorf("the gap was not reported on stderr: %q", errb.String())
	}
	// An event whose data is not JSON (say, nested deeper than a JSON
	// parser takes) is reported and skipped, not retried forever.
	deep := strings.Repeat("[", 10001) + strings.Repeat("]", 10001)
	for _, data := range []string{"not json", deep} {
		printed, err := tl.handle(sseEvent{id: "11", data: data})
		if err != nil || printed {
			t.Errorf("non-JSON data: printed %v, %v; want skipped", printed, err)
		}
	}
	if !strings.Contains(errb.String(), "event 11: data is not JSON") || strings.Contains(out.String(), "not json") {
		t.Errorf("the undecodable event was not reported on stderr and skipped: %q", errb.String())
	}
	if _, err := tl.handle(sseEvent{id: "12", event: "reading", data: `{"seq":12}`}); err != nil || !strings.HasSuffix(out.String(), "{\"seq\":12}\n") {
		t.Errorf("the tail did not go on after the skipped event: %v %q", err, out.String())
	}
}

func TestEventsURL(t *testing.T) {
	got, err := eventsURL("https://pi.local:8443", []string{"a/#", "b/+"}, "exact")
	if err != nil || got != "https://pi.local:8443/events?mode=exact&topic=a%2F%23&topic=b%2F%2B" {
		t.Errorf("eventsURL = %q, %v", got, err)
	}
	for _, bad := range []string{"pi.local:8443", "ftp://x", "https://"} {
		if _, err := eventsURL(bad, nil, ""); err == nil {
			t.Errorf("eventsURL(%q) accepted", bad)
		}
	}
}

func FuzzReadEvents(f *testing.F) {
	f.Add([]byte("id: 1\ndata: {}\n\n"))
	f.Add([]byte("retry: x\r\r\ndata\n\n:"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n := 0
		err := readEvents(bytes.NewReader(b), func(ev sseEvent) error {
			n++
			if strings.ContainsAny(ev.id, "\r\n") || strings.ContainsAny(ev.event, "\r\n") {
				t.Fatalf("a field kept a line break: %+v", ev)
			}
			return nil
		})
		if err != nil && err != io.ErrUnexpectedEOF && !strings.Contains(err.Error(), "token too long") {
			t.Fatalf("readEvents: %v", err)
		}
		if n > len(b) {
			t.Fatalf("%d events from %d bytes", n, len(b))
		}
	})
}

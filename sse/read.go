package sse

import (
	"bufio"
	"io"
	"strconv"
	"strings"
	"time"
)

// Event is one Server-Sent Event as a client reads it.
type Event struct {
	ID    string // the id field of the event's block ("" when it had none)
	Type  string // the event field; "" for the default type; "retry" for a retry hint
	Data  string // data lines joined by \n
	Retry time.Duration
}

// ReadEvents is eddy's one event-stream parser, used by every client in
// the repository (eddy tail, eddy collect). It parses r as the WHATWG
// spec says (lines end with \n, \r or \r\n; comments start with ':'),
// calling fn per dispatched event and, with Type "retry", per valid retry
// field. A line longer than maxLine ends it with bufio.ErrTooLong; its
// buffer starts at 4 KiB and grows only as lines need, so an idle stream
// costs little. It returns fn's error, the reader's, or nil at EOF.
func ReadEvents(r io.Reader, maxLine int, fn func(Event) error) error {
	sc := bufio.NewScanner(r)
	// Lines grow the buffer as they need; a collector holds one per device.
	sc.Buffer(make([]byte, min(1<<10, maxLine)), maxLine)
	sc.Split(scanLines)
	var ev Event
	var data strings.Builder
	hasData := false
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if hasData {
				ev.Data = strings.TrimSuffix(data.String(), "\n")
				if err := fn(ev); err != nil {
					return err
				}
			}
			ev.Type, ev.Retry, hasData = "", 0, false
			data.Reset()
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			if !strings.ContainsRune(value, 0) {
				ev.ID = value
			}
		case "event":
			ev.Type = value
		case "data":
			data.WriteString(value)
			data.WriteByte('\n')
			hasData = true
		case "retry":
			if ms, err := strconv.ParseUint(value, 10, 32); err == nil {
				ev.Retry = time.Duration(ms) * time.Millisecond
				if err := fn(Event{Retry: ev.Retry, Type: "retry"}); err != nil {
					return err
				}
			}
		}
	}
	return sc.Err()
}

// scanLines splits on \r\n, \n or a lone \r.
func scanLines(data []byte, atEOF bool) (int, []byte, error) {
	for i, c := range data {
		switch c {
		case '\n':
			return i + 1, data[:i], nil
		case '\r':
			if i+1 < len(data) {
				if data[i+1] == '\n' {
					return i + 2, data[:i], nil
				}
				return i + 1, data[:i], nil
			}
			if atEOF {
				return i + 1, data[:i], nil
			}
			return 0, nil, nil // need the next byte to tell \r from \r\n
		}
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

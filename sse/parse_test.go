package sse

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// sseEvent is one event dispatched by sseParser.
type sseEvent struct {
	typ    string // "message" when no event field was given
	data   string
	lastID string // the parser's last event ID when the event was dispatched
	hasID  bool   // the event's own block had an id field
}

// sseParser follows the WHATWG HTML "Interpreting an event stream"
// algorithm (section 9.2.6), fed one line at a time.
type sseParser struct {
	lastID  string
	retry   string // last valid retry value
	typ     string
	data    strings.Builder
	hasData bool
	hasID   bool
}

// line processes one line (without its terminator). A blank line
// dispatches the buffered event, if it has data.
func (p *sseParser) line(l string) (sseEvent, bool) {
	if l == "" {
		return p.dispatch()
	}
	if l[0] == ':' {
		return sseEvent{}, false
	}
	field, value := l, ""
	if i := strings.IndexByte(l, ':'); i >= 0 {
		field, value = l[:i], l[i+1:]
		value = strings.TrimPrefix(value, " ")
	}
	switch field {
	case "event":
		p.typ = value
	case "data":
		p.data.WriteString(value)
		p.data.WriteByte('\n')
		p.hasData = true
	case "id":
		if !strings.ContainsRune(value, 0) {
			p.lastID = value
			p.hasID = true
		}
	case "retry":
		if value != "" && strings.Trim(value, "0123456789") == "" {
			p.retry = value
		}
	}
	return sseEvent{}, false
}

func (p *sseParser) dispatch() (sseEvent, bool) {
	defer func() {
		p.typ, p.hasData, p.hasID = "", false, false
		p.data.Reset()
	}()
	if !p.hasData {
		return sseEvent{}, false
	}
	typ := p.typ
	if typ == "" {
		typ = "message"
	}
	return sseEvent{typ: typ, data: strings.TrimSuffix(p.data.String(), "\n"), lastID: p.lastID, hasID: p.hasID}, true
}

// decodeStream decodes b as UTF-8 with replacement and strips one BOM,
// as the spec's stream decoder does.
func decodeStream(b []byte) string {
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	return strings.TrimPrefix(s, "\uFEFF")
}

// parseAll parses a complete stream; lines end in CRLF, LF or CR. A
// final event without its blank line is discarded, as the spec says.
func parseAll(b []byte) (events []sseEvent, p *sseParser) {
	p = &sseParser{}
	s := decodeStream(b)
	for s != "" {
		i := strings.IndexAny(s, "\r\n")
		if i < 0 {
			break // an incomplete line at the end of the stream is ignored
		}
		l := s[:i]
		if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
			s = s[i+2:]
		} else {
			s = s[i+1:]
		}
		if ev, ok := p.line(l); ok {
			events = append(events, ev)
		}
	}
	return events, p
}

// streamReader parses events from a live response body.
type streamReader struct {
	r *bufio.Reader
	p sseParser
	// comments counts comment lines seen, for heartbeat tests.
	comments    int
	lastComment string
	pending     []string // lines split off at a lone CR
}

func newStreamReader(r io.Reader) *streamReader {
	return &streamReader{r: bufio.NewReader(r)}
}

// preamble reads up to the first blank line and checks that the stream
// opened with a retry hint.
func (s *streamReader) preamble() error {
	for {
		l, err := s.line()
		if err != nil {
			return err
		}
		if l == "" {
			break
		}
		s.p.line(l)
	}
	if s.p.retry == "" {
		return errors.New("stream did not start with a retry field")
	}
	return nil
}

// line reads one line; CR, LF and CRLF end lines.
func (s *streamReader) line() (string, error) {
	if len(s.pending) > 0 {
		l := s.pending[0]
		s.pending = s.pending[1:]
		return l, nil
	}
	raw, err := s.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	raw = strings.TrimSuffix(strings.TrimSuffix(raw, "\n"), "\r")
	raw = strings.ToValidUTF8(raw, "\uFFFD")
	ls := strings.Split(raw, "\r")
	s.pending = ls[1:]
	if strings.HasPrefix(ls[0], ":") {
		s.comments++
		s.lastComment = ls[0]
	}
	return ls[0], nil
}

// waitComments reads until n comment lines were seen in all; it fails on
// an event with data.
func (s *streamReader) waitComments(n int) error {
	for s.comments < n {
		l, err := s.line()
		if err != nil {
			return err
		}
		if ev, ok := s.p.line(l); ok {
			return fmt.Errorf("unexpected event %+v", ev)
		}
	}
	return nil
}

// next returns the next dispatched event. It treats CR, LF and CRLF as
// line ends (ReadString keeps CRLF together).
func (s *streamReader) next() (sseEvent, error) {
	for {
		l, err := s.line()
		if err != nil {
			return sseEvent{}, err
		}
		if ev, ok := s.p.line(l); ok {
			return ev, nil
		}
	}
}

package upstream

import (
	"errors"
	"fmt"
	"strings"
)

// Subjects: a record of topic "a/b/c" from device D goes to "eddy.D.a.b.c".
// Each topic level becomes one subject token. A level is copied as it is
// unless it is empty or holds a byte that a NATS token cannot carry or
// that would read as a wildcard; those are escaped like a URL, with %XX
// (two upper-case hex digits) per byte:
//
//   - bytes outside printable ASCII (0x21-0x7E): control bytes, space and
//     every byte of a non-ASCII UTF-8 character;
//   - '.', '*', '>' and the escape character '%' itself;
//   - a '_' at the start of a level (tokens starting with '_' are eddy's
//     own: eddy.D._gap);
//
// and an empty level is the token "%" alone. The escape is reversible and
// canonical: UnescapeTopic(EscapeTopic(t)) == t for every topic, and every
// subject a device publishes unescapes to exactly one topic.

// GapToken is the last token of the subject a device's gaps go to:
// eddy.<device>._gap.
const GapToken = "_gap"

// SubjectPrefix is the first token of every subject eddy publishes.
const SubjectPrefix = "eddy"

// ErrSubject is wrapped by UnescapeTopic for tokens that no topic escapes to.
var ErrSubject = errors.New("upstream: not an escaped topic")

const hexDigits = "0123456789ABCDEF"

// keep reports whether byte c at index i of a level is copied verbatim.
func keep(c byte, i int) bool {
	switch {
	case c < 0x21 || c > 0x7e:
		return false
	case c == '.' || c == '*' || c == '>' || c == '%':
		return false
	case c == '_' && i == 0:
		return false
	}
	return true
}

// AppendEscapedTopic appends the subject tokens of topic (levels joined by '.').
func AppendEscapedTopic(dst []byte, topic string) []byte {
	start := 0
	for i := 0; i <= len(topic); i++ {
		if i < len(topic) && topic[i] != '/' {
			continue
		}
		if start > 0 {
			dst = append(dst, '.')
		}
		dst = appendEscapedLevel(dst, topic[start:i])
		start = i + 1
	}
	return dst
}

func appendEscapedLevel(dst []byte, level string) []byte {
	if level == "" {
		return append(dst, '%')
	}
	for i := 0; i < len(level); i++ {
		c := level[i]
		if keep(c, i) {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '%', hexDigits[c>>4], hexDigits[c&15])
	}
	return dst
}

// EscapeTopic returns the subject tokens of topic.
func EscapeTopic(topic string) string { return string(AppendEscapedTopic(nil, topic)) }

// UnescapeTopic reverses EscapeTopic: tokens is the part of a subject after
// eddy.<device>. It refuses anything EscapeTopic does not produce, so the
// mapping is one to one.
func UnescapeTopic(tokens string) (string, error) {
	out := make([]byte, 0, len(tokens))
	for n, level := range strings.Split(tokens, ".") {
		if n > 0 {
			out = append(out, '/')
		}
		if level == "%" {
			continue
		}
		if level == "" {
			return "", fmt.Errorf("%w: empty token in %q", ErrSubject, tokens)
		}
		pos := 0 // index of the next byte within the unescaped level
		for i := 0; i < len(level); i++ {
			c := level[i]
			if c == '%' {
				if i+2 >= len(level) {
					return "", fmt.Errorf("%w: short escape in %q", ErrSubject, tokens)
				}
				hi, lo := unhex(level[i+1]), unhex(level[i+2])
				if hi < 0 || lo < 0 {
					return "", fmt.Errorf("%w: bad escape %q in %q", ErrSubject, level[i:i+3], tokens)
				}
				c = byte(hi<<4 | lo)
				if keep(c, pos) || c == '/' {
					return "", fmt.Errorf("%w: needless escape %q in %q", ErrSubject, level[i:i+3], tokens)
				}
				i += 2
			} else if !keep(c, pos) || c == '/' {
				return "", fmt.Errorf("%w: byte %q must be escaped in %q", ErrSubject, c, tokens)
			}
			out = append(out, c)
			pos++
		}
	}
	return string(out), nil
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// Subject returns eddy.<device>.<escaped topic>.
func Subject(device, topic string) string {
	b := make([]byte, 0, len(SubjectPrefix)+len(device)+len(topic)+8)
	b = append(b, SubjectPrefix...)
	b = append(b, '.')
	b = append(b, device...)
	b = append(b, '.')
	return string(AppendEscapedTopic(b, topic))
}

// GapSubject returns eddy.<device>._gap.
func GapSubject(device string) string { return SubjectPrefix + "." + device + "." + GapToken }

// DeviceFilter returns eddy.<device>.>, every subject of one device.
func DeviceFilter(device string) string { return SubjectPrefix + "." + device + ".>" }

// ValidDevice reports whether name can be a device's subject token:
// 1 to 64 of [A-Za-z0-9_-].
func ValidDevice(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("upstream: device name %q: want 1 to 64 characters of [A-Za-z0-9_-]", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("upstream: device name %q: byte %q is not in [A-Za-z0-9_-]", name, c)
		}
	}
	return nil
}

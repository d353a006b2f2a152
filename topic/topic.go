// Package topic owns topic names and MQTT-style topic filters: what a valid
// name or filter is, and whether a filter matches a name.
//
// Names are '/'-separated UTF-8 strings. A filter is a name in which a level
// may be '+' (exactly one level) and the last level may be '#' (that level's
// parent and everything below it), as in MQTT 3.1.1 section 4.7.
package topic

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxLen is the longest topic name or filter accepted, in bytes.
const MaxLen = 1024

// ErrInvalid is wrapped by every error about a malformed name or filter.
var ErrInvalid = errors.New("invalid topic")

// ValidName reports whether s is a usable topic name: non-empty, UTF-8,
// at most MaxLen bytes, with no wildcard or control characters.
func ValidName(s string) error {
	if err := validText(s); err != nil {
		return err
	}
	if strings.ContainsAny(s, "+#") {
		return fmt.Errorf("%w: name %q contains a wildcard", ErrInvalid, s)
	}
	return nil
}

func validText(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrInvalid)
	}
	if len(s) > MaxLen {
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalid, MaxLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalid)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: %q contains a control character", ErrInvalid, s)
		}
	}
	return nil
}

// Filter is a parsed, valid topic filter.
type Filter struct {
	raw    string
	levels []string
	all    bool // the filter is "#"
}

// ParseFilter validates a filter.
func ParseFilter(s string) (Filter, error) {
	if err := validText(s); err != nil {
		return Filter{}, err
	}
	levels := strings.Split(s, "/")
	for i, l := range levels {
		switch {
		case l == "#" && i != len(levels)-1:
			return Filter{}, fmt.Errorf("%w: filter %q: '#' must be the last level", ErrInvalid, s)
		case l != "#" && l != "+" && strings.ContainsAny(l, "+#"):
			return Filter{}, fmt.Errorf("%w: filter %q: a wildcard must fill a whole level", ErrInvalid, s)
		}
	}
	return Filter{raw: s, levels: levels, all: s == "#"}, nil
}

// MustParseFilter is ParseFilter for filters known at compile time.
func MustParseFilter(s string) Filter {
	f, err := ParseFilter(s)
	if err != nil {
		panic(err)
	}
	return f
}

// String returns the filter as written.
func (f Filter) String() string { return f.raw }

// Match reports whether the topic name matches the filter. Names starting
// with '$' are not matched by a leading wildcard, as in MQTT.
func (f Filter) Match(name string) bool {
	if f.all {
		return !strings.HasPrefix(name, "$")
	}
	if len(f.levels) > 0 && (f.levels[0] == "+" || f.levels[0] == "#") && strings.HasPrefix(name, "$") {
		return false
	}
	rest := name
	for i, l := range f.levels {
		if l == "#" {
			return true
		}
		level, more := cut(rest)
		if l != "+" && l != level {
			return false
		}
		if !more {
			// "a/#" also matches "a": '#' includes its parent level.
			return i == len(f.levels)-1 || (i == len(f.levels)-2 && f.levels[i+1] == "#")
		}
		rest = rest[len(level)+1:]
	}
	return false
}

func cut(s string) (level string, more bool) {
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i], true
	}
	return s, false
}

// Set is a list of filters matched as one: a name matches when any filter does.
// The zero Set matches nothing; use All for "#".
type Set []Filter

// All is the set {"#"}.
func All() Set { return Set{MustParseFilter("#")} }

// ParseSet parses every filter; an empty list means All.
func ParseSet(filters []string) (Set, error) {
	if len(filters) == 0 {
		return All(), nil
	}
	s := make(Set, 0, len(filters))
	for _, f := range filters {
		pf, err := ParseFilter(f)
		if err != nil {
			return nil, err
		}
		s = append(s, pf)
	}
	return s, nil
}

// Match reports whether any filter in the set matches name.
func (s Set) Match(name string) bool {
	for _, f := range s {
		if f.Match(name) {
			return true
		}
	}
	return false
}

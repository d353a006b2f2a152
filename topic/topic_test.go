package topic

import (
	"errors"
	"testing"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		filter, name string
		want         bool
	}{
		{"#", "a", true},
		{"#", "a/b/c", true},
		{"#", "$SYS/x", false},
		{"a/#", "a", true},
		{"a/#", "a/b", true},
		{"a/#", "a/b/c", true},
		{"a/#", "ab", false},
		{"a/+", "a/b", true},
		{"a/+", "a", false},
		{"a/+", "a/b/c", false},
		{"+/b", "a/b", true},
		{"+/b", "$x/b", false},
		{"+", "a", true},
		{"+", "a/b", false},
		{"+/+", "/x", true},
		{"a/b", "a/b", true},
		{"a/b", "a/b/", false},
		{"a/+/c/#", "a/x/c", true},
		{"a/+/c/#", "a/x/c/d/e", true},
		{"a/+/c/#", "a/x/d", false},
		{"sensors/+/pressure", "sensors/pump1/pressure", true},
	}
	for _, tt := range tests {
		f, err := ParseFilter(tt.filter)
		if err != nil {
			t.Fatalf("ParseFilter(%q): %v", tt.filter, err)
		}
		if got := f.Match(tt.name); got != tt.want {
			t.Errorf("%q.Match(%q) = %v, want %v", tt.filter, tt.name, got, tt.want)
		}
	}
}

func TestParseFilterErrors(t *testing.T) {
	for _, s := range []string{"", "a/#/b", "a#", "a/b+", "+a", "a\x00b", "\xff", "a\nb", string(make([]byte, MaxLen+1))} {
		if _, err := ParseFilter(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseFilter(%q) = %v, want ErrInvalid", s, err)
		}
	}
}

func TestValidName(t *testing.T) {
	if err := ValidName("sensors/pump1/pressure"); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"", "a/+", "a/#", "a\x01", "\xc3"} {
		if err := ValidName(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidName(%q) = %v, want ErrInvalid", s, err)
		}
	}
}

func TestSet(t *testing.T) {
	s, err := ParseSet([]string{"a/+", "b/#"})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Match("a/x") || !s.Match("b/y/z") || s.Match("c") {
		t.Errorf("set match wrong")
	}
	all, _ := ParseSet(nil)
	if !all.Match("anything/at/all") {
		t.Errorf("empty set should match all")
	}
	if (Set{}).Match("a") {
		t.Errorf("zero Set matched")
	}
}

func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{"#", "a/+/b", "a/#", "+/+", "a//b", "$SYS/#"} {
		f.Add(s, "a/b")
	}
	f.Fuzz(func(t *testing.T, filter, name string) {
		fl, err := ParseFilter(filter)
		if err != nil {
			return
		}
		got := fl.Match(name)
		// A filter without wildcards matches exactly itself.
		if ValidName(filter) == nil && got != (filter == name) {
			t.Fatalf("literal filter %q matched %q = %v", filter, name, got)
		}
		if fl.String() != filter {
			t.Fatalf("String() = %q", fl.String())
		}
	})
}

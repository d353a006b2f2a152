package upstream

import (
	"errors"
	"strings"
	"testing"
)

func TestEscapeTopic(t *testing.T) {
	cases := []struct{ topic, want string }{
		{"sensors/pump1/pressure", "sensors.pump1.pressure"},
		{"a", "a"},
		{"", "%"},
		{"/a//b/", "%.a.%.b.%"},
		{"a.b", "a%2Eb"},
		{"*/>/x*", "%2A.%3E.x%2A"},
		{"50%", "50%25"},
		{"_gap", "%5Fgap"},
		{"a_b/_", "a_b.%5F"},
		{"pump 1\t", "pump%201%09"},
		{"température", "temp%C3%A9rature"},
		{"$SYS/x-y:z", "$SYS.x-y:z"},
	}
	for _, c := range cases {
		got := EscapeTopic(c.topic)
		if got != c.want {
			t.Errorf("EscapeTopic(%q) = %q, want %q", c.topic, got, c.want)
		}
		back, err := UnescapeTopic(got)
		if err != nil || back != c.topic {
			t.Errorf("UnescapeTopic(%q) = %q, %v; want %q", got, back, err, c.topic)
		}
	}
	if got := Subject("dev-1", "a/b"); got != "eddy.dev-1.a.b" {
		t.Errorf("Subject = %q", got)
	}
	if GapSubject("d") == Subject("d", "_gap") {
		t.Error("a topic _gap collides with the gap subject")
	}
}

func TestUnescapeTopicRefuses(t *testing.T) {
	for _, s := range []string{"", "a..b", "a.", "%2", "%zz", "%2e", "%41", "%2F", "_gap", "a b", "a%", "é"} {
		if got, err := UnescapeTopic(s); !errors.Is(err, ErrSubject) {
			t.Errorf("UnescapeTopic(%q) = %q, %v; want ErrSubject", s, got, err)
		}
	}
}

func TestValidDevice(t *testing.T) {
	for _, ok := range []string{"pump-house-1", "A_b", strings.Repeat("x", 64)} {
		if err := ValidDevice(ok); err != nil {
			t.Errorf("ValidDevice(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a.b", "a b", "*", ">", strings.Repeat("x", 65), "é"} {
		if err := ValidDevice(bad); err == nil {
			t.Errorf("ValidDevice(%q) accepted", bad)
		}
	}
}

// FuzzTopicEscape: every topic survives the round trip and escapes to
// tokens a NATS subject can carry; every token string that unescapes
// escapes back to itself (the mapping is one to one).
func FuzzTopicEscape(f *testing.F) {
	for _, s := range []string{"a/b", "", "/", "a.b/*/>", "_x/%/é", "%25", "%.a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		esc := EscapeTopic(s)
		for _, tok := range strings.Split(esc, ".") {
			if tok == "" || tok == "*" || tok == ">" || strings.HasPrefix(tok, "_") {
				t.Fatalf("EscapeTopic(%q) = %q: token %q", s, esc, tok)
			}
			for i := 0; i < len(tok); i++ {
				if c := tok[i]; c < 0x21 || c > 0x7e {
					t.Fatalf("EscapeTopic(%q) = %q: byte %q", s, esc, c)
				}
			}
		}
		back, err := UnescapeTopic(esc)
		if err != nil || back != s {
			t.Fatalf("round trip of %q: %q -> %q, %v", s, esc, back, err)
		}
		if topic, err := UnescapeTopic(s); err == nil {
			if again := EscapeTopic(topic); again != s {
				t.Fatalf("UnescapeTopic(%q) = %q escapes to %q", s, topic, again)
			}
		}
	})
}

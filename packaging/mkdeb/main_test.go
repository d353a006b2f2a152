package main

import (
	"testing"
	"time"
)

func TestDebVersion(t *testing.T) {
	at := time.Date(2026, 12, 4, 17, 59, 59, 0, time.UTC)
	for _, c := range []struct{ describe, want string }{
		{"v1.2.3", "1.2.3"},
		{"1.2.3", "1.2.3"},
		{"v1.2.3-rc1", "1.2.3~rc1"},
		{"v1.2.3-4-gabcdef0", "1.2.3+git4.gabcdef0"},
		{"v1.2.3-rc1-4-gabcdef0", "1.2.3~rc1+git4.gabcdef0"},
		{"v1.2.3-dirty", "1.2.3+dirty"},
		{"v1.2.3-4-gabcdef0-dirty", "1.2.3+git4.gabcdef0+dirty"},
		{"abcdef0", "0~git20261204.175959.abcdef0"},
		{"abcdef0-dirty", "0~git20261204.175959.abcdef0+dirty"},
	} {
		got, err := debVersion(c.describe, at)
		if err != nil || got != c.want {
			t.Errorf("debVersion(%q) = %q, %v; want %q", c.describe, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "vx", "release-1", "dev"} {
		if got, err := debVersion(bad, at); err == nil {
			t.Errorf("debVersion(%q) = %q, want an error", bad, got)
		}
	}
}

// Versions must sort as the commits do: dpkg --compare-versions is the
// judge where it is installed.
func TestDebVersionOrder(t *testing.T) {
	at := time.Date(2026, 12, 4, 17, 59, 59, 0, time.UTC)
	order := []string{"abcdef0", "v1.2.3-rc1", "v1.2.3", "v1.2.3-4-gabcdef0", "v1.2.4"}
	var prev string
	for _, d := range order {
		v, err := debVersion(d, at)
		if err != nil {
			t.Fatal(err)
		}
		if prev != "" && !dpkgLess(t, prev, v) {
			t.Errorf("%s does not sort before %s", prev, v)
		}
		prev = v
	}
}

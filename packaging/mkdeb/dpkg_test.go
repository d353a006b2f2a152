package main

import (
	"os/exec"
	"testing"
)

// dpkgLess asks dpkg whether version a sorts before b.
func dpkgLess(t *testing.T, a, b string) bool {
	t.Helper()
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("dpkg not installed")
	}
	return exec.Command("dpkg", "--compare-versions", a, "lt", b).Run() == nil
}

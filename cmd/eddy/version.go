package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version and commit are set at build time:
// -ldflags "-X main.version=1.2.3 -X main.commit=<sha>". Without them the
// commit comes from the Go toolchain's VCS stamp, when it made one.
var (
	version = "dev"
	commit  = ""
)

// buildInfo describes this binary.
type buildInfo struct {
	Version, Commit, GoVersion, GOOS, GOARCH, GOARM string
	Modified                                        bool
}

func readBuildInfo() buildInfo {
	b := buildInfo{Version: version, Commit: commit, GoVersion: runtime.Version(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if b.Commit == "" {
					b.Commit = s.Value
				}
			case "vcs.modified":
				b.Modified = s.Value == "true"
			case "GOARM":
				b.GOARM = s.Value
			}
		}
	}
	return b
}

func printVersion(w io.Writer) {
	b := readBuildInfo()
	commit := b.Commit
	if commit == "" {
		commit = "unknown"
	}
	if b.Modified {
		commit += "+modified"
	}
	arch := b.GOARCH
	if b.GOARM != "" {
		arch += " GOARM=" + b.GOARM
	}
	fmt.Fprintf(w, "eddy %s (commit %s, %s, %s/%s)\n", b.Version, commit, b.GoVersion, b.GOOS, arch)
}

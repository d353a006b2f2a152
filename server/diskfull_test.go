package server

import (
	"context"
	"errors"
	"net/http"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/ringlog"
)

// TestHealthzReportsDiskFull caps the ring log's file size with
// RLIMIT_FSIZE, as a full disk would, and checks /healthz says 503 while
// commits fail and 200 again once space returns.
func TestHealthzReportsDiskFull(t *testing.T) {
	e := startServer(t, nil)
	c := h2Client(t, e)
	val := strings.Repeat("d", 100)
	appendSome := func(n int) {
		for range n {
			_, err := e.log.Append(ringlog.Record{Topic: "disk/full", Kind: ringlog.KindText, Value: []byte(val)})
			if err != nil && !errors.Is(err, ringlog.ErrNotDurable) {
				t.Fatalf("Append: %v", err)
			}
		}
	}
	appendSome(5000)
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	if err := e.log.Sync(ctx); err != nil {
		t.Fatal(err)
	}

	signal.Ignore(syscall.SIGXFSZ)
	defer signal.Reset(syscall.SIGXFSZ)
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	// Below the file's size, not at it: bbolt writes pages anywhere in
	// its file, so commits keep failing while the cap holds. (At the
	// file's size the log healed after one failed commit by trimming into
	// its free pages, and /healthz was sometimes never caught at 503.)
	capped := old
	capped.Cur = uint64(e.log.Stats().FileBytes) / 2
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &capped); err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old)
		}
	}
	defer restore()

	// The log heals itself by trimming within the cap, so failing commits
	// come in windows: look while appending.
	seen := ""
	for i := 0; i < 200 && seen == ""; i++ {
		appendSome(1000)
		time.Sleep(5 * time.Millisecond) // let the writer try a commit
		if resp, body := get(t, c, e.url("/healthz")); resp.StatusCode == http.StatusServiceUnavailable {
			seen = body
		}
	}
	if !strings.Contains(seen, "not writable") {
		t.Fatalf("/healthz never reported the failing disk (last 503 body %q); log stats %+v", seen, e.log.Stats())
	}

	restore()
	// The next commits succeed; /healthz follows.
	deadline := time.Now().Add(guard)
	for {
		appendSome(10)
		resp, body := get(t, c, e.url("/healthz"))
		if resp.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz after space returned: %d %s; log stats %+v", resp.StatusCode, body, e.log.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

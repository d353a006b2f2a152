package main

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"io"
	"log/slog"
)

type fixedBeat struct{ at time.Time }

func (f *fixedBeat) Beat() time.Time { return f.at }

// TestHealthCheck: the watchdog's check fails when the hub stopped or
// either loop hangs, and not for a full disk; /healthz's also fails for a
// full disk.
func TestHealthCheck(t *testing.T) {
	now := time.Now()
	diskFull := error(syscall.ENOSPC)
	for _, tc := range []struct {
		name                    string
		writer, hub             time.Time
		hubStopped              bool
		logErr                  error
		wantProgress, wantReady string // "" means healthy
	}{
		{"healthy", now, now, false, nil, "", ""},
		{"hub stopped", now, now, true, nil, "stream hub stopped", "stream hub stopped"},
		{"hub hung", now, now.Add(-time.Minute), false, nil, "stream hub stalled", "stream hub stalled"},
		{"writer hung", now.Add(-time.Minute), now, false, nil, "ring log writer stalled", "ring log writer stalled"},
		{"disk full", now, now, false, diskFull, "", "ring log not writable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan struct{})
			if tc.hubStopped {
				close(done)
			}
			h := &healthCheck{
				writer: &fixedBeat{tc.writer}, hub: &fixedBeat{tc.hub}, hubDone: done,
				hubErr: func() error { return errors.New("boom") },
				logErr: func() error { return tc.logErr },
				now:    func() time.Time { return now },
			}
			check := func(what string, err error, want string) {
				if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
					t.Errorf("%s: %v, want %q", what, err, want)
				}
			}
			check("progress", h.progress(), tc.wantProgress)
			check("ready", h.ready(context.Background()), tc.wantReady)
		})
	}
}

// TestWatchdogFeedsOnProgress runs the watchdog against a real
// NOTIFY_SOCKET: it sends WATCHDOG=1 while the check passes and stops
// while it fails.
func TestWatchdogFeedsOnProgress(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "40000") // fed every 20 ms
	t.Setenv("WATCHDOG_PID", "")
	os.Unsetenv("WATCHDOG_PID")
	var failing atomicErr
	ctx, cancel := context.WithCancel(context.Background())
	done := startWatchdog(ctx, failing.get, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer func() { cancel(); <-done }()
	count := func(d time.Duration) int {
		n := 0
		buf := make([]byte, 256)
		deadline := time.Now().Add(d)
		for {
			conn.SetReadDeadline(deadline)
			k, err := conn.Read(buf)
			if err != nil {
				return n
			}
			if strings.Contains(string(buf[:k]), "WATCHDOG=1") {
				n++
			}
		}
	}
	if n := count(300 * time.Millisecond); n == 0 {
		t.Fatal("a healthy eddy did not feed the watchdog")
	}
	failing.set(errors.New("ring log writer stalled"))
	count(50 * time.Millisecond) // drain what was in flight
	if n := count(300 * time.Millisecond); n != 0 {
		t.Fatalf("fed the watchdog %d times while the check failed", n)
	}
	failing.set(nil)
	if n := count(300 * time.Millisecond); n == 0 {
		t.Fatal("did not feed the watchdog again after recovering")
	}
}

type atomicErr struct {
	mu  sync.Mutex
	err error
}

func (a *atomicErr) get() error    { a.mu.Lock(); defer a.mu.Unlock(); return a.err }
func (a *atomicErr) set(err error) { a.mu.Lock(); a.err = err; a.mu.Unlock() }

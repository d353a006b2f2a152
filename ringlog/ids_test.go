package ringlog

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCleanRestartLeavesNoHole: a log closed cleanly gives back its unused
// reservation, so numbering continues at the next id, and LastSeq is the
// last record appended, not the reservation bound.
func TestCleanRestartLeavesNoHole(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, nil)
	appendN(t, l, 5, "t")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, dir, nil)
	if got := l.LastSeq(); got != 5 {
		t.Errorf("LastSeq after a clean restart = %d, want 5", got)
	}
	if got := l.NextSeq(); got != 6 {
		t.Errorf("NextSeq after a clean restart = %d, want 6", got)
	}
	s, err := l.Append(rec("t", 6))
	if err != nil || s != 6 {
		t.Fatalf("first append after a clean restart: %d, %v; want 6", s, err)
	}
	l.Close()
	checkConsistent(t, dir)
}

// TestIDsSurviveLostRingDB: whether ring.db is deleted, corrupt with the
// sidecar beside it, or corrupt with nothing else to go by, the new log
// numbers above every id issued before and has a new epoch.
func TestIDsSurviveLostRingDB(t *testing.T) {
	for _, tc := range []struct {
		name string
		lose func(t *testing.T, dir string)
	}{
		{"deleted", func(t *testing.T, dir string) { must(t, os.Remove(filepath.Join(dir, "ring.db"))) }},
		{"corrupt", func(t *testing.T, dir string) { corrupt(t, dir) }},
		{"corrupt without sidecar", func(t *testing.T, dir string) {
			corrupt(t, dir)
			must(t, os.Remove(filepath.Join(dir, idsFile)))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			o := &Options{ReserveBlock: 100}
			l := mustOpen(t, dir, o)
			seqs := appendN(t, l, 250, "t")
			old := l.Epoch()
			must(t, l.Close())
			tc.lose(t, dir)
			l = mustOpen(t, dir, o)
			s, err := l.Append(rec("t", 0))
			if err != nil {
				t.Fatal(err)
			}
			if s <= seqs[len(seqs)-1] {
				t.Errorf("after losing ring.db the first seq is %d; ids up to %d were issued", s, seqs[len(seqs)-1])
			}
			if l.Epoch() == old || len(l.Epoch()) != 16 {
				t.Errorf("epoch %q after losing ring.db; the old one was %q", l.Epoch(), old)
			}
			// A resume from an old id learns of the loss: the new log
			// holds nothing at or below the old ids.
			if l.Oldest() <= seqs[len(seqs)-1] {
				t.Errorf("Oldest %d does not mark the old ids as gone", l.Oldest())
			}
			must(t, l.Close())
			checkConsistent(t, dir)
		})
	}
}

func corrupt(t *testing.T, dir string) {
	must(t, os.WriteFile(filepath.Join(dir, "ring.db"), []byte(strings.Repeat("garbage!", 4096)), 0o600))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestClockFloor(t *testing.T) {
	if clockFloor(clockEpoch.Add(-time.Hour)) != 0 {
		t.Error("a clock before the epoch must give no floor")
	}
	a, b := clockFloor(clockEpoch.Add(time.Hour)), clockFloor(clockEpoch.Add(2*time.Hour))
	if want := uint64(3600) * clockRate; b-a != want {
		t.Errorf("floor grows %d per hour, want %d", b-a, want)
	}
	if clockFloor(time.Date(2050, 1, 1, 0, 0, 0, 0, time.UTC)) >= 1<<53 {
		t.Error("clock floors must stay exact in JavaScript numbers until 2050")
	}
}

// TestAppendNeverBlocksOnFailingDisk: while every commit fails (an I/O
// error, a read-only filesystem), Append returns at once: ErrNotDurable
// while ids are reserved, then ErrNoIDs, counted; and Close returns.
func TestAppendNeverBlocksOnFailingDisk(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, &Options{ReserveBlock: 64, SyncInterval: time.Millisecond})
	eio := func(int) error { return syscall.EIO }
	l.failWrites.Store(&eio)
	var notDurable, noIDs int
	start := time.Now()
	for i := range 500 {
		_, err := l.Append(rec("t", i))
		switch {
		case errors.Is(err, ErrNoIDs):
			noIDs++
		case errors.Is(err, ErrNotDurable), err == nil:
			notDurable++
		default:
			t.Fatalf("Append: %v", err)
		}
		if i == 10 {
			time.Sleep(20 * time.Millisecond) // let a commit fail
		}
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("500 appends on a failing disk took %v", took)
	}
	if noIDs == 0 || l.Stats().NoIDs != uint64(noIDs) {
		t.Errorf("%d appends refused, Stats.NoIDs %d; want the refusals counted", noIDs, l.Stats().NoIDs)
	}
	if notDurable == 0 || notDurable > 64 {
		t.Errorf("%d appends accepted; want at most the 64 reserved", notDurable)
	}
	// The writer keeps turning while commits fail: a full disk is not a
	// hung writer (the watchdog keeps being fed).
	b := l.Beat()
	for deadline := time.Now().Add(5 * time.Second); !l.Beat().After(b); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the writer's beat stopped while commits fail")
		}
	}
	done := make(chan error, 1)
	go func() { done <- l.Close() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs while the disk fails")
	}
	// Once the disk works again, numbering continues above everything
	// handed out.
	l = mustOpen(t, dir, &Options{ReserveBlock: 64})
	defer l.Close()
	if s, err := l.Append(rec("t", 0)); err != nil || s <= uint64(notDurable) {
		t.Errorf("after the outage: seq %d, %v", s, err)
	}
}

// TestTrimKeptWhenAddFails: on a full disk the writer commits a trim
// alone, then the add; when the add fails again, the trim's result must
// still be the log's state, or the next commit persists stale counters
// (the helper's recount at cleanup catches that).
func TestTrimKeptWhenAddFails(t *testing.T) {
	l, _ := openTest(t, &Options{MaxBytes: 1 << 20, SyncInterval: time.Hour})
	appendN(t, l, 2000, "fill")
	must(t, l.Sync(context.Background()))
	full := func(n int) error {
		if n > 0 {
			return syscall.ENOSPC // records do not fit; a trim alone does
		}
		return nil
	}
	l.failWrites.Store(&full)
	appendN2(t, l, 500)
	l.signalWriter()
	waitStat(t, l, "a commit to fail for want of space", func(s Stats) bool { return s.DiskFull >= 2 })
	if l.Stats().Trimmed == 0 {
		t.Fatal("the log did not trim to make room")
	}
	l.failWrites.Store(nil)
	must(t, l.Sync(context.Background()))
	st := l.Stats()
	if st.Records+int64(st.Trimmed) != 2500 {
		t.Errorf("%d records stored and %d trimmed; want 2500 in all", st.Records, st.Trimmed)
	}
}

// appendN2 appends n records that may be reported not durable.
func appendN2(t *testing.T, l *Log, n int) {
	t.Helper()
	for i := range n {
		if _, err := l.Append(rec("more", i)); err != nil && !errors.Is(err, ErrNotDurable) {
			t.Fatal(err)
		}
	}
}

func waitStat(t *testing.T, l *Log, what string, cond func(Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond(l.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %+v", what, l.Stats())
		}
		l.signalWriter()
		time.Sleep(5 * time.Millisecond)
	}
}

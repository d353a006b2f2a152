package ringlog

import (
	"context"
	"errors"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDiskFull caps the file size with RLIMIT_FSIZE (as a full disk would)
// and checks that appends report ErrNotDurable while readers still see
// every record, that the log makes room by trimming its oldest records,
// and that it is durable and consistent again once space returns.
func TestDiskFull(t *testing.T) {
	l, _ := openTest(t, &Options{MaxBytes: 8 << 20, SyncInterval: 5 * time.Millisecond})
	val := []byte(strings.Repeat("d", 100))
	add := func(n int) (notDurable int, last uint64) {
		for range n {
			seq, err := l.Append(Record{Topic: "disk/full", Kind: KindText, Value: val})
			if errors.Is(err, ErrNotDurable) {
				notDurable++
			} else if err != nil {
				t.Fatalf("Append: %v", err)
			}
			last = seq
		}
		return notDurable, last
	}
	add(5000)
	if err := l.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	size := l.Stats().FileBytes

	// The file may not grow any more; bbolt's writes past the cap get EFBIG.
	signal.Ignore(syscall.SIGXFSZ)
	defer signal.Reset(syscall.SIGXFSZ)
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	capped := old
	capped.Cur = uint64(size)
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &capped); err != nil {
		t.Fatal(err)
	}
	restore := func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
			t.Fatal(err)
		}
	}
	defer restore()

	notDurable := 0
	var last uint64
	for range 40 {
		n, s := add(1000)
		notDurable, last = notDurable+n, s
		time.Sleep(10 * time.Millisecond)
	}
	st := l.Stats()
	if st.DiskFull == 0 {
		t.Fatalf("no commit failed for want of space; the cap did not bite: %+v", st)
	}
	t.Logf("with the file capped at %d bytes: %d appends reported not durable, %d failed commits, stats %+v", size, notDurable, st.CommitErrors, st)
	if got, err := l.ReadAfter(nil, last-1, 10); err != nil || len(got) != 1 || got[0].Seq != last {
		t.Fatalf("the newest record is not readable while the disk is full: %v %v", got, err)
	}
	// Trimming made room: everything is durable even within the cap.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := l.WaitDurable(ctx, last); err != nil {
		t.Fatalf("records did not become durable within the capped file: %v (%+v)", err, l.Stats())
	}
	if fs := l.Stats().FileBytes; fs > size {
		t.Errorf("file grew past the cap: %d > %d", fs, size)
	}
	restore()
	_, last = add(1000)
	if err := l.WaitDurable(ctx, last); err != nil {
		t.Fatalf("not durable after space returned: %v", err)
	}
	if _, err := l.Append(Record{Topic: "disk/full", Kind: KindText, Value: val}); err != nil {
		t.Errorf("Append still failing after space returned: %v", err)
	}
}

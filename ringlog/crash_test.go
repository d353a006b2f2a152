package ringlog

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

const crashDirEnv = "RINGLOG_CRASH_CHILD_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		crashChild(dir)
		return
	}
	code := m.Run()
	if code == 0 {
		// Every Log's writer goroutine must have ended with Close.
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "leaked goroutines:", err)
			code = 1
		}
	}
	os.Exit(code)
}

var crashOpts = Options{MaxBytes: 2 << 20, SyncInterval: 20 * time.Millisecond, ReserveBlock: 5000}

// crashChild appends numbered records until it is killed, reporting on
// stdout the first seq of its run, the ids it has issued and the highest
// seq it knows to be durable.
func crashChild(dir string) {
	l, err := Open(dir, &crashOpts)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	out := bufio.NewWriter(os.Stdout)
	val := strings.Repeat("x", 80)
	for i := 0; ; i++ {
		seq, err := l.Append(Record{Topic: "crash/test", Kind: KindText, Value: []byte(fmt.Sprintf("%d %s", i, val))})
		if err != nil {
			fmt.Fprintln(out, "error", err)
			out.Flush()
			os.Exit(1)
		}
		if i == 0 {
			fmt.Fprintln(out, "first", seq)
		}
		if i%50 == 0 {
			fmt.Fprintln(out, "issued", seq)
			fmt.Fprintln(out, "durable", l.DurableSeq())
			out.Flush()
			time.Sleep(time.Millisecond) // about 25,000 records/s
		}
	}
}

// TestCrashSafety kills a writer with SIGKILL at random moments and checks,
// after every kill: bbolt's consistency check passes, seqs are strictly
// increasing, no id is reused, and only records not yet reported durable
// are lost.
func TestCrashSafety(t *testing.T) {
	rounds := 50
	if testing.Short() {
		rounds = 10
	}
	dir := t.TempDir()
	var maxIssued uint64
	budget := time.Now().Add(3 * time.Minute)
	var lostTotal, keptTotal int
	epoch := ""
	for round := 0; round < rounds && time.Now().Before(budget); round++ {
		first, issued, durable := runCrashChild(t, dir, time.Duration(20+rand.IntN(200))*time.Millisecond)
		if first <= maxIssued {
			t.Fatalf("round %d: first seq %d reuses an id (max issued before: %d)", round, first, maxIssued)
		}
		maxIssued = max(maxIssued, issued)
		checkConsistent(t, dir)

		l := mustOpen(t, dir, &crashOpts)
		recs := readAll(t, l, 0)
		assertIncreasing(t, recs)
		present := map[uint64]bool{}
		for _, r := range recs {
			present[r.Seq] = true
			if r.Seq >= first {
				i, _ := strconv.Atoi(strings.Fields(string(r.Value))[0])
				if r.Seq-first != uint64(i) {
					t.Fatalf("round %d: seq %d holds record %d of the run starting at %d", round, r.Seq, i, first)
				}
			}
		}
		for s := max(first, l.Oldest()); s <= durable; s++ {
			if !present[s] {
				t.Fatalf("round %d: seq %d was reported durable but is lost (durable %d, oldest %d)", round, s, durable, l.Oldest())
			}
		}
		last := uint64(0) // killed before anything was durable: all lost
		if len(recs) > 0 {
			last = recs[len(recs)-1].Seq
		}
		// Live fan-out starts at LastSeq: the last record that survived,
		// not the reservation bound; new ids start above every issued one.
		// (issued is the child's last report, made every 50 appends: later
		// ones may have survived too, so it bounds nothing from above.)
		if ls := l.LastSeq(); ls < last || len(recs) > 0 && ls != last || ls >= l.NextSeq() || l.NextSeq() <= issued {
			t.Fatalf("round %d: LastSeq %d NextSeq %d; last stored %d, issued %d", round, ls, l.NextSeq(), last, issued)
		}
		if epoch == "" {
			epoch = l.Epoch()
		} else if l.Epoch() != epoch {
			t.Fatalf("round %d: a crash changed the epoch %s -> %s", round, epoch, l.Epoch())
		}
		lostTotal += int(issued - min(max(last, first-1), issued))
		keptTotal += len(recs)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d rounds; ids issued up to %d; records reported issued but lost in crashes: %d", rounds, maxIssued, lostTotal)
}

// runCrashChild runs the child for about d, kills it with SIGKILL and
// returns what it reported last.
func runCrashChild(t *testing.T, dir string, d time.Duration) (first, issued, durable uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Under qemu-user (make test-arm) the child must be emulated too:
	// EDDY_TEST_EXEC names the emulator, as go test's -exec does.
	argv := append(strings.Fields(os.Getenv("EDDY_TEST_EXEC")), os.Args[0], "-test.run=^$")
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The kill is timed from the child's first record, not from its start.
	var kill *time.Timer
	defer func() {
		if kill != nil {
			kill.Stop()
		}
	}()
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue // a line cut short by the kill
		}
		n, _ := strconv.ParseUint(f[1], 10, 64)
		switch f[0] {
		case "first":
			first = n
			kill = time.AfterFunc(d, func() { cmd.Process.Signal(syscall.SIGKILL) })
		case "issued":
			issued = n
		case "durable":
			durable = n
		case "error":
			t.Fatalf("child: %s", sc.Text())
		}
	}
	cmd.Wait()
	if first == 0 {
		t.Fatalf("child reported nothing before it was killed")
	}
	return first, issued, durable
}

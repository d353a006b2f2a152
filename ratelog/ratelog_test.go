package ratelog

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// buf is a concurrency-safe log sink.
type buf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *buf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *buf) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := strings.TrimSpace(b.b.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func newTest() (*Logger, *buf) {
	var b buf
	h := slog.NewTextHandler(&b, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}})
	return New(slog.New(h), 10*time.Second), &b
}

func TestFloodIsOneLinePerPeriodWithCounts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, b := newTest()
		defer l.Stop()
		for i := range 1091 {
			l.Info("unauthorized", "server: refused", "n", i)
		}
		if got := b.lines(); len(got) != 1 || got[0] != `level=INFO msg="server: refused" n=0` {
			t.Fatalf("during the flood: %q", got)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		got := b.lines()
		if len(got) != 2 || got[1] != `level=INFO msg="server: refused" n=1090 suppressed=1089` {
			t.Fatalf("after the period: %q", got)
		}
		// Another reason has its own budget.
		if !l.Warn("oversized", "big") {
			t.Error("a new reason was held back")
		}
		// Quiet for a period: the next event is logged at once, no count.
		time.Sleep(time.Minute)
		if !l.Info("unauthorized", "server: refused", "n", 9999) {
			t.Error("an event after a quiet period was held back")
		}
		got = b.lines()
		if len(got) != 4 || got[3] != `level=INFO msg="server: refused" n=9999` {
			t.Fatalf("after a quiet period: %q", got)
		}
	})
}

func TestSteadyStreamLogsOncePerPeriod(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, b := newTest()
		defer l.Stop()
		for range 600 { // 10 events a second for a minute
			l.Warn("bad", "bad input")
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		got := b.lines()
		if len(got) < 6 || len(got) > 7 {
			t.Fatalf("%d lines for a minute at 10/s, want 6 or 7:\n%s", len(got), strings.Join(got, "\n"))
		}
		total := 0
		for _, line := range got {
			n := 0
			if _, s, ok := strings.Cut(line, "suppressed="); ok {
				fmt.Sscan(s, &n)
			}
			total += 1 + n
		}
		if total != 600 {
			t.Errorf("the lines account for %d events, want 600:\n%s", total, strings.Join(got, "\n"))
		}
	})
}

func TestStopCancelsSummaries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, b := newTest()
		l.Info("r", "x")
		l.Info("r", "x")
		l.Stop()
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := b.lines(); len(got) != 1 {
			t.Errorf("lines after Stop: %q", got)
		}
	})
}

func TestReasonsAreBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, _ := newTest()
		defer l.Stop()
		for i := range 10 * MaxReasons {
			l.Info(fmt.Sprint("reason-", i), "x")
		}
		l.mu.Lock()
		n := len(l.reasons)
		l.mu.Unlock()
		if n > MaxReasons+1 {
			t.Errorf("%d reasons tracked, want at most %d", n, MaxReasons+1)
		}
	})
}

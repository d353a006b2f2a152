package backoff

import (
	"context"
	"testing"
	"time"
)

// TestSchedule: delays double from First up to Max, each within its upper
// half, and Reset starts again from First.
func TestSchedule(t *testing.T) {
	b := Backoff{First: 100 * time.Millisecond, Max: time.Second}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for round := range 2 {
		for i, w := range want {
			w *= time.Millisecond
			for range 50 {
				c := b // the same step, drawn again
				if d := c.Next(); d < w/2 || d > w {
					t.Fatalf("round %d step %d: %v, want %v to %v", round, i, d, w/2, w)
				}
			}
			b.Next()
		}
		b.Reset()
	}
}

// TestJitterSpreads: a fleet does not retry in step.
func TestJitterSpreads(t *testing.T) {
	seen := map[time.Duration]bool{}
	for range 100 {
		seen[Jitter(time.Second)] = true
	}
	if len(seen) < 50 {
		t.Fatalf("100 draws gave %d distinct delays", len(seen))
	}
	if Jitter(0) != 0 || Jitter(-time.Second) != 0 {
		t.Fatal("a delay of zero or less must stay zero")
	}
}

// TestEdges: a First above Max is capped; a zero First still moves on.
func TestEdges(t *testing.T) {
	b := Backoff{First: time.Minute, Max: time.Second}
	if d := b.Next(); d > time.Second {
		t.Fatalf("first delay %v above Max", d)
	}
	z := Backoff{Max: time.Second}
	for range 40 {
		z.Next()
	}
	if d := z.Next(); d < 500*time.Millisecond {
		t.Fatalf("a zero First never grew: %v", d)
	}
}

func TestSleepEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := Backoff{First: time.Hour, Max: time.Hour}
	if b.Sleep(ctx) {
		t.Fatal("Sleep reported a live context after cancel")
	}
	if !SleepFor(context.Background(), time.Millisecond) {
		t.Fatal("SleepFor reported a dead context")
	}
}

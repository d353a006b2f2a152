// Package backoff owns eddy's one schedule for retrying over a network:
// delays that double from a first delay up to a cap, each drawn at random
// from its upper half, so that a fleet of devices, collectors or tails
// does not retry in step after an outage they shared (a broker restart,
// a NATS leader election, a device reboot).
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is one retry loop's schedule. The zero value with First and Max
// set is ready; it is not safe for concurrent use (one loop owns it).
type Backoff struct {
	First time.Duration // the first delay (before jitter); read at the start and after Reset
	Max   time.Duration // the cap (before jitter)
	cur   time.Duration
}

// Next returns the next delay: d/2 to d, where d starts at First and
// doubles on each call up to Max.
func (b *Backoff) Next() time.Duration {
	if b.cur == 0 {
		b.cur = max(b.First, time.Nanosecond)
	}
	d := min(b.cur, b.Max)
	b.cur = min(2*b.cur, max(b.Max, b.First))
	return Jitter(d)
}

// Reset starts the schedule again from First: the operation made progress.
func (b *Backoff) Reset() { b.cur = 0 }

// Sleep waits for Next's delay, or until ctx ends; it reports whether ctx
// is still alive.
func (b *Backoff) Sleep(ctx context.Context) bool {
	return SleepFor(ctx, b.Next())
}

// Jitter draws a delay from d/2 to d.
func Jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}

// SleepFor waits for d or until ctx ends; it reports whether ctx is alive.
func SleepFor(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

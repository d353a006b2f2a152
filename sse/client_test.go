package sse

import (
	"fmt"
	"testing"
	"time"
)

// events makes n events on topics in turn, seqs from 1.
func makeEvents(n, topics int) []*event {
	evs := make([]*event, n)
	for i := range evs {
		evs[i] = &event{seq: uint64(i + 1), topic: fmt.Sprintf("t/%d", i%topics)}
	}
	return evs
}

// TestDownsampleBounded pushes far more events, on far more topics, than
// the buffer holds, one at a time and in batches: the queue never exceeds
// the buffer, every event is delivered or counted in a gap, and the
// latest value of the newest topics survives.
func TestDownsampleBounded(t *testing.T) {
	for _, tc := range []struct{ buffer, topics, batch int }{
		{64, 3, 1}, {64, 3, 500}, {64, 1000, 1}, {64, 1000, 333}, {1, 5, 7},
	} {
		t.Run(fmt.Sprintf("buffer%d_topics%d_batch%d", tc.buffer, tc.topics, tc.batch), func(t *testing.T) {
			c := newClient(params{}, tc.buffer, &Metrics{})
			evs := makeEvents(20000, tc.topics)
			var got []*event
			var dropped uint64
			var last uint64
			for i := 0; i < len(evs); i += tc.batch {
				c.push(evs[i:min(i+tc.batch, len(evs))])
				if n := len(c.queue); n > tc.buffer {
					t.Fatalf("queue holds %d events, buffer is %d", n, tc.buffer)
				}
				if i%(3*tc.batch) == 0 { // the writer runs now and then
					out, g, _, _ := c.take(nil, time.Now())
					dropped += g.dropped
					for _, ev := range out {
						if ev.seq <= last {
							t.Fatalf("seq %d after %d", ev.seq, last)
						}
						last = ev.seq
					}
					got = append(got, out...)
				}
			}
			out, g, _, _ := c.take(nil, time.Now())
			got = append(got, out...)
			dropped += g.dropped
			if uint64(len(got))+dropped != uint64(len(evs)) {
				t.Fatalf("%d delivered + %d dropped != %d", len(got), dropped, len(evs))
			}
			if got[len(got)-1].seq != uint64(len(evs)) {
				t.Fatalf("the newest event %d was not kept (last %d)", len(evs), got[len(got)-1].seq)
			}
		})
	}
}

func TestExactOverflowDetaches(t *testing.T) {
	c := newClient(params{mode: modeExact}, 8, &Metrics{})
	if !c.push(makeEvents(8, 2)) {
		t.Fatal("detached with a queue that fits")
	}
	evs := makeEvents(20, 2)
	if c.push(evs[8:]) {
		t.Fatal("still attached after overflow")
	}
	out, g, detached, _ := c.take(nil, time.Now())
	if !detached || len(out) != 8 || g.dropped != 0 || c.position() != 8 {
		t.Fatalf("take: %d events, gap %+v, detached %v, cursor %d", len(out), g, detached, c.position())
	}
}

// TestRateBounded pushes many topics through a rate-capped client that is
// never allowed to send: the queue stays bounded and ids stay ordered.
func TestRateBounded(t *testing.T) {
	c := newClient(params{interval: time.Hour}, 16, &Metrics{})
	c.push(makeEvents(5000, 100))
	if len(c.queue) > 16 {
		t.Fatalf("queue holds %d, buffer 16", len(c.queue))
	}
	out, g, _, wait := c.take(nil, time.Now())
	if len(out) == 0 || g.dropped == 0 || wait != 0 && len(out) == 0 {
		t.Fatalf("take: %d events, gap %+v, wait %v", len(out), g, wait)
	}
	for i := 1; i < len(out); i++ {
		if out[i].seq <= out[i-1].seq {
			t.Fatalf("seq %d after %d", out[i].seq, out[i-1].seq)
		}
	}
	if len(c.lastSent) > 2*16+len(out) {
		t.Fatalf("lastSent holds %d topics", len(c.lastSent))
	}
}

// TestRateSlowWriteAnnouncesGap: a rate-capped client's superseded values
// are its cap's doing while its writes are quick, and a gap once a write
// took longer than an interval: the client could not take the rate it
// asked for, and must be told what it missed.
func TestRateSlowWriteAnnouncesGap(t *testing.T) {
	const interval = time.Second
	c := newClient(params{interval: interval}, 64, &Metrics{})
	now := time.Now()
	ev := func(seq uint64, topic string) []*event { return []*event{{seq: seq, topic: topic}} }

	c.push(ev(1, "a"))
	if out, _, _, _ := c.take(nil, now); len(out) != 1 {
		t.Fatalf("first take: %d events", len(out))
	}
	// Within the interval: 2 is superseded by 3 (the cap), a quick write.
	c.push(ev(2, "a"))
	c.push(ev(3, "a"))
	if c.wrote(time.Millisecond) {
		t.Fatal("a quick write made a gap due")
	}
	now = now.Add(interval)
	out, g, _, _ := c.take(nil, now)
	if len(out) != 1 || out[0].seq != 3 || g.dropped != 0 {
		t.Fatalf("after the cap: %d events (first %v), gap %+v; want 3 alone, no gap", len(out), out, g)
	}
	// The writer is now stuck in a write for longer than the interval
	// while 4, 5 and 6 arrive: 4 and 5 were skipped because of the client.
	c.push(ev(4, "a"))
	c.push(ev(5, "a"))
	c.push(ev(6, "a"))
	if !c.wrote(interval + time.Millisecond) {
		t.Fatal("a slow write made no gap due")
	}
	now = now.Add(2 * interval)
	out, g, _, _ = c.take(nil, now)
	if len(out) != 1 || out[0].seq != 6 {
		t.Fatalf("after the slow write: %d events, want 6 alone", len(out))
	}
	if g.dropped != 2 || g.from != 4 || g.to != 5 {
		t.Fatalf("gap %+v, want 2 dropped, 4..5", g)
	}
}

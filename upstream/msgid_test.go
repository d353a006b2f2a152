package upstream

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestMsgIDDropsLateCopies: a publisher dies with its publish unit still
// in the network; its successor resumes from the stream (which has not
// seen it yet) and publishes the same records; then the dead publisher's
// copy arrives, within the duplicate window. JetStream drops it: by its
// Nats-Msg-Id, and by its condition on the device's last message (each
// guard alone keeps it out here; TestExpectedLastRefusesLateCopies has
// the copy arrive when only the condition can).
func TestMsgIDDropsLateCopies(t *testing.T) {
	t.Cleanup(func() { checkNoLeaks(t) }) // runs last: after everything the test started is closed
	if testing.Short() {
		t.Skip("runs a 3-node cluster")
	}
	lateCopy(t, 30*time.Second, false) // the late copy arrives well within the window
}

// TestExpectedLastRefusesLateCopies: like TestMsgIDDropsLateCopies, but
// the dead publisher's copy arrives after the duplicate window has
// passed, so JetStream no longer knows its Nats-Msg-Id. Only the
// condition on the device's last stored message
// (Nats-Expected-Last-Subject-Sequence on eddy.<device>.>) keeps it out:
// the copy expects the stream as it was before its successor stored the
// same records. (Without the header the copy is stored a second time,
// after them.)
func TestExpectedLastRefusesLateCopies(t *testing.T) {
	t.Cleanup(func() { checkNoLeaks(t) })
	lateCopy(t, 0, true) // testOptions' window of 1s, waited out
}

// lateCopy runs the scenario: records 1-10 stored, 11-20 held in the
// network when their publisher dies, its successor stores 11-20, then
// the held copy is released (after the duplicate window when
// afterWindow). The stream must hold 1-20 once each, in order.
func lateCopy(t *testing.T, window time.Duration, afterWindow bool) {
	c := newTestCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	opts := testOptions(c, "a")
	if window > 0 {
		opts.Duplicates = window
	}
	opts.Servers = c.urls()[:1]
	a, err := Connect(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.EnsureStream(ctx); err != nil {
		t.Fatal(err)
	}
	sa := a.NewSender("late", "e1", nil)
	if _, _, err := sa.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	sendSeqs(ctx, t, sa, 1, 10)
	if err := sa.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	c.proxies[0].holdBack()
	sendSeqs(ctx, t, sa, 11, 20)
	eventually(t, 10*time.Second, "the unit in flight held in the network", func() bool {
		c.proxies[0].mu.Lock()
		defer c.proxies[0].mu.Unlock()
		return len(c.proxies[0].held) > 0
	})
	sa.Close()
	a.Close() // the publisher dies; its unit is still on its way

	opts.Servers = c.urls()[1:]
	b, err := Connect(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	sb := b.NewSender("late", "e1", nil)
	after, _, err := sb.Resume(ctx)
	if err != nil || after != 10 {
		t.Fatalf("resume: after %d, %v; want 10", after, err)
	}
	sendSeqs(ctx, t, sb, after+1, 20)
	if err := sb.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	sb.Close()
	if afterWindow {
		time.Sleep(3 * opts.Duplicates) // the stream forgets the message ids
	}
	c.proxies[0].release() // the dead publisher's copy arrives
	time.Sleep(500 * time.Millisecond)
	var seqs []uint64
	for _, m := range readStream(t, b.JetStream(), "EDDY") {
		seqs = append(seqs, m.seq)
	}
	want := make([]uint64, 20)
	for i := range want {
		want[i] = uint64(i + 1)
	}
	if fmt.Sprint(seqs) != fmt.Sprint(want) {
		t.Errorf("stream holds %v, want %v", seqs, want)
	}
}

// sendSeqs sends records from..to of topic t/x.
func sendSeqs(ctx context.Context, t *testing.T, s *Sender, from, to uint64) {
	t.Helper()
	for seq := from; seq <= to; seq++ {
		m := &Message{Seq: seq, Topic: "t/x", Time: time.Now(), Body: fmt.Appendf(nil, `{"seq":%d,"topic":"t/x","value":%d}`, seq, seq)}
		if err := s.Send(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
}

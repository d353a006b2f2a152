package upstream

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestMsgIDDropsLateCopies: a publisher dies with messages still in the
// network; its successor resumes from the stream (which has not seen them
// yet) and publishes the same records; then the dead publisher's copies
// arrive. Nats-Msg-Id makes JetStream drop them: each record is stored
// once. (Without the header this test stores ten records twice.)
func TestMsgIDDropsLateCopies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 3-node cluster")
	}
	c := newTestCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	opts := testOptions(c, "a")
	opts.Duplicates = 30 * time.Second // the late copies arrive well within it
	opts.Servers = c.urls()[:1]
	a, err := Connect(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.EnsureStream(ctx); err != nil {
		t.Fatal(err)
	}
	msg := func(seq uint64) *Message {
		return &Message{Seq: seq, Topic: "t/x", Time: time.Now(), Body: fmt.Appendf(nil, `{"seq":%d,"topic":"t/x","value":%d}`, seq, seq)}
	}
	sa := a.NewSender("late", "e1", nil)
	if _, _, err := sa.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 10; seq++ {
		if err := sa.Send(ctx, msg(seq)); err != nil {
			t.Fatal(err)
		}
	}
	if err := sa.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	c.proxies[0].holdBack()
	for seq := uint64(11); seq <= 20; seq++ {
		if err := sa.Send(ctx, msg(seq)); err != nil {
			t.Fatal(err)
		}
	}
	a.NATS().Flush() // into the network, where they stay
	a.Close()        // the publisher dies; its messages are still on their way

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
	for seq := after + 1; seq <= 20; seq++ {
		if err := sb.Send(ctx, msg(seq)); err != nil {
			t.Fatal(err)
		}
	}
	if err := sb.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	c.proxies[0].release() // the dead publisher's copies arrive
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

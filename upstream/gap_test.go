package upstream

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/ringlog"
)

// TestPushGap: while upstream is unreachable the device goes on
// recording and its log trims records that never went upstream; when
// upstream is back, push publishes one gap on eddy.<device>._gap for
// them, counts it, and continues with the records the log still holds.
func TestPushGap(t *testing.T) {
	c := clusterTest(t, 1, "runs a JetStream node")
	l, err := ringlog.Open(t.TempDir(), &ringlog.Options{SyncInterval: 20 * time.Millisecond, MaxAge: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	o := testOptions(c, "gap")
	o.Replicas = 1
	conn, err := Connect(o)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stats := &Stats{}
	p, err := NewPusher(conn, l, PushOptions{Device: "gappy", Stats: stats})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	appendN := func(n int) {
		for i := range n {
			if _, err := l.Append(ringlog.Record{Topic: "g/v", Kind: ringlog.KindJSON, Value: []byte(strconv.Itoa(i))}); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendN(10)
	eventually(t, 20*time.Second, "the first records upstream", func() bool { return stats.Published.Load() == 10 })

	c.cutAll(true)
	eventually(t, 10*time.Second, "the pusher noticing", func() bool { return !conn.Connected() })
	// More than the publisher's window (64): the rest stays in the log,
	// which trims it before upstream is back. (What the log still has in
	// memory is published; what it has not is the gap.)
	appendN(200)
	// Age trimming runs with commits: keep appending until they are gone.
	eventually(t, 20*time.Second, "the log trimming them", func() bool {
		appendN(1)
		time.Sleep(50 * time.Millisecond)
		return l.Oldest() > 210
	})
	t.Logf("before upstream is back: oldest %d, last %d, acked %d, published %d, failures %d, connected %v",
		l.Oldest(), l.LastSeq(), stats.AckedSeq.Load(), stats.Published.Load(), stats.Failures.Load(), conn.Connected())
	c.cutAll(false)
	last := l.LastSeq()
	eventually(t, 30*time.Second, "every record upstream or in a gap", func() bool {
		return stats.AckedSeq.Load() >= last
	})
	if g := stats.Gaps.Load(); g != 1 || stats.GapRecords.Load() == 0 {
		t.Fatalf("%d gaps covering %d records, want 1", g, stats.GapRecords.Load())
	}
	if got := stats.Published.Load() + stats.GapRecords.Load(); got != last {
		t.Errorf("published %d + in gaps %d = %d, want every seq up to %d", stats.Published.Load(), stats.GapRecords.Load(), got, last)
	}
	msgs := readStream(t, conn.JetStream(), "EDDY")
	var want uint64 = 1
	for _, m := range msgs {
		if m.gapFrom != "" {
			if m.subject != GapSubject("gappy") || m.gapFrom != strconv.FormatUint(want, 10) || m.seq < want {
				t.Errorf("gap %s..%d on %s, want from %d on %s", m.gapFrom, m.seq, m.subject, want, GapSubject("gappy"))
			}
			t.Logf("gap message: %s %s", m.subject, m.body)
			want = m.seq + 1
			continue
		}
		if m.seq != want {
			t.Fatalf("stream: seq %d where %d was due", m.seq, want)
		}
		want++
	}
	if want != last+1 {
		t.Errorf("stream ends before %d, want after %d", want, last)
	}
}

// TestTooLargeGoesAsGap: a record larger than the server's max_payload
// would be refused on every retry and wedge its device; it goes upstream
// as a one-record gap that says so, and the records after it follow.
func TestTooLargeGoesAsGap(t *testing.T) {
	c := clusterTest(t, 1, "runs a JetStream node")
	o := testOptions(c, "big")
	o.Replicas = 1
	conn, err := Connect(o)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := conn.EnsureStream(ctx); err != nil {
		t.Fatal(err)
	}
	s := conn.NewSender("big", "e1", nil)
	defer s.Close()
	if _, _, err := s.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	huge := []byte(`"` + strings.Repeat("x", int(conn.nc.MaxPayload())) + `"`)
	for _, m := range []*Message{
		{Seq: 1, Topic: "t/x", Time: time.Now(), Body: []byte("1")},
		{Seq: 2, Topic: "t/x", Time: time.Now(), Body: huge},
		{Seq: 3, Topic: "t/x", Time: time.Now(), Body: []byte("3")},
	} {
		if err := s.Send(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	msgs := readStream(t, conn.JetStream(), "EDDY")
	if len(msgs) != 3 {
		t.Fatalf("stream holds %d messages, want 3: %+v", len(msgs), msgs)
	}
	g := msgs[1]
	if g.subject != GapSubject("big") || g.gapFrom != "2" || g.seq != 2 || !strings.Contains(g.body, `"reason":"too_large"`) {
		t.Errorf("second message %s from %s to %d: %s; want a too_large gap for seq 2", g.subject, g.gapFrom, g.seq, g.body)
	}
	if msgs[0].seq != 1 || msgs[2].seq != 3 || msgs[2].gapFrom != "" {
		t.Errorf("records around the gap: %+v, %+v", msgs[0], msgs[2])
	}
}

package upstream

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestBatchesAndFallback: on a stream eddy creates, records that wait
// while a unit is in flight go out as atomic batches (fewer units than
// records); on an existing stream without AllowAtomicPublish, eddy does
// not change the stream and publishes one record per unit. Either way
// the stream holds every record once, in seq order.
func TestBatchesAndFallback(t *testing.T) {
	t.Cleanup(func() { checkNoLeaks(t) })
	for _, tc := range []struct {
		name   string
		create bool // a stream without atomic batches exists before eddy connects
		atomic bool
	}{
		{"eddy's stream", false, true},
		{"existing stream without atomic batches", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestCluster(t, 1)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			o := testOptions(c, "batch")
			o.Replicas = 1
			conn, err := Connect(o)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if tc.create {
				if _, err := conn.JetStream().CreateStream(ctx, jetstream.StreamConfig{Name: "EDDY", Subjects: []string{"eddy.>"}, Storage: jetstream.FileStorage}); err != nil {
					t.Fatal(err)
				}
			}
			if err := conn.EnsureStream(ctx); err != nil {
				t.Fatal(err)
			}
			if conn.AtomicBatches() != tc.atomic {
				t.Fatalf("atomic batches %v, want %v", conn.AtomicBatches(), tc.atomic)
			}
			info, err := conn.JetStream().Stream(ctx, "EDDY")
			if err != nil {
				t.Fatal(err)
			}
			if info.CachedInfo().Config.AllowAtomicPublish != tc.atomic {
				t.Errorf("stream's AllowAtomicPublish %v: eddy changed an existing stream", info.CachedInfo().Config.AllowAtomicPublish)
			}
			stats := &Stats{}
			s := conn.NewSender("b", "e1", stats)
			defer s.Close()
			if _, _, err := s.Resume(ctx); err != nil {
				t.Fatal(err)
			}
			const n = 300
			for seq := uint64(1); seq <= n; seq++ {
				m := &Message{Seq: seq, Topic: "t/x", Time: time.Now(), Body: fmt.Appendf(nil, `{"seq":%d}`, seq)}
				if err := s.Send(ctx, m); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			units, pub := stats.Units.Load(), stats.Published.Load()
			t.Logf("%d records in %d units", pub, units)
			if pub != n {
				t.Errorf("published %d, want %d", pub, n)
			}
			if tc.atomic && units >= pub {
				t.Errorf("%d units for %d records: no batches", units, pub)
			}
			if !tc.atomic && units != pub {
				t.Errorf("%d units for %d records without atomic batches, want one per record", units, pub)
			}
			want := map[string]map[string][]uint64{"b": {"e1": nil}}
			for seq := uint64(1); seq <= n; seq++ {
				want["b"]["e1"] = append(want["b"]["e1"], seq)
			}
			checkExactlyOnce(t, readStream(t, conn.JetStream(), "EDDY"), want)
		})
	}
}

package ingest

import (
	"bytes"
	"context"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eddy-iot/eddy/ringlog"
)

// Issue 12's MQTT burst as a bounded-time test: 1,000 QoS 1 payloads of
// 60 KB through mosquitto, whose window is opened to 1,000 unacknowledged
// messages (mochi's is 8,192; mosquitto's default 20 would hide what
// eddy holds), beside a legitimate publisher at 100 msgs/s. Every
// legitimate message reaches the log, none waits more than
// burstMaxGap after the one before (as a reader of the log sees them),
// and the live Go heap grows by less than burstHeapBudget: what waits
// between broker and log is bounded by the ack queue.
func TestHostileMQTTBurst(t *testing.T) {
	const (
		burst           = 1000
		burstMaxGap     = 2 * time.Second
		burstHeapBudget = 64 << 20
	)
	mq := newMosquitto(t, "max_inflight_messages 1000")
	mq.start()
	l, err := ringlog.Open(t.TempDir(), &ringlog.Options{SyncInterval: 100 * time.Millisecond, MaxBytes: 256 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	cfg := testConfig(mq.url(), "burst", "sensors/#")
	cfg.AckDelay = nil // the defaults: ack_batch 10, ack_delay 10ms
	cfg.SetDefaults(0)
	m, stop := runMQTT(t, cfg, l)
	waitConnected(t, m, 1)

	// A reader of the log, as the hub is: legitimate records and when
	// each was seen.
	rctx, rcancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	seen := map[string]bool{}
	var lastAt time.Time
	var maxGap time.Duration
	rdone := make(chan struct{})
	go func() {
		defer close(rdone)
		after := uint64(0)
		for {
			wake := l.Notify()
			recs, err := l.ReadAfter(nil, after, 256)
			if err != nil {
				return
			}
			now := time.Now()
			mu.Lock()
			for _, r := range recs {
				after = r.Seq
				if r.Topic == "sensors/legit" {
					seen[string(r.Value)] = true
					if !lastAt.IsZero() {
						maxGap = max(maxGap, now.Sub(lastAt))
					}
					lastAt = now
				}
			}
			mu.Unlock()
			if len(recs) > 0 {
				continue
			}
			select {
			case <-wake:
			case <-rctx.Done():
				return
			}
		}
	}()

	// The heap sampler: the live heap as of each GC.
	base := liveHeap()
	var peak atomic.Uint64
	sctx, scancel := context.WithCancel(context.Background())
	sdone := make(chan struct{})
	go func() {
		defer close(sdone)
		for sctx.Err() == nil {
			if h := liveHeap(); h > peak.Load() {
				peak.Store(h)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()

	// The legitimate publisher, 100 msgs/s, until the burst is in.
	legit := newPublisher(t, mq.url())
	pctx, pcancel := context.WithCancel(context.Background())
	sent := make(chan int, 1)
	go func() {
		n := 0
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		for pctx.Err() == nil {
			<-tk.C
			tok := legit.c.Publish("sensors/legit", 1, false, strconv.Itoa(n))
			if tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
				n++
			}
		}
		sent <- n
	}()
	time.Sleep(300 * time.Millisecond)

	// The burst: 1,000 x 60 KB, at most 50 unacknowledged by the broker.
	bp := newPublisher(t, mq.url())
	payload := bytes.Repeat([]byte("x"), 60<<10)
	var pending []paho.Token
	for i := range burst {
		pending = append(pending, bp.c.Publish("sensors/burst/"+strconv.Itoa(i%100), 1, false, payload))
		if len(pending) == 50 {
			pending[0].WaitTimeout(10 * time.Second)
			pending = pending[1:]
		}
	}
	for _, tok := range pending {
		tok.WaitTimeout(10 * time.Second)
	}
	waitFor(t, 60*time.Second, "the burst in the log", func() bool { return m.Stats().Received >= burst })
	time.Sleep(300 * time.Millisecond)
	pcancel()
	n := <-sent
	waitFor(t, 30*time.Second, "every legitimate message", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) >= n
	})
	scancel()
	<-sdone
	rcancel()
	<-rdone
	stop()

	st := m.Stats()
	t.Logf("%d legit, longest gap %v; live heap +%d MiB at most; mqtt: received %d, stored %d, not acked %d, redelivered %d",
		n, maxGap.Round(time.Millisecond), (peak.Load()-min(base, peak.Load()))>>20, st.Received, st.Stored, st.NotAcked, st.Redelivered)
	for i := range n {
		if !seen[strconv.Itoa(i)] {
			t.Errorf("legitimate message %d never reached the log", i)
		}
	}
	if maxGap > burstMaxGap {
		t.Errorf("legitimate records %v apart, want at most %v", maxGap, burstMaxGap)
	}
	if g := peak.Load() - min(base, peak.Load()); g > burstHeapBudget {
		t.Errorf("live heap grew by %d MiB during the burst, budget %d MiB", g>>20, burstHeapBudget>>20)
	}
}

// liveHeap is the heap the last GC found live.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

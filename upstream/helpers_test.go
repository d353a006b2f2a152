package upstream

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/eddy-iot/eddy/ringlog"
)

// testLog is a real ring log; its epoch is the ring log's own.
type testLog struct {
	*ringlog.Log
}

var _ Source = (*ringlog.Log)(nil)

func openTestLog(t testing.TB, dir string) *testLog {
	t.Helper()
	l, err := ringlog.Open(dir, &ringlog.Options{SyncInterval: 20 * time.Millisecond, ReserveBlock: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	return &testLog{Log: l}
}

// appender appends numbered records to a log at a steady rate until stopped.
type appender struct {
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func startAppender(t testing.TB, l *testLog, every time.Duration) *appender {
	a := &appender{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-a.stop:
				return
			case <-tick.C:
			}
			topic := fmt.Sprintf("sensors/p%d/value", n%3)
			if n%7 == 0 {
				topic = "odd topic/ä.b/*/" // escaped on the way up
			}
			if _, err := l.Append(ringlog.Record{Topic: topic, Kind: ringlog.KindJSON, Value: []byte(strconv.Itoa(n)), Unit: "bar"}); err != nil {
				t.Errorf("append: %v", err)
				return
			}
		}
	}()
	return a
}

func (a *appender) halt() { a.once.Do(func() { close(a.stop) }); <-a.done }

// stored is one message read back from the stream.
type stored struct {
	subject string
	device  string
	epoch   string
	seq     uint64
	gapFrom string
	body    string
}

// readStream reads every message of the stream, in stream order.
func readStream(t testing.TB, js jetstream.JetStream, stream string) []stored {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []stored
	for attempt := 0; ; attempt++ {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			if attempt < 50 {
				time.Sleep(200 * time.Millisecond)
				continue
			}
			t.Fatal(err)
		}
		total := s.CachedInfo().State.Msgs
		cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
		if err != nil {
			t.Fatal(err)
		}
		out = out[:0]
		for uint64(len(out)) < total {
			batch, err := cons.FetchNoWait(1000)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for m := range batch.Messages() {
				n++
				h := m.Headers()
				seq, _ := strconv.ParseUint(h.Get(HdrSeq), 10, 64)
				dev := ""
				if parts := splitSubject(m.Subject()); len(parts) > 1 {
					dev = parts[1]
				}
				out = append(out, stored{subject: m.Subject(), device: dev, epoch: h.Get(HdrEpoch), seq: seq, gapFrom: h.Get(HdrGapFrom), body: string(m.Data())})
			}
			if n == 0 {
				if ctx.Err() != nil {
					t.Fatalf("read %d of %d messages", len(out), total)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		return out
	}
}

func splitSubject(s string) []string {
	var parts []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return parts
}

// allSeqs returns every seq a log holds.
func allSeqs(t testing.TB, l *testLog) []uint64 {
	t.Helper()
	var out []uint64
	var buf []ringlog.Record
	after := uint64(0)
	for {
		recs, err := l.ReadAfter(buf[:0], after, 4096)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return out
		}
		for _, r := range recs {
			out = append(out, r.Seq)
			after = r.Seq
		}
	}
}

// moveAside replaces a device's ring.db by a fresh one, as an operator or
// the ring log's corruption handling does.
func moveAside(t testing.TB, dir string) {
	t.Helper()
	if err := os.Rename(filepath.Join(dir, "ring.db"), filepath.Join(dir, "ring.db.old")); err != nil {
		t.Fatal(err)
	}
}

// checkExactlyOnce checks that, per device and epoch, the stream holds
// exactly the seqs of want[dev][epoch], each once, in increasing seq
// order: no duplicate, no record stored after a later one, none missing.
func checkExactlyOnce(t testing.TB, msgs []stored, want map[string]map[string][]uint64) {
	t.Helper()
	got := map[string]map[string][]uint64{}
	for _, m := range msgs {
		if m.gapFrom != "" {
			t.Errorf("unexpected gap %s..%d on %s", m.gapFrom, m.seq, m.subject)
			continue
		}
		if got[m.device] == nil {
			got[m.device] = map[string][]uint64{}
		}
		got[m.device][m.epoch] = append(got[m.device][m.epoch], m.seq)
	}
	for dev, epochs := range want {
		for ep, seqs := range epochs {
			g := got[dev][ep]
			dups, disorder := 0, 0
			seen := map[uint64]int{}
			var prev uint64
			for i, s := range g {
				seen[s]++
				if seen[s] == 2 {
					dups++
				}
				if i > 0 && s <= prev {
					disorder++
					if disorder <= 5 {
						t.Logf("device %s epoch %s: seq %d stored after %d (stream order %v)", dev, ep, s, prev, g[max(0, i-3):min(len(g), i+3)])
					}
				}
				prev = s
			}
			missing := 0
			var firstMissing uint64
			for _, s := range seqs {
				if seen[s] == 0 {
					if missing == 0 {
						firstMissing = s
					}
					missing++
				}
			}
			extra := len(seen) - (len(seqs) - missing)
			if dups > 0 || disorder > 0 || missing > 0 || extra > 0 {
				t.Errorf("device %s epoch %s: %d records in the log, %d in the stream: %d duplicated, %d out of order, %d missing (first %d), %d not in the log",
					dev, ep, len(seqs), len(g), dups, disorder, missing, firstMissing, extra)
			} else {
				t.Logf("device %s epoch %s: %d records, each exactly once, in seq order", dev, ep, len(seqs))
			}
		}
	}
}

// parallel-safe logger for tests.
type syncWriter struct {
	mu sync.Mutex
	t  testing.TB
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(string(p))
	return len(p), nil
}

// leakFrames are the stack frames of goroutines that the publisher, the
// pusher and the collector start (directly or through their clients):
// none may outlive them. The test's own cluster, proxies and devices are
// not among them; that is why this is not goleak (used elsewhere in the
// repository): the in-process nats-server starts and ends goroutines of
// its own throughout a test, which goleak.IgnoreCurrent cannot capture.
var leakFrames = []string{
	"/upstream/push.go", "/upstream/collect.go", "/upstream/sender.go", "/upstream/conn.go", "/upstream/lease.go",
	"github.com/nats-io/nats%2ego.", // how stack traces spell nats.go
	"github.com/quic-go/quic-go.(*Transport)", "github.com/quic-go/quic-go.(*Conn)", "quic-go/http3.(*Transport)",
	"quic-go/http3.(*ClientConn)", "net/http.(*persistConn)", "golang.org/x/net/http2.(*ClientConn)",
}

// checkNoLeaks fails the test if, once everything it started has been
// closed, goroutines of the publisher, pusher or collector (or of their
// NATS, HTTP/3 and HTTP/2 clients) remain. Goroutines end a moment after
// the Close that ends them, so it looks again for up to 5 seconds.
func checkNoLeaks(t testing.TB) {
	t.Helper()
	var leaked []string
	for deadline := time.Now().Add(5 * time.Second); ; {
		leaked = leaked[:0]
		buf := make([]byte, 4<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "checkNoLeaks") {
				continue
			}
			for _, f := range leakFrames {
				if strings.Contains(g, f) {
					leaked = append(leaked, g)
					break
				}
			}
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i, g := range leaked {
		if i == 5 {
			t.Errorf("... and %d more", len(leaked)-5)
			break
		}
		t.Errorf("goroutine left behind:\n%s", g)
	}
}

package upstream

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"
)

// testOptions are the publisher options of the fault tests: short ack and
// request timeouts, a duplicate window of 1s so that outages outlast it.
func testOptions(c *testCluster, name string) Options {
	return Options{
		Servers: c.urls(), Stream: "EDDY", Replicas: 3, Name: name,
		Duplicates: time.Second, TestDuplicates: true,
		AckTimeout: time.Second, RequestTimeout: time.Second, ReconnectWait: 100 * time.Millisecond,
		Window: 64,
	}
}

// pushDevice is one simulated device: a ring log fed at a steady rate
// and a Pusher forwarding it.
type pushDevice struct {
	t      *testing.T
	name   string
	dir    string
	log    *testLog
	app    *appender
	conn   *Conn
	stats  *Stats
	cancel context.CancelFunc
	done   chan error
	want   map[string][]uint64 // epochs already closed: the seqs their log held
}

func newPushDevice(t *testing.T, c *testCluster, name string) *pushDevice {
	d := &pushDevice{t: t, name: name, dir: t.TempDir(), stats: &Stats{}, want: map[string][]uint64{}}
	d.log = openTestLog(t, d.dir)
	d.app = startAppender(t, d.log, 4*time.Millisecond)
	d.startPusher(c)
	return d
}

func (d *pushDevice) startPusher(c *testCluster) {
	o := testOptions(c, d.name)
	if testing.Verbose() {
		o.Logger = slog.New(slog.NewTextHandler(&syncWriter{t: d.t}, &slog.HandlerOptions{Level: slog.LevelInfo})).With("device", d.name)
	}
	conn, err := Connect(o)
	if err != nil {
		d.t.Fatal(err)
	}
	p, err := NewPusher(conn, d.log, PushOptions{Device: d.name, Stats: d.stats, Logger: o.Logger})
	if err != nil {
		d.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.conn, d.cancel, d.done = conn, cancel, make(chan error, 1)
	go func() { d.done <- p.Run(ctx) }()
}

// killPusher abandons the pusher like SIGKILL would: the connection drops
// with acknowledgements outstanding, nothing is flushed.
func (d *pushDevice) killPusher() {
	d.conn.Close()
	d.cancel()
	if err := <-d.done; err != nil {
		d.t.Errorf("%s: pusher: %v", d.name, err)
	}
}

// restart stops the device (appender, pusher, log) and starts it again;
// with fresh, its ring.db is replaced by a new one (a new epoch).
func (d *pushDevice) restart(c *testCluster, fresh bool) {
	d.app.halt()
	d.killPusher()
	if fresh {
		d.want[d.log.Epoch()] = allSeqs(d.t, d.log)
	}
	if err := d.log.Close(); err != nil {
		d.t.Fatal(err)
	}
	if fresh {
		moveAside(d.t, d.dir) // the next Open starts a new ring.db: a new epoch
	}
	d.log = openTestLog(d.t, d.dir)
	d.app = startAppender(d.t, d.log, 4*time.Millisecond)
	d.startPusher(c)
}

// lastRecord is the seq of the newest record in the log.
func (d *pushDevice) lastRecord() uint64 {
	s := allSeqs(d.t, d.log)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)-1]
}

// TestPushFaults: three devices append at a steady rate and push while,
// in turn, a pusher is killed and restarted, the stream leader's node is
// shut down and restarted, upstream is unreachable for longer than the
// duplicate window, a device restarts, and a device's ring.db is replaced.
// At the end every record of every device and epoch is in the stream
// exactly once, in seq order.
func TestPushFaults(t *testing.T) {
	c := clusterTest(t, 3, "fault test runs a 3-node cluster for about 20s")
	var devs []*pushDevice
	for i := range 3 {
		devs = append(devs, newPushDevice(t, c, fmt.Sprintf("dev-%d", i)))
	}
	defer func() {
		for _, d := range devs {
			d.app.halt()
			d.killPusher()
			d.log.Close()
		}
	}()
	progress := func(what string) {
		t.Helper()
		marks := make([]uint64, len(devs))
		for i, d := range devs {
			marks[i] = d.stats.AckedSeq.Load()
		}
		eventually(t, 30*time.Second, "progress after "+what, func() bool {
			for i, d := range devs {
				if d.stats.AckedSeq.Load() <= marks[i]+50 {
					return false
				}
			}
			return true
		})
		t.Logf("%s: pushing again", what)
	}
	progress("start")

	// 1. The publisher is killed with acknowledgements outstanding.
	devs[0].killPusher()
	time.Sleep(300 * time.Millisecond)
	devs[0].startPusher(c)
	progress("pusher killed and restarted")

	// 2. The stream leader's node goes down, and comes back later.
	leader := c.streamLeader("EDDY")
	if leader < 0 {
		t.Fatal("no stream leader")
	}
	c.stop(leader)
	progress(fmt.Sprintf("leader n%d down", leader))
	c.start(leader)

	// 3. Upstream is unreachable for longer than the duplicate window
	// while records keep arriving.
	c.cutAll(true)
	time.Sleep(2500 * time.Millisecond)
	c.cutAll(false)
	progress("outage of 2.5s over a 1s duplicate window")

	// 4. A device restarts; 5. a device's ring.db is replaced.
	devs[1].restart(c, false)
	progress("device restarted")
	devs[2].app.halt() // what the old ring.db holds goes upstream before it is replaced
	eventually(t, 30*time.Second, "dev-2 caught up before its ring.db goes", func() bool {
		return devs[2].stats.AckedSeq.Load() >= devs[2].lastRecord()
	})
	devs[2].restart(c, true)
	progress("ring.db replaced")

	// The end: stop appending, let every pusher catch up, compare.
	want := map[string]map[string][]uint64{}
	for _, d := range devs {
		d.app.halt()
		last := d.lastRecord()
		eventually(t, 30*time.Second, d.name+" caught up", func() bool { return d.stats.AckedSeq.Load() >= last })
		want[d.name] = d.want
		want[d.name][d.log.Epoch()] = allSeqs(t, d.log)
	}
	checker, err := Connect(testOptions(c, "checker"))
	if err != nil {
		t.Fatal(err)
	}
	defer checker.Close()
	msgs := readStream(t, checker.JetStream(), "EDDY")
	checkExactlyOnce(t, msgs, want)
	for _, d := range devs {
		t.Logf("%s: published %d in %d units, duplicates %d, republished %d, failures %d",
			d.name, d.stats.Published.Load(), d.stats.Units.Load(), d.stats.Duplicates.Load(), d.stats.Republished.Load(), d.stats.Failures.Load())
	}
}

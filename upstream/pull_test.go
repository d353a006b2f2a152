package upstream

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/server"
	"github.com/eddy-iot/eddy/sse"
	devtls "github.com/eddy-iot/eddy/tls"
)

const testToken = "collector-test-token-0123456789"

// pullDevice is an eddy device assembled in-process from the real parts
// (ring log, sse hub, HTTP/2 + HTTP/3 server with its generated
// certificate), fed at a steady rate, on a fixed loopback port so that it
// can restart under the same URL.
type pullDevice struct {
	t      *testing.T
	name   string
	dir    string
	addr   string
	log    *testLog
	app    *appender
	dev    *devtls.Device
	hub    *sse.Hub
	srv    *server.Server
	stopHb context.CancelFunc
	hubEnd chan struct{}
	want   map[string][]uint64
	open   [4]atomic.Int64 // /events streams open, by HTTP major version
}

func newPullDevice(t *testing.T, name string) *pullDevice {
	d := &pullDevice{t: t, name: name, dir: t.TempDir(), want: map[string][]uint64{}}
	d.log = openTestLog(t, d.dir)
	d.serve("127.0.0.1:0")
	d.app = startAppender(t, d.log, 4*time.Millisecond)
	return d
}

// epochHeader names the serving log's epoch on /events, as cmd/eddy does.
func epochHeader(epoch string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(EpochHeader, epoch)
		h.ServeHTTP(w, r)
	})
}

// counted counts the open /events streams by protocol.
func (d *pullDevice) counted(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.open[r.ProtoMajor].Add(1)
		defer d.open[r.ProtoMajor].Add(-1)
		h.ServeHTTP(w, r)
	})
}

func (d *pullDevice) serve(listen string) {
	var err error
	d.dev, err = devtls.Load(devtls.Options{Dir: d.dir, Hostname: d.name,
		Addrs: func() ([]net.IP, error) { return []net.IP{net.IPv4(127, 0, 0, 1)}, nil }})
	if err != nil {
		d.t.Fatal(err)
	}
	d.hub = sse.NewHub(d.log.Log, sse.Options{Heartbeat: time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	d.stopHb, d.hubEnd = cancel, make(chan struct{})
	go func() { defer close(d.hubEnd); d.hub.Run(ctx) }()
	d.srv, err = server.New(server.Options{Listen: listen, HTTP3: true, TLS: d.dev.ServerConfig(), Log: d.log.Log,
		Events: d.counted(epochHeader(d.log.Epoch(), d.hub)), Tokens: []string{testToken}})
	if err != nil {
		d.t.Fatal(err)
	}
	for i := 0; ; i++ {
		if err = d.srv.Start(); err == nil {
			break
		}
		if i > 40 { // the port of the previous run may linger a moment
			d.t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		d.srv, _ = server.New(server.Options{Listen: listen, HTTP3: true, TLS: d.dev.ServerConfig(), Log: d.log.Log,
			Events: d.counted(epochHeader(d.log.Epoch(), d.hub)), Tokens: []string{testToken}})
	}
	d.addr = d.srv.Addr().String()
}

func (d *pullDevice) config() Device {
	tc, err := devtls.ClientConfig(devtls.ClientOptions{Fingerprint: d.dev.Fingerprint()})
	if err != nil {
		d.t.Fatal(err)
	}
	return Device{Name: d.name, URL: "https://" + d.addr, Token: testToken, TLS: tc}
}

// halt stops serving and closes the log (nothing flushed beyond what the
// log commits on Close).
func (d *pullDevice) halt() {
	d.app.halt()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	d.hub.Shutdown(ctx)
	d.srv.Shutdown(ctx)
	d.stopHb()
	<-d.hubEnd
}

// restart stops the device and starts it again on the same address;
// with fresh its ring.db is replaced (a new epoch).
func (d *pullDevice) restart(fresh bool) {
	d.halt()
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
	d.serve(d.addr)
	d.app = startAppender(d.t, d.log, 4*time.Millisecond)
}

func (d *pullDevice) lastRecord() uint64 {
	s := allSeqs(d.t, d.log)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)-1]
}

// testCollector is one eddy collect, assembled in-process.
type testCollector struct {
	conn   *Conn
	col    *Collector
	cancel context.CancelFunc
	done   chan error
}

func startCollector(t *testing.T, c *testCluster, id string, devs []*pullDevice) *testCollector {
	o := testOptions(c, id)
	if testing.Verbose() {
		o.Logger = slog.New(slog.NewTextHandler(&syncWriter{t: t}, &slog.HandlerOptions{Level: slog.LevelInfo})).With("collector", id)
	}
	conn, err := Connect(o)
	if err != nil {
		t.Fatal(err)
	}
	var cfg []Device
	for _, d := range devs {
		cfg = append(cfg, d.config())
	}
	col, err := NewCollector(conn, cfg, CollectorOptions{ID: id, LeaseTTL: 2 * time.Second, Idle: 5 * time.Second,
		Dial: 2 * time.Second, LogEvery: time.Millisecond, Logger: o.Logger, QUICAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tc := &testCollector{conn: conn, col: col, cancel: cancel, done: make(chan error, 1)}
	go func() { tc.done <- col.Run(ctx) }()
	return tc
}

// kill abandons the collector like SIGKILL: its NATS connection drops
// first, so it neither flushes nor releases its leases.
func (tc *testCollector) kill(t *testing.T) {
	tc.conn.Close()
	tc.cancel()
	if err := <-tc.done; err != nil {
		t.Errorf("collector: %v", err)
	}
}

func (tc *testCollector) stop(t *testing.T) {
	tc.cancel()
	if err := <-tc.done; err != nil {
		t.Errorf("collector: %v", err)
	}
	tc.conn.Close()
}

// holders maps each device to the collectors publishing it.
func holders(cols ...*testCollector) map[string]int {
	out := map[string]int{}
	for _, c := range cols {
		if c == nil {
			continue
		}
		for n, st := range c.col.Devices() {
			if st.Held.Load() {
				out[n]++
			}
		}
	}
	return out
}

// TestPullFaults: two collectors share three devices through leases and
// publish them while, in turn: a collector is killed (its devices move to
// the other within the lease TTL) and restarted (devices spread again),
// the stream leader's node is shut down and restarted, upstream is
// unreachable for longer than the duplicate window, a device restarts,
// and a device's ring.db is replaced. At the end every record of every
// device and epoch is in the stream exactly once, in seq order.
func TestPullFaults(t *testing.T) {
	c := clusterTest(t, 3, "fault test runs a 3-node cluster and 3 devices for about 30s")
	var devs []*pullDevice
	for i := range 3 {
		devs = append(devs, newPullDevice(t, fmt.Sprintf("pull-%d", i)))
	}
	a := startCollector(t, c, "col-a", devs)
	b := startCollector(t, c, "col-b", devs)
	defer func() {
		a.stop(t)
		b.stop(t)
		for _, d := range devs {
			d.halt()
			d.log.Close()
		}
	}()
	defer func() {
		if !t.Failed() {
			return
		}
		for _, col := range []*testCollector{a, b} {
			for n, st := range col.col.Devices() {
				p, _ := st.Protocol.Load().(string)
				t.Logf("%s %s: held %v connected %v protocol %s received %d acked %d outstanding? reconnects %d errors %d",
					col.col.opt.ID, n, st.Held.Load(), st.Connected.Load(), p, st.Received.Load(), st.Stats.AckedSeq.Load(), st.Reconnects.Load(), st.Errors.Load())
			}
		}
		for _, d := range devs {
			t.Logf("%s: last record %d", d.name, d.lastRecord())
		}
	}()
	acked := func(d *pullDevice) uint64 {
		var m uint64
		for _, col := range []*testCollector{a, b} {
			if st := col.col.Devices()[d.name]; st != nil && st.Held.Load() {
				m = max(m, st.Stats.AckedSeq.Load())
			}
		}
		return m
	}
	progress := func(what string) {
		t.Helper()
		marks := make([]uint64, len(devs))
		for i, d := range devs {
			marks[i] = acked(d)
		}
		eventually(t, 30*time.Second, "progress after "+what, func() bool {
			for i, d := range devs {
				if acked(d) <= marks[i]+50 {
					return false
				}
			}
			return true
		})
		t.Logf("%s: publishing again", what)
	}
	exclusive := func(what string) {
		t.Helper()
		eventually(t, 10*time.Second, "each device held by exactly one collector "+what, func() bool {
			h := holders(a, b)
			for _, d := range devs {
				if h[d.name] != 1 {
					return false
				}
			}
			return a.col.LeasesHeld() > 0 && b.col.LeasesHeld() > 0
		})
	}
	progress("start")
	exclusive("at start, spread over both")

	// A collector dies: its devices move to the other within the TTL.
	moved := time.Now()
	a.kill(t)
	eventually(t, 2*2*time.Second+2*time.Second, "devices moved to col-b", func() bool { return b.col.LeasesHeld() == len(devs) })
	t.Logf("devices moved to col-b in %s (lease TTL 2s)", time.Since(moved).Round(10*time.Millisecond))
	progress("collector killed")
	a = startCollector(t, c, "col-a", devs)
	exclusive("after col-a restarted")

	leader := c.streamLeader("EDDY")
	if leader < 0 {
		t.Fatal("no stream leader")
	}
	c.stop(leader)
	progress(fmt.Sprintf("leader n%d down", leader))
	c.start(leader)

	c.cutAll(true)
	time.Sleep(2500 * time.Millisecond)
	c.cutAll(false)
	progress("outage of 2.5s over a 1s duplicate window")

	devs[1].restart(false)
	progress("device restarted")
	devs[2].app.halt() // what the old ring.db holds goes upstream before it is replaced
	eventually(t, 30*time.Second, "pull-2 caught up before its ring.db goes", func() bool {
		return acked(devs[2]) >= devs[2].lastRecord()
	})
	devs[2].restart(true)
	progress("ring.db replaced")

	want := map[string]map[string][]uint64{}
	for _, d := range devs {
		d.app.halt()
		last := d.lastRecord()
		eventually(t, 30*time.Second, d.name+" caught up", func() bool { return acked(d) >= last })
		want[d.name] = d.want
		want[d.name][d.log.Epoch()] = allSeqs(t, d.log)
	}
	checker, err := Connect(testOptions(c, "checker"))
	if err != nil {
		t.Fatal(err)
	}
	defer checker.Close()
	checkExactlyOnce(t, readStream(t, checker.JetStream(), "EDDY"), want)
	for _, col := range []*testCollector{a, b} {
		for n, st := range col.col.Devices() {
			p, _ := st.Protocol.Load().(string)
			t.Logf("%s %s: held %v, protocol %s, published %d in %d units, duplicates %d, republished %d, failures %d, reconnects %d",
				col.col.opt.ID, n, st.Held.Load(), p, st.Stats.Published.Load(), st.Stats.Units.Load(), st.Stats.Duplicates.Load(), st.Stats.Republished.Load(), st.Stats.Failures.Load(), st.Reconnects.Load())
		}
	}
}

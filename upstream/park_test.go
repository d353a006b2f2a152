package upstream

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
)

// TestPullParksIdleDevice: a device that stops recording moves from
// HTTP/3 to HTTP/1.1 after ParkAfter, its HTTP/3 stream ends, and its next
// records bring it back to HTTP/3; across both switches every record is
// stored exactly once, in order.
func TestPullParksIdleDevice(t *testing.T) {
	c := clusterTest(t, 3, "runs a 3-node cluster")
	d := newPullDevice(t, "parked")
	col, conn := startParkingCollector(t, c, "park", d)
	st := col.Devices()["parked"]
	proto := func() string { p, _ := st.Protocol.Load().(string); return p }
	streams := func() [4]int64 {
		var n [4]int64
		for i := range n {
			n[i] = d.open[i].Load()
		}
		return n
	}

	eventually(t, 30*time.Second, "records flowing over HTTP/3", func() bool {
		return proto() == "h3" && st.Stats.Published.Load() > 100
	})
	d.app.halt()
	eventually(t, 15*time.Second, "the idle device parked on HTTP/1.1, its HTTP/3 stream closed", func() bool {
		return proto() == "h1" && st.Connected.Load() && streams() == [4]int64{1: 1}
	})
	// Heartbeats keep a parked stream open past Idle (5s).
	time.Sleep(6 * time.Second)
	if proto() != "h1" || streams() != [4]int64{1: 1} || st.Reconnects.Load() != 0 {
		t.Errorf("parked stream did not hold: protocol %q, streams %v, reconnects %d", proto(), streams(), st.Reconnects.Load())
	}
	if st.Parks.Load() != 1 {
		t.Errorf("parks = %d, want 1", st.Parks.Load())
	}
	if st.Errors.Load() != 0 {
		t.Errorf("parking counted %d errors", st.Errors.Load())
	}
	d.app = startAppender(t, d.log, 4*time.Millisecond)
	eventually(t, 15*time.Second, "records bringing the device back to HTTP/3", func() bool {
		return proto() == "h3" && streams() == [4]int64{3: 1}
	})
	d.app.halt()
	last := d.lastRecord()
	eventually(t, 15*time.Second, "every record acknowledged", func() bool { return st.Stats.AckedSeq.Load() >= last })
	checkExactlyOnce(t, readStream(t, conn.JetStream(), "EDDY"), map[string]map[string][]uint64{"parked": {d.log.Epoch(): allSeqs(t, d.log)}})
}

// TestPullWithoutTCPStaysOnHTTP3: a device reachable over UDP only (its
// TCP port refused) is followed over HTTP/3 from the start, and is not
// parked when it goes idle: no switch, no reconnect, nothing lost.
func TestPullWithoutTCPStaysOnHTTP3(t *testing.T) {
	c := clusterTest(t, 3, "runs a 3-node cluster")
	d := newPullDevice(t, "udponly")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d.srv.Shutdown(ctx) // frees the port over TCP and UDP
	pc, err := net.ListenPacket("udp", d.addr)
	if err != nil {
		t.Fatal(err)
	}
	h3 := &http3.Server{Handler: d.counted(epochHeader(d.log.Epoch(), d.hub)), TLSConfig: http3.ConfigureTLSConfig(d.dev.ServerConfig())}
	go h3.Serve(pc)
	defer pc.Close()
	defer h3.Close()

	col, conn := startParkingCollector(t, c, "udponly", d)
	st := col.Devices()["udponly"]
	proto := func() string { p, _ := st.Protocol.Load().(string); return p }
	eventually(t, 30*time.Second, "records flowing over HTTP/3", func() bool {
		return proto() == "h3" && st.Stats.Published.Load() > 100
	})
	d.app.halt()
	time.Sleep(3 * time.Second) // three times ParkAfter, idle
	if proto() != "h3" || st.Parks.Load() != 0 || st.Reconnects.Load() != 0 || d.open[3].Load() != 1 {
		t.Errorf("protocol %q, parks %d, reconnects %d, HTTP/3 streams %d: want h3, 0, 0, 1",
			proto(), st.Parks.Load(), st.Reconnects.Load(), d.open[3].Load())
	}
	last := d.lastRecord()
	eventually(t, 15*time.Second, "every record acknowledged", func() bool { return st.Stats.AckedSeq.Load() >= last })
	checkExactlyOnce(t, readStream(t, conn.JetStream(), "EDDY"), map[string]map[string][]uint64{"udponly": {d.log.Epoch(): allSeqs(t, d.log)}})
}

// startParkingCollector runs a collector of d that parks after 1s; it
// stops with the test, before d.
func startParkingCollector(t *testing.T, c *testCluster, id string, d *pullDevice) (*Collector, *Conn) {
	o := testOptions(c, id)
	if testing.Verbose() {
		o.Logger = slog.New(slog.NewTextHandler(&syncWriter{t: t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	conn, err := Connect(o)
	if err != nil {
		t.Fatal(err)
	}
	col, err := NewCollector(conn, []Device{d.config()}, CollectorOptions{ID: id, LeaseTTL: 2 * time.Second,
		Idle: 5 * time.Second, Dial: 2 * time.Second, ParkAfter: time.Second, Logger: o.Logger, QUICAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- col.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		conn.Close()
		d.halt()
		d.log.Close()
	})
	return col, conn
}

// TestParkedHeadersBounded: a device that answers a parked request with
// endless headers is cut off after 64 KiB of them.
func TestParkedHeadersBounded(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	go func() {
		defer server.Close()
		if _, err := http.ReadRequest(bufio.NewReader(server)); err != nil {
			return
		}
		io.WriteString(server, "HTTP/1.1 200 OK\r\n")
		line := "X-Pad: " + strings.Repeat("a", 1000) + "\r\n"
		for range 1000 { // 1 MB of headers, never ending them
			if _, err := io.WriteString(server, line); err != nil {
				return
			}
		}
	}()
	req, err := http.NewRequest(http.MethodGet, "https://device.invalid/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := roundTripOn(client, req)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "over 64 KiB") {
			t.Fatalf("got %v, want the header bound", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer in 10s")
	}
}

package server

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
)

// TestQUICStats: the server counts its QUIC connections, packets and
// bytes, sees the packets a lossy path dropped, and keeps an ended
// connection's figures in the totals.
func TestQUICStats(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), (400<<10)/16)
	e := startServer(t, func(o *Options) {
		o.Events = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
	})
	relay := newLossyRelay(t, e.srv.Addr().String(), 10)
	c := h3Client(t, e)
	req, err := http.NewRequest(http.MethodGet, "https://"+relay.addr+"/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("body: %d bytes, %v; want %d bytes", len(got), err, len(body))
	}

	open := e.srv.QUICStats()
	if open.Conns != 1 || open.BytesSent < uint64(len(body)) || open.PacketsSent < uint64(len(body)/1452) || open.PacketsReceived == 0 {
		t.Errorf("with the connection open: %+v; want 1 connection, at least %d bytes sent", open, len(body))
	}
	if relay.dropped.Load() == 0 || open.PacketsLost == 0 {
		t.Errorf("the relay dropped %d packets, the server counted %d lost; want both above 0", relay.dropped.Load(), open.PacketsLost)
	}

	c.Transport.(*http3.Transport).Close()
	deadline := time.Now().Add(10 * time.Second)
	ended := e.srv.QUICStats()
	for ended.Conns != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		ended = e.srv.QUICStats()
	}
	if ended.Conns != 0 {
		t.Fatalf("connection still counted open after the client closed it: %+v", ended)
	}
	if ended.PacketsSent < open.PacketsSent || ended.BytesSent < open.BytesSent ||
		ended.PacketsReceived < open.PacketsReceived || ended.PacketsLost < open.PacketsLost {
		t.Errorf("totals went down when the connection ended: %+v, then %+v", open, ended)
	}
}

// lossyRelay forwards UDP between one client and upstream on loopback,
// dropping every nth packet upstream sends to the client.
type lossyRelay struct {
	addr    string // where the client should send
	dropped atomic.Int64
}

func newLossyRelay(t *testing.T, upstream string, nth int) *lossyRelay {
	t.Helper()
	front, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	back, err := net.Dial("udp", upstream)
	if err != nil {
		front.Close()
		t.Fatal(err)
	}
	r := &lossyRelay{addr: front.LocalAddr().String()}
	var client atomic.Pointer[net.Addr]
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // client -> upstream
		defer wg.Done()
		buf := make([]byte, 64<<10)
		for {
			n, from, err := front.ReadFrom(buf)
			if err != nil {
				return
			}
			client.Store(&from)
			back.Write(buf[:n])
		}
	}()
	go func() { // upstream -> client, lossy
		defer wg.Done()
		buf := make([]byte, 64<<10)
		for i := 1; ; i++ {
			n, err := back.Read(buf)
			if err != nil {
				return
			}
			to := client.Load()
			if to == nil {
				continue
			}
			if i%nth == 0 {
				r.dropped.Add(1)
				continue
			}
			front.WriteTo(buf[:n], *to)
		}
	}()
	t.Cleanup(func() {
		front.Close()
		back.Close()
		wg.Wait()
	})
	return r
}

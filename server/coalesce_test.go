package server

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// countingConn records every Write that reaches the "socket".
type countingConn struct {
	net.Conn // nil: only Write, Close and SetWriteDeadline are used
	mu       sync.Mutex
	writes   int
	data     bytes.Buffer
	fail     error
	closed   bool
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return 0, c.fail
	}
	c.writes++
	c.data.Write(p)
	return len(p), nil
}

func (c *countingConn) Close() error                     { c.mu.Lock(); c.closed = true; c.mu.Unlock(); return nil }
func (c *countingConn) SetWriteDeadline(time.Time) error { return nil }

func (c *countingConn) snapshot() (int, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes, c.data.String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCoalescingMergesSmallWrites(t *testing.T) {
	under := &countingConn{}
	// A long delay makes the merge certain on a loaded machine; the timer
	// still flushes without another write.
	c := &coalescingConn{Conn: under, delay: 50 * time.Millisecond}
	var want bytes.Buffer
	for i := range 100 {
		p := []byte{byte('a' + i%26), '\n'}
		want.Write(p)
		if n, err := c.Write(p); n != len(p) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	waitFor(t, "the timer's flush", func() bool { _, d := under.snapshot(); return len(d) == want.Len() })
	writes, data := under.snapshot()
	if data != want.String() {
		t.Fatal("data changed or reordered")
	}
	if writes >= 10 {
		t.Fatalf("100 small writes reached the socket as %d writes", writes)
	}
	c.Close()
}

func TestCoalescingLargeWriteAndClose(t *testing.T) {
	under := &countingConn{}
	c := &coalescingConn{Conn: under, delay: time.Hour} // only size and Close flush
	c.Write([]byte("head"))
	big := bytes.Repeat([]byte("x"), coalesceMax)
	if n, err := c.Write(big); n != len(big) || err != nil {
		t.Fatalf("large Write = %d, %v", n, err)
	}
	if _, data := under.snapshot(); data != "head"+string(big) {
		t.Fatal("a write beyond the buffer did not go out at once, in order")
	}
	c.Write([]byte("tail"))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, data := under.snapshot(); data != "head"+string(big)+"tail" || !under.closed {
		t.Fatal("Close did not flush the pending bytes first")
	}
}

func TestCoalescingErrorIsSticky(t *testing.T) {
	boom := errors.New("broken pipe")
	under := &countingConn{fail: boom}
	c := &coalescingConn{Conn: under, delay: time.Millisecond}
	c.Write([]byte("x"))
	waitFor(t, "the failed flush", func() bool {
		_, err := c.Write([]byte("y"))
		return errors.Is(err, boom)
	})
	c.Close()
}

// TestCoalescingOverTCP: a real socket pair, bytes arrive intact.
func TestCoalescingOverTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := coalescingListener{Listener: ln, delay: time.Millisecond}
	defer cl.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(guard))
		b, _ := io.ReadAll(c)
		got <- b
	}()
	c, err := cl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	for i := range 1000 {
		p := bytes.Repeat([]byte{byte(i)}, i%300)
		want.Write(p)
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("received %d bytes, want %d, intact", len(b), want.Len())
	}
}

// TestCoalescingCloseWithStalledPeer: a peer that stopped reading cannot
// hold Close (or the writer) forever.
func TestCoalescingCloseWithStalledPeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := coalescingListener{Listener: ln, delay: time.Millisecond}
	defer cl.Close()
	peer, err := net.Dial("tcp", ln.Addr().String()) // never reads
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	c, err := cl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	writerDone := make(chan error, 1)
	go func() {
		chunk := make([]byte, 1<<10)
		for {
			if _, err := c.Write(chunk); err != nil {
				writerDone <- err
				return
			}
		}
	}()
	// Wait until the socket is full: the writer is then blocked in a flush.
	time.Sleep(200 * time.Millisecond)
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case <-closed:
	case <-time.After(guard):
		t.Fatal("Close blocked by a peer that does not read")
	}
	select {
	case err := <-writerDone:
		if err == nil {
			t.Fatal("writer ended without an error")
		}
	case <-time.After(guard):
		t.Fatal("writer still blocked after Close")
	}
}

package ingest

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestBufferedConnCoalesces: small writes reach the peer together after
// the flush delay, Close flushes what is left, and reads pass through.
func TestBufferedConnCoalesces(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	b := newBufferedConn(c, time.Second)
	for range 100 {
		if _, err := b.Write([]byte{0x40, 0x02, 0x00, 0x01}); err != nil { // a PUBACK
			t.Fatal(err)
		}
	}
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 400)
	if _, err := io.ReadFull(peer, got); err != nil {
		t.Fatalf("the buffered writes never arrived: %v", err)
	}
	if _, err := peer.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	in := make([]byte, 5)
	if _, err := io.ReadFull(b, in); err != nil || string(in) != "hello" {
		t.Fatalf("read %q, %v", in, err)
	}
	b.Write([]byte("last"))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	tail, _ := io.ReadAll(peer)
	if string(tail) != "last" {
		t.Errorf("Close did not flush: peer read %q", tail)
	}
	if _, err := b.Write([]byte("x")); err == nil {
		b.mu.Lock()
		b.flushLocked()
		err = b.err
		b.mu.Unlock()
		if err == nil {
			t.Error("writing to a closed connection never failed")
		}
	}
}

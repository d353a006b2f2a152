package server

import (
	"net"
	"sync"
	"time"
)

// DefaultWriteCoalesce is how long a TCP connection holds small writes to
// merge them into one.
const DefaultWriteCoalesce = time.Millisecond

// coalesceMax is how much a connection buffers before it writes at once.
const coalesceMax = 64 << 10

// closeFlushTimeout bounds the last flush when a connection closes, so a
// peer that stopped reading cannot hold Close.
const closeFlushTimeout = 2 * time.Second

// coalescingListener wraps accepted connections in coalescingConn.
//
// Why: Go's HTTP/2 server makes one TLS record and one write() per stream
// flush. With hundreds of SSE streams on a connection, merging the writes
// of about a millisecond beneath TLS turns many small syscalls (and TCP
// segments) into few, for at most that much added latency.
type coalescingListener struct {
	net.Listener
	delay time.Duration
}

func (l coalescingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &coalescingConn{Conn: c, delay: l.delay}, nil
}

// coalescingConn buffers writes for up to delay (or coalesceMax bytes) and
// writes them to the socket together, from a timer. Write deadlines still
// apply: set on the socket, they bound the flushes.
type coalescingConn struct {
	net.Conn
	delay time.Duration

	mu     sync.Mutex // protects the fields below, and serializes socket writes
	buf    []byte
	timer  *time.Timer
	armed  bool  // the timer will flush
	err    error // a failed flush's error, returned by every later Write
	closed bool
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if len(c.buf)+len(p) > coalesceMax {
		// Large: write what is pending and p now, in the caller's time,
		// which is also the backpressure a slow peer exerts.
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		n, err := c.Conn.Write(p)
		if err != nil {
			c.err = err
		}
		return n, err
	}
	c.buf = append(c.buf, p...)
	if !c.armed {
		c.armed = true
		if c.timer == nil {
			c.timer = time.AfterFunc(c.delay, c.flushTimer)
		} else {
			c.timer.Reset(c.delay)
		}
	}
	return len(p), nil
}

func (c *coalescingConn) flushTimer() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed = false
	if !c.closed {
		c.flushLocked()
	}
}

func (c *coalescingConn) flushLocked() error {
	if c.err != nil || len(c.buf) == 0 {
		return c.err
	}
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	if cap(c.buf) > coalesceMax {
		c.buf = nil
	}
	if err != nil {
		c.err = err
	}
	return err
}

// Close writes what is pending (within closeFlushTimeout), then closes.
func (c *coalescingConn) Close() error {
	// Set before taking the lock: it also ends a flush blocked on a peer
	// that stopped reading, which would otherwise hold the lock forever.
	c.Conn.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		if c.timer != nil {
			c.timer.Stop()
		}
		c.flushLocked()
		c.buf = nil
	}
	c.mu.Unlock()
	return c.Conn.Close()
}

package ingest

import (
	"bufio"
	"crypto/tls"
	"net"
	"net/url"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// flushDelay is how long a small write to the broker may wait for others
// to share its syscall. A burst of acknowledgements after a commit goes
// out in one write.
const flushDelay = 200 * time.Microsecond

// openBuffered dials tcp:// and ssl:// brokers itself so that the
// connection can be buffered (see bufferedConn); other schemes (ws, wss)
// are left to paho. Proxies from the environment are not used.
func openBuffered(uri *url.URL, o paho.ClientOptions) (net.Conn, error) {
	d := &net.Dialer{Timeout: o.ConnectTimeout}
	var conn net.Conn
	var err error
	switch uri.Scheme {
	case "tcp", "mqtt":
		conn, err = d.Dial("tcp", uri.Host)
	default: // ssl, tls, mqtts: the schemes config accepts besides ws
		conn, err = tls.DialWithDialer(d, "tcp", uri.Host, o.TLSConfig)
	}
	if err != nil {
		return nil, err
	}
	return newBufferedConn(conn, o.WriteTimeout), nil
}

// bufferedConn batches a broker connection's small reads and writes. paho
// reads each packet's fixed header a byte at a time and writes every
// PUBACK with a write of its own: at thousands of messages a second those
// syscalls were a third of eddy's CPU (profiled with the load tool).
// Writes are flushed flushDelay after the first unflushed one, or when the
// buffer fills. The connection owns its write deadlines (each write gets
// WriteTimeout from when it is issued), because paho's, set around a
// buffered Write, would not cover the delayed flush.
type bufferedConn struct {
	net.Conn
	r       *bufio.Reader
	timeout time.Duration

	mu      sync.Mutex // protects everything below
	w       *bufio.Writer
	timer   *time.Timer
	pending bool  // a flush is scheduled
	err     error // the first write error; every later write returns it
}

func newBufferedConn(c net.Conn, timeout time.Duration) *bufferedConn {
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	b := &bufferedConn{Conn: c, r: bufio.NewReaderSize(c, 32<<10), w: bufio.NewWriterSize(c, 16<<10), timeout: timeout}
	b.timer = time.AfterFunc(time.Hour, b.flushLater)
	b.timer.Stop()
	return b
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

func (b *bufferedConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return 0, b.err
	}
	b.Conn.SetWriteDeadline(time.Now().Add(b.timeout)) // covers a flush of a full buffer
	n, err := b.w.Write(p)
	if err != nil {
		b.err = err
		return n, err
	}
	if b.w.Buffered() > 0 && !b.pending {
		b.pending = true
		b.timer.Reset(flushDelay)
	}
	return n, nil
}

func (b *bufferedConn) flushLater() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pending = false
	b.flushLocked()
}

func (b *bufferedConn) flushLocked() {
	if b.err != nil || b.w.Buffered() == 0 {
		return
	}
	b.Conn.SetWriteDeadline(time.Now().Add(b.timeout))
	if err := b.w.Flush(); err != nil {
		b.err = err
		b.Conn.Close() // paho's reader then sees the connection end
	}
}

// SetWriteDeadline is ignored: writes carry their own (see bufferedConn).
func (b *bufferedConn) SetWriteDeadline(time.Time) error { return nil }

// SetDeadline sets only the read deadline, as SetWriteDeadline is ours.
func (b *bufferedConn) SetDeadline(t time.Time) error { return b.Conn.SetReadDeadline(t) }

// Close flushes what is buffered (a DISCONNECT, last acks) and closes.
func (b *bufferedConn) Close() error {
	b.mu.Lock()
	b.timer.Stop()
	b.pending = false
	b.flushLocked()
	b.mu.Unlock()
	return b.Conn.Close()
}

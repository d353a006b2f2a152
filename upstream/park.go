package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/eddy-iot/eddy/sse"
)

// Parking: a QUIC connection costs the collector about 130 KiB per
// device (quic-go's connection state, five goroutines), most of it while
// the device has nothing to say. So a device is followed over HTTP/1.1 on
// a TLS connection of its own, read by its follower goroutine alone,
// while it is idle: each session starts there, its first record is
// published and brings the device to HTTP/3, and a device whose HTTP/3
// stream carried no record for ParkAfter comes back. Each switch is an
// ordinary resume from the stream's last stored seq, so nothing is lost
// or stored twice.

// errPark ends a session that carried no record for ParkAfter; errUnpark
// a parked one that carried a record. Neither is a failure: the next
// session resumes at once on the other transport.
var (
	errPark   = errors.New("collect: idle, parking on HTTP/1.1")
	errUnpark = errors.New("collect: active again, leaving HTTP/1.1")
)

// isRecord reports whether an event carries a record or a gap.
func isRecord(ev sse.Event) bool {
	return ev.Type == "reading" || ev.Type == "" || ev.Type == "gap"
}

// parkedReadBuffer is the parked connection's read buffer: it carries
// heartbeats, and the record that ends the parking.
const parkedReadBuffer = 1 << 10

// getParked opens the device's /events over HTTP/1.1 on a new TLS
// connection, without a client pool: the response body owns the
// connection, and closing it (or ctx ending) closes the connection.
func (c *Collector) getParked(ctx context.Context, dev Device, u string, after uint64) (*http.Response, error) {
	req, err := eventsRequest(ctx, u, dev.Token, after)
	if err != nil {
		return nil, err
	}
	cfg := dev.TLS.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	dialer := &tls.Dialer{NetDialer: &net.Dialer{Timeout: c.opt.Dial, KeepAlive: 15 * time.Second}, Config: cfg}
	dctx, cancel := context.WithTimeout(ctx, c.opt.Dial)
	defer cancel()
	// The handshake runs on a goroutine of its own: it needs a stack of
	// 16 KiB, which the follower would otherwise keep while it waits.
	type dialed struct {
		conn net.Conn
		err  error
	}
	ch := make(chan dialed, 1)
	go func() {
		conn, err := dialer.DialContext(dctx, "tcp", req.URL.Host)
		ch <- dialed{conn, err}
	}()
	d := <-ch
	conn, err := d.conn, d.err
	if err != nil {
		return nil, err
	}
	// The deadline covers the request and the response headers; the
	// body is watched by readParked's idle timer.
	conn.SetDeadline(time.Now().Add(c.opt.Dial))
	resp, err := roundTripOn(conn, req)
	if err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	resp.Body = &connBody{ReadCloser: resp.Body, conn: conn, stop: stop}
	if err := refused(resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// maxParkedHeader bounds a parked response's status line and headers, as
// net/http's client bounds them (MaxResponseHeaderBytes) for the others.
const maxParkedHeader = 64 << 10

// roundTripOn writes req on conn and reads the response's headers, at
// most maxParkedHeader bytes of them.
func roundTripOn(conn net.Conn, req *http.Request) (*http.Response, error) {
	if err := req.Write(conn); err != nil {
		return nil, err
	}
	lr := &budget{r: conn, n: maxParkedHeader}
	resp, err := http.ReadResponse(bufio.NewReaderSize(lr, parkedReadBuffer), req)
	if err != nil {
		return nil, err
	}
	lr.n = -1 // the body is bounded by the event size
	return resp, nil
}

// budget reads at most n bytes from r, then fails; n < 0: no bound.
type budget struct {
	r io.Reader
	n int64
}

func (b *budget) Read(p []byte) (int, error) {
	if b.n < 0 {
		return b.r.Read(p)
	}
	if b.n == 0 {
		return 0, errors.New("collect: response headers over 64 KiB")
	}
	n, err := b.r.Read(p[:min(int64(len(p)), b.n)])
	b.n -= int64(n)
	return n, err
}

// connBody is a parked response's body: closing it closes its connection.
type connBody struct {
	io.ReadCloser
	conn net.Conn
	stop func() bool
}

// Close closes the connection first: the body's own Close would read
// the endless stream to its end.
func (b *connBody) Close() error {
	b.stop()
	err := b.conn.Close()
	b.ReadCloser.Close()
	return err
}

// readParked reads a parked stream in the follower's own goroutine until
// a record arrives (published, then errUnpark), the stream fails or goes
// silent, or the lease may have passed on. Nothing is in flight while
// parked, so there is no acknowledgement to wait for meanwhile.
func (c *Collector) readParked(ctx context.Context, r *devRun, s *Sender, floor uint64, body io.ReadCloser) error {
	idle := time.AfterFunc(c.opt.Idle, func() { body.Close() })
	defer idle.Stop()
	err := sse.ReadEvents(&activity{r: body, idle: idle, d: c.opt.Idle}, c.opt.MaxEvent, func(ev sse.Event) error {
		if time.Now().UnixNano() > r.deadline.Load() {
			return errLeaseEnded
		}
		if err := c.handle(ctx, r, s, floor, ev); err != nil {
			return err
		}
		if isRecord(ev) {
			return errUnpark
		}
		return nil
	})
	if err == nil {
		err = errors.New("collect: stream ended")
	}
	return err
}

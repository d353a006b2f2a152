package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2conn is an HTTP/2 client for many SSE streams on one connection that
// behaves on the wire as Chromium does, at a fraction of net/http's CPU:
// one goroutine reads every stream's frames and parses their events in
// place, where net/http's transport runs a goroutine and a buffer pipe
// per stream. Like Chromium it opens windows of 6 MB per stream and
// 15 MB per connection and returns credit when half a window is
// consumed; net/http returns it every 4 KiB, which costs the server a
// TLS record to read and a flow-control update per 4 KiB of events, and
// the load generator the same to write. On a 2-core machine the load
// generator's CPU is taken from the server under test, so it matters.
type h2conn struct {
	c     *tls.Conn
	fr    *http2.Framer
	host  string // :authority
	path  string // :path
	onEnd func(err error)

	wmu  sync.Mutex // protects writing: fr's writing side, enc and hbuf
	enc  *hpack.Encoder
	hbuf bytes.Buffer

	mu      sync.Mutex // protects streams and nextID
	streams map[uint32]*h2stream
	nextID  uint32

	connUnacked int // bytes received and not yet credited; the reader's
}

// h2stream is one SSE stream of an h2conn.
type h2stream struct {
	lines   sseLines
	unacked int           // the reader's
	ended   chan struct{} // closed when the stream ends; err says why
	err     error
}

// Chromium's flow-control windows.
const (
	h2StreamWindow = 6 << 20
	h2ConnWindow   = 15 << 20
	h2WriteTimeout = 10 * time.Second
)

// dialH2 connects to rawURL's host and sends the connection preface;
// streams then open with open, and readLoop must run. onEnd is called
// when a stream ends, with why.
func dialH2(ctx context.Context, rawURL string, tc *tls.Config, onEnd func(error)) (*h2conn, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("h2: %w", err)
	}
	tc.NextProtos = []string{"h2"}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: tc}
	nc, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, fmt.Errorf("h2: dial %s: %w", u.Host, err)
	}
	c := nc.(*tls.Conn)
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		c.Close()
		return nil, fmt.Errorf("h2: %s negotiated %q, not h2", u.Host, p)
	}
	hc := &h2conn{c: c, host: u.Host, path: u.RequestURI(), onEnd: onEnd,
		streams: map[uint32]*h2stream{}, nextID: 1}
	hc.fr = http2.NewFramer(c, bufio.NewReaderSize(c, 64<<10))
	hc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	hc.enc = hpack.NewEncoder(&hc.hbuf)
	if err := hc.preface(); err != nil {
		c.Close()
		return nil, err
	}
	return hc, nil
}

func (hc *h2conn) preface() error {
	hc.wmu.Lock()
	defer hc.wmu.Unlock()
	_ = hc.c.SetWriteDeadline(time.Now().Add(h2WriteTimeout))
	if _, err := io.WriteString(hc.c, http2.ClientPreface); err != nil {
		return fmt.Errorf("h2: preface: %w", err)
	}
	err := hc.fr.WriteSettings(
		http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2StreamWindow},
	)
	if err == nil {
		err = hc.fr.WriteWindowUpdate(0, h2ConnWindow-65535) // from the initial 65,535
	}
	if err != nil {
		return fmt.Errorf("h2: preface: %w", err)
	}
	return nil
}

// open starts a GET of the connection's path; ready is closed when the
// stream's first line arrives.
func (hc *h2conn) open(st *streamStats, record *recordWindow, ready chan struct{}) (*h2stream, error) {
	s := &h2stream{lines: sseLines{st: st, record: record, ready: ready}, ended: make(chan struct{})}
	hc.mu.Lock()
	id := hc.nextID
	hc.nextID += 2
	hc.streams[id] = s
	hc.mu.Unlock()

	hc.wmu.Lock()
	defer hc.wmu.Unlock()
	hc.hbuf.Reset()
	for _, f := range [][2]string{
		{":method", "GET"}, {":scheme", "https"}, {":authority", hc.host}, {":path", hc.path},
		{"accept", "text/event-stream"}, {"authorization", "Bearer " + loadToken},
	} {
		if err := hc.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}); err != nil {
			return nil, fmt.Errorf("h2: encode headers: %w", err)
		}
	}
	_ = hc.c.SetWriteDeadline(time.Now().Add(h2WriteTimeout))
	err := hc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hc.hbuf.Bytes(),
		EndStream: true, EndHeaders: true})
	if err != nil {
		return nil, fmt.Errorf("h2: open stream %d: %w", id, err)
	}
	return s, nil
}

// close ends the connection; readLoop then returns.
func (hc *h2conn) close() { hc.c.Close() }

// readLoop reads frames until the connection fails or closes, then ends
// every stream.
func (hc *h2conn) readLoop() {
	err := hc.read()
	hc.mu.Lock()
	ids := make([]uint32, 0, len(hc.streams))
	for id := range hc.streams {
		ids = append(ids, id)
	}
	hc.mu.Unlock()
	for _, id := range ids {
		hc.end(id, err)
	}
}

func (hc *h2conn) read() error {
	for {
		f, err := hc.fr.ReadFrame()
		if err != nil {
			return fmt.Errorf("h2: read: %w", err)
		}
		now := time.Now().UnixNano()
		switch f := f.(type) {
		case *http2.DataFrame:
			err = hc.data(f, now)
		case *http2.MetaHeadersFrame:
			if status := f.PseudoValue("status"); status != "200" {
				hc.end(f.StreamID, fmt.Errorf("status %s", status))
			}
		case *http2.RSTStreamFrame:
			hc.end(f.StreamID, fmt.Errorf("reset by the server: %v", f.ErrCode))
		case *http2.SettingsFrame:
			if !f.IsAck() {
				err = hc.write(func() error { return hc.fr.WriteSettingsAck() })
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				err = hc.write(func() error { return hc.fr.WritePing(true, f.Data) })
			}
		case *http2.GoAwayFrame:
			if f.ErrCode != http2.ErrCodeNo {
				return fmt.Errorf("h2: the server went away: %v", f.ErrCode)
			}
		case *http2.PushPromiseFrame:
			return errors.New("h2: push promise, though push is off")
		}
		if err != nil {
			return err
		}
	}
}

// data parses a DATA frame's events and returns flow-control credit
// once half a window is used.
func (hc *h2conn) data(f *http2.DataFrame, now int64) error {
	n := int(f.Length) // padding counts too
	hc.mu.Lock()
	s := hc.streams[f.StreamID]
	hc.mu.Unlock()
	var streamCredit int
	if s != nil {
		s.lines.feed(f.Data(), now)
		s.unacked += n
		if s.unacked >= h2StreamWindow/2 && !f.StreamEnded() {
			streamCredit, s.unacked = s.unacked, 0
		}
	}
	hc.connUnacked += n
	var connCredit int
	if hc.connUnacked >= h2ConnWindow/2 {
		connCredit, hc.connUnacked = hc.connUnacked, 0
	}
	if f.StreamEnded() {
		hc.end(f.StreamID, io.EOF)
	}
	if streamCredit == 0 && connCredit == 0 {
		return nil
	}
	return hc.write(func() error {
		if connCredit > 0 {
			if err := hc.fr.WriteWindowUpdate(0, uint32(connCredit)); err != nil {
				return err
			}
		}
		if streamCredit > 0 {
			return hc.fr.WriteWindowUpdate(f.StreamID, uint32(streamCredit))
		}
		return nil
	})
}

// write runs frame writes under the write lock and a deadline.
func (hc *h2conn) write(frames func() error) error {
	hc.wmu.Lock()
	defer hc.wmu.Unlock()
	_ = hc.c.SetWriteDeadline(time.Now().Add(h2WriteTimeout))
	if err := frames(); err != nil {
		return fmt.Errorf("h2: write: %w", err)
	}
	return nil
}

// end ends stream id, once, and tells onEnd why.
func (hc *h2conn) end(id uint32, err error) {
	hc.mu.Lock()
	s := hc.streams[id]
	delete(hc.streams, id)
	hc.mu.Unlock()
	if s == nil {
		return
	}
	s.err = err
	close(s.ended)
	hc.onEnd(err)
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sync"
	"time"

	"github.com/quic-go/qpack"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/quicvarint"
)

// h3conn is an HTTP/3 client for many SSE streams on one QUIC
// connection, written for the load generator's CPU budget as h2conn is:
// each stream's reader parses HTTP/3 frames out of its own buffer, where
// quic-go's http3 response body reads every frame header byte by byte
// from the QUIC stream (a tenth of the tool's CPU at a million events a
// second). The wire is what a browser sends: a control stream with
// SETTINGS, a QPACK-encoded GET per stream, Chromium's flow-control
// windows.
type h3conn struct {
	conn *quic.Conn
	host string // :authority
	path string // :path
}

// HTTP/3 frame and stream types (RFC 9114).
const (
	h3FrameData     = 0x00
	h3FrameHeaders  = 0x01
	h3FrameSettings = 0x04
	h3StreamControl = 0x00
	h3NoError       = 0x100
	h3MaxHeaders    = 16 << 10
)

// dialH3 connects to rawURL's host and opens the control stream. accept
// runs until the connection ends and must be run.
func dialH3(ctx context.Context, rawURL string, tc *tls.Config) (*h3conn, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("h3: %w", err)
	}
	tc.NextProtos = []string{"h3"}
	// Chromium's windows (6 MB per stream, 15 MB per connection) rather
	// than quic-go's small starting ones, which make the server wait for
	// credit from a busy client.
	conn, err := quic.DialAddr(ctx, u.Host, tc, &quic.Config{
		MaxIdleTimeout:                 60 * time.Second,
		KeepAlivePeriod:                10 * time.Second,
		InitialStreamReceiveWindow:     6 << 20,
		MaxStreamReceiveWindow:         6 << 20,
		InitialConnectionReceiveWindow: 15 << 20,
		MaxConnectionReceiveWindow:     15 << 20,
	})
	if err != nil {
		return nil, fmt.Errorf("h3: dial %s: %w", u.Host, err)
	}
	hc := &h3conn{conn: conn, host: u.Host, path: u.RequestURI()}
	ctrl, err := conn.OpenUniStream()
	if err == nil {
		// The stream type, then an empty SETTINGS frame; the control
		// stream stays open as long as the connection.
		_ = ctrl.SetWriteDeadline(time.Now().Add(h2WriteTimeout))
		_, err = ctrl.Write([]byte{h3StreamControl, h3FrameSettings, 0})
	}
	if err != nil {
		hc.close()
		return nil, fmt.Errorf("h3: control stream: %w", err)
	}
	return hc, nil
}

// accept drains the server's unidirectional streams (its control
// stream) until the connection ends.
func (hc *h3conn) accept() {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		str, err := hc.conn.AcceptUniStream(context.Background())
		if err != nil {
			return
		}
		wg.Go(func() { _, _ = io.Copy(io.Discard, str) }) // ends with the connection
	}
}

func (hc *h3conn) close() { _ = hc.conn.CloseWithError(h3NoError, "") }

// open sends a GET of the connection's path on a new stream.
func (hc *h3conn) open(ctx context.Context) (*quic.Stream, error) {
	var block bytes.Buffer
	enc := qpack.NewEncoder(&block)
	for _, f := range [][2]string{
		{":method", "GET"}, {":scheme", "https"}, {":authority", hc.host}, {":path", hc.path},
		{"accept", "text/event-stream"}, {"authorization", "Bearer " + loadToken},
	} {
		if err := enc.WriteField(qpack.HeaderField{Name: f[0], Value: f[1]}); err != nil {
			return nil, fmt.Errorf("h3: encode headers: %w", err)
		}
	}
	frame := quicvarint.Append(nil, h3FrameHeaders)
	frame = quicvarint.Append(frame, uint64(block.Len()))
	frame = append(frame, block.Bytes()...)
	str, err := hc.conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, fmt.Errorf("h3: open stream: %w", err)
	}
	_ = str.SetWriteDeadline(time.Now().Add(h2WriteTimeout))
	if _, err := str.Write(frame); err != nil {
		return nil, fmt.Errorf("h3: send request: %w", err)
	}
	if err := str.Close(); err != nil { // no request body
		return nil, fmt.Errorf("h3: send request: %w", err)
	}
	return str, nil
}

// readH3 parses an HTTP/3 response of SSE events until it fails.
func readH3(str io.Reader, p *sseLines) error {
	tr := &timedReader{r: str}
	br := bufio.NewReaderSize(tr, 32<<10)
	headers := false
	for {
		typ, err := quicvarint.Read(br)
		if err != nil {
			return err
		}
		n, err := quicvarint.Read(br)
		if err != nil {
			return err
		}
		switch {
		case typ == h3FrameHeaders && !headers:
			if err := readStatus(br, n); err != nil {
				return err
			}
			headers = true
		case typ == h3FrameData && headers:
			if err := feedData(br, n, p, tr); err != nil {
				return err
			}
		case typ == h3FrameData:
			return errors.New("h3: DATA before HEADERS")
		default: // trailers, unknown and reserved frames
			if _, err := br.Discard(int(min(n, 1<<30))); err != nil {
				return err
			}
		}
	}
}

// readStatus reads a HEADERS frame of n bytes and wants status 200.
func readStatus(br *bufio.Reader, n uint64) error {
	if n > h3MaxHeaders {
		return fmt.Errorf("h3: a %d-byte header block", n)
	}
	block := make([]byte, n)
	if _, err := io.ReadFull(br, block); err != nil {
		return err
	}
	next := qpack.NewDecoder().Decode(block)
	for {
		f, err := next()
		if err != nil {
			return fmt.Errorf("h3: response headers: no :status (%w)", err)
		}
		if f.Name == ":status" {
			if f.Value != "200" {
				return fmt.Errorf("h3: status %s", f.Value)
			}
			return nil
		}
	}
}

// feedData hands n bytes of DATA to p straight from the buffer, as they
// arrive.
func feedData(br *bufio.Reader, n uint64, p *sseLines, tr *timedReader) error {
	for n > 0 {
		if br.Buffered() == 0 {
			if _, err := br.Peek(1); err != nil {
				return err
			}
		}
		k := int(min(n, uint64(br.Buffered())))
		b, _ := br.Peek(k)
		p.feed(b, tr.at)
		_, _ = br.Discard(k)
		n -= uint64(k)
	}
	return nil
}

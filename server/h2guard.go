package server

import (
	stdtls "crypto/tls"
	"errors"
	"net"
	"net/netip"
	"time"
)

// HTTP/2 frame types h2Guard watches (RFC 9113, section 6).
const (
	frameHeaders      = 0x1
	framePriority     = 0x2
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePing         = 0x6
	frameContinuation = 0x9

	flagEndHeaders = 0x4
)

// Per HTTP/2 connection limits, as token buckets (burst, then per second):
// a client beyond any of them has its connection closed, counted, and its
// address refused for penaltyTime.
const (
	h2ResetBurst, h2ResetRate     = 200, 20   // RST_STREAM frames (rapid reset)
	h2StreamBurst, h2StreamRate   = 2000, 200 // HEADERS frames opening streams
	h2ControlBurst, h2ControlRate = 500, 50   // PING, SETTINGS, PRIORITY
	// h2MaxContinuations is how many CONTINUATION frames one header
	// block may have. x/net/http2 bounds a block's bytes, not its frames:
	// empty CONTINUATION frames otherwise cost CPU forever.
	h2MaxContinuations = 16
)

// clientPreface is what an HTTP/2 client sends before its first frame.
const clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// errH2Abuse ends the read side of a connection h2Guard cut off.
var errH2Abuse = errors.New("server: http2 connection closed for abuse")

// h2Guard sits between a TLS connection and x/net/http2's server and reads
// the frame headers going by (never the payloads, which it skips), to cut
// off connections that reset streams, open streams, send control frames or
// CONTINUATION frames faster than any client has a reason to. It is read
// by the HTTP/2 server's one reading goroutine only.
type h2Guard struct {
	*stdtls.Conn // ConnectionState comes through: x/net/http2 sees TLS
	s            *Server
	addr         netip.Addr

	preface int     // preface bytes still to skip
	hdr     [9]byte // a frame header being read
	hdrN    int
	skip    int // payload bytes still to skip
	conts   int // CONTINUATION frames in the current header block

	resets, streams, control tokenBucket
	err                      error
}

func newH2Guard(c *stdtls.Conn, s *Server) *h2Guard {
	return &h2Guard{
		Conn: c, s: s, addr: addrOf(c.RemoteAddr()), preface: len(clientPreface),
		resets:  newTokenBucket(h2ResetBurst, h2ResetRate),
		streams: newTokenBucket(h2StreamBurst, h2StreamRate),
		control: newTokenBucket(h2ControlBurst, h2ControlRate),
	}
}

func (g *h2Guard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.Conn.Read(p)
	if why, bad := g.scan(p[:n]); bad {
		g.err = errH2Abuse
		g.s.def.refuse(why, "remote", g.RemoteAddr().String())
		g.s.tcpLim.penalize(g.addr, time.Now())
		g.Conn.NetConn().Close() // no GOAWAY: the client is not listening anyway
		return 0, g.err
	}
	return n, err
}

// scan follows the frame headers in b; it reports a limit exceeded.
func (g *h2Guard) scan(b []byte) (Refusal, bool) {
	for len(b) > 0 {
		switch {
		case g.preface > 0:
			k := min(g.preface, len(b))
			g.preface -= k
			b = b[k:]
		case g.skip > 0:
			k := min(g.skip, len(b))
			g.skip -= k
			b = b[k:]
		default:
			k := copy(g.hdr[g.hdrN:], b)
			g.hdrN += k
			b = b[k:]
			if g.hdrN < len(g.hdr) {
				return 0, false
			}
			g.hdrN = 0
			g.skip = int(g.hdr[0])<<16 | int(g.hdr[1])<<8 | int(g.hdr[2])
			if why, bad := g.frame(g.hdr[3], g.hdr[4]); bad {
				return why, true
			}
		}
	}
	return 0, false
}

func (g *h2Guard) frame(typ, flags byte) (Refusal, bool) {
	switch typ {
	case frameHeaders:
		if !g.streams.take(time.Now()) {
			return RefusedH2Streams, true
		}
		g.conts = 0
	case frameContinuation:
		if g.conts++; g.conts > h2MaxContinuations {
			return RefusedH2Continuation, true
		}
		if flags&flagEndHeaders != 0 {
			g.conts = 0
		}
	case frameRSTStream:
		if !g.resets.take(time.Now()) {
			return RefusedH2RapidReset, true
		}
	case framePing, frameSettings, framePriority:
		if !g.control.take(time.Now()) {
			return RefusedH2Control, true
		}
	}
	return 0, false
}

var _ net.Conn = (*h2Guard)(nil)

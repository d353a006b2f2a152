package server

import (
	"context"
	"sync"

	"github.com/quic-go/quic-go"
)

// QUICStats are totals over the HTTP/3 (QUIC) connections the server has
// served, the open ones and the ended ones. They tell whether collectors'
// links lose packets: QUIC retransmits what it declares lost, and every
// stream of a connection waits for the retransmission.
type QUICStats struct {
	Conns           int    // open now
	PacketsSent     uint64 // retransmissions included
	PacketsReceived uint64
	PacketsLost     uint64 // declared lost by eddy, never decreasing
	BytesSent       uint64
	BytesReceived   uint64
}

func (s *QUICStats) add(c quic.ConnectionStats) {
	s.PacketsSent += c.PacketsSent
	s.PacketsReceived += c.PacketsReceived
	s.PacketsLost += c.PacketsLost
	s.BytesSent += c.BytesSent
	s.BytesReceived += c.BytesReceived
}

// quicConns keeps the open QUIC connections, and sums the statistics of
// the ended ones when they end.
type quicConns struct {
	mu    sync.Mutex
	open  map[*quic.Conn]struct{}
	ended QUICStats
	// lost is the highest PacketsLost reported: quic-go takes a packet
	// back from its lost count when it turns out to have arrived, and a
	// counter must not go down.
	lost uint64
}

// track counts c until it ends.
func (q *quicConns) track(c *quic.Conn) {
	q.mu.Lock()
	if q.open == nil {
		q.open = map[*quic.Conn]struct{}{}
	}
	q.open[c] = struct{}{}
	q.mu.Unlock()
	context.AfterFunc(c.Context(), func() {
		st := c.ConnectionStats()
		q.mu.Lock()
		defer q.mu.Unlock()
		delete(q.open, c)
		q.ended.add(st)
	})
}

func (q *quicConns) stats() QUICStats {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := q.ended
	s.Conns = len(q.open)
	for c := range q.open {
		s.add(c.ConnectionStats())
	}
	q.lost = max(q.lost, s.PacketsLost)
	s.PacketsLost = q.lost
	return s
}

// QUICStats returns the HTTP/3 connections' statistics (zero when HTTP/3
// is off).
func (s *Server) QUICStats() QUICStats { return s.quic.stats() }

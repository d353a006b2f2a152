package sse

import (
	"sync"
)

// connWriter writes the live events of every stream of one client
// connection from one goroutine: on each wake-up it writes and flushes
// the streams that have something queued, one after the other. A
// browser multiplexes all its tabs, and a collector all its
// subscriptions, on one connection; written together, their frames share
// TLS records and QUIC packets, and a fan-out wakes one goroutine per
// connection rather than one per stream.
//
// A stream is handed over to its connection's writer once it is live
// (attached to fan-out, not rate-limited) and handed back to its own
// goroutine for everything else: catching up from the log, heartbeats,
// shutdown. The stream's mu says who may write at a given moment.
//
// A stream whose client stops reading holds up the other streams of its
// connection until its write deadline drops it. That is no worse than
// the transport: HTTP/2 and QUIC give each stream a flow-control window
// of megabytes, so a stream stalls on its own only when its reader
// stops while the connection goes on being read, and then the
// connection's window stalls the others soon anyway.
type connWriter struct {
	wake chan struct{} // cap 1: ready grew
	stop chan struct{} // closed when the connection's last stream ends

	// Only run uses these.
	buf   []byte    // the streams' write buffer
	spare []*stream // the other half of ready

	mu    sync.Mutex // protects ready and each stream's queued
	ready []*stream  // handed-over streams whose queue changed, each once
	refs  int        // streams of this connection being served; under Hub.cmu
}

func newConnWriter() *connWriter {
	return &connWriter{wake: make(chan struct{}, 1), stop: make(chan struct{})}
}

// enqueue asks the writer to write s.
func (w *connWriter) enqueue(s *stream) {
	w.mu.Lock()
	if !s.queued {
		s.queued = true
		w.ready = append(w.ready, s)
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// run writes ready streams until stop is closed.
func (w *connWriter) run() {
	for {
		select {
		case <-w.wake:
		case <-w.stop:
			return
		}
		w.mu.Lock()
		batch := w.ready
		for _, s := range batch {
			s.queued = false
		}
		w.ready = w.spare[:0]
		w.mu.Unlock()
		for _, s := range batch {
			s.writeLive(w)
		}
		clear(batch)
		w.spare = batch
	}
}

// connWriter returns the writer of the connection key, starting it if
// it is the connection's first stream. Each call must be paired with
// releaseWriter.
func (h *Hub) connWriter(key any) *connWriter {
	h.cmu.Lock()
	defer h.cmu.Unlock()
	w := h.conns[key]
	if w == nil {
		w = newConnWriter()
		h.conns[key] = w
		go w.run()
	}
	w.refs++
	return w
}

// releaseWriter ends w's goroutine when its connection's last stream
// ended.
func (h *Hub) releaseWriter(key any, w *connWriter) {
	h.cmu.Lock()
	defer h.cmu.Unlock()
	w.refs--
	if w.refs == 0 {
		delete(h.conns, key)
		close(w.stop)
	}
}

package sse

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/eddy-iot/eddy/topic"
)

// ErrBadRequest is wrapped by every error about a malformed /events
// request; ServeHTTP answers it with 400 and the error's text.
var ErrBadRequest = errors.New("sse: bad request")

// mode is a stream's backpressure policy.
type mode uint8

const (
	modeDownsample mode = iota // full queue: latest value per topic, and a gap
	modeExact                  // full queue: read the ring log at the client's pace
)

// params is a parsed /events request.
type params struct {
	filters  topic.Set
	key      string        // the filters, sorted and joined: streams with equal keys share matching
	mode     mode          // backpressure policy, ?mode=
	interval time.Duration // minimum time between events of one topic; 0: no rate cap
	resume   bool          // a Last-Event-ID was given
	lastID   uint64
	// unknownID is a Last-Event-ID this log never issued (at or above
	// NextSeq: another device's, or garbage). The stream then starts at
	// the oldest record after a gap that names it; lastID is 0.
	unknownID uint64
}

// parseParams reads the query and headers of an /events request. nextSeq
// is the log's NextSeq: no id at or above it was ever issued.
func parseParams(r *http.Request, nextSeq uint64) (params, error) {
	q := r.URL.Query()
	var p params
	var err error
	if p.filters, p.key, err = parseFilters(q["topic"]); err != nil {
		return p, err
	}
	if p.mode, err = parseMode(q.Get("mode")); err != nil {
		return p, err
	}
	if p.interval, err = parseRate(q.Get("rate")); err != nil {
		return p, err
	}
	if p.mode == modeExact && p.interval > 0 {
		return p, fmt.Errorf("%w: rate drops events and mode=exact never does; use one or the other", ErrBadRequest)
	}
	// The header wins: a browser's EventSource reconnecting to a URL that
	// carries lastEventID sends the newer id in the header.
	id := r.Header.Get("Last-Event-ID")
	if id == "" {
		id = q.Get("lastEventID")
	}
	if id != "" {
		p.resume = true
		if p.lastID, err = parseLastEventID(id); err != nil {
			return p, err
		}
		if p.lastID >= nextSeq {
			p.unknownID, p.lastID = p.lastID, 0
		}
	}
	return p, nil
}

func parseFilters(raw []string) (topic.Set, string, error) {
	set, err := topic.ParseSet(raw)
	if err != nil {
		return nil, "", fmt.Errorf("%w: topic: %w", ErrBadRequest, err)
	}
	names := make([]string, len(set))
	for i, f := range set {
		names[i] = f.String()
	}
	slices.Sort(names)
	names = slices.Compact(names)
	return set, strings.Join(names, "\x00"), nil
}

// modeIndex maps the stream's policy to StreamModes.
func (p params) modeIndex() int {
	if p.interval > 0 {
		return 2
	}
	return int(p.mode)
}

func parseMode(s string) (mode, error) {
	switch s {
	case "", "downsample":
		return modeDownsample, nil
	case "exact":
		return modeExact, nil
	}
	return 0, fmt.Errorf("%w: mode %.24q: want downsample or exact", ErrBadRequest, s)
}

// minRate and maxRate bound ?rate so that the interval is a sane,
// positive duration (at most about 17 minutes, at least 1µs).
const (
	minRate = 0.001
	maxRate = 1e6
)

func parseRate(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	hz, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(hz) || hz < minRate || hz > maxRate {
		return 0, fmt.Errorf("%w: rate %.24q: want events per second per topic, from %g to %g", ErrBadRequest, s, minRate, float64(maxRate))
	}
	return time.Duration(float64(time.Second) / hz), nil
}

// parseLastEventID parses a resume id: a decimal uint64. An id the log
// does not know is not an error (see params.unknownID): a collector must
// not stop because a device lost its ring.db.
func parseLastEventID(s string) (uint64, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%w: last event id %.24q is not a decimal event id", ErrBadRequest, s)
	}
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: last event id %.24q is not a decimal event id", ErrBadRequest, s)
	}
	return id, nil
}

package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/eddy-iot/eddy/ringlog"
	"github.com/eddy-iot/eddy/sse"
	"github.com/eddy-iot/eddy/topic"
)

// History limits.
const (
	DefaultHistoryLimit = 1000
	MaxHistoryLimit     = 100000
)

// handleHealth answers 200 when the server is up and the ring log
// writable, else 503 with the reason.
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	err := s.health(r.Context())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		json.NewEncoder(w).Encode(map[string]string{"status": "unavailable", "reason": err.Error()})
		return
	}
	json.NewEncoder(w).Encode(map[string]any{"status": "ok", "last_seq": s.opt.Log.LastSeq()})
}

func (s *Server) health(ctx context.Context) error {
	if s.stopping.Load() {
		return errors.New("shutting down")
	}
	if _, err := s.opt.Log.ReadAfter(nil, s.opt.Log.LastSeq(), 1); err != nil {
		return fmt.Errorf("ring log: %w", err)
	}
	if err := s.opt.Log.Err(); err != nil {
		return fmt.Errorf("ring log not writable: %w", err)
	}
	if s.opt.Health != nil {
		return s.opt.Health(ctx)
	}
	return nil
}

// handleSeries answers every known topic with its latest record, sorted by
// topic, each shaped like the data of an SSE reading event.
func (s *Server) handleSeries(w http.ResponseWriter, r *http.Request) {
	latest := s.opt.Log.Latest()
	buf := make([]byte, 0, 128*len(latest)+2)
	buf = append(buf, '[')
	for i := range latest {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = sse.AppendRecordJSON(buf, &latest[i])
	}
	buf = append(buf, ']', '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(buf)
}

// historyQuery is a parsed /api/history request.
type historyQuery struct {
	q      ringlog.Query
	ndjson bool
	points int       // > 0: decimate into at most this many buckets per topic
	until  time.Time // the decimation window's end; zero: now
}

// paramError names the query parameter that was wrong.
type paramError struct {
	param string
	err   error
}

func (e *paramError) Error() string { return fmt.Sprintf("%s: %v", e.param, e.err) }

func parseHistory(r *http.Request) (historyQuery, error) {
	v := r.URL.Query()
	hq := historyQuery{q: ringlog.Query{Limit: DefaultHistoryLimit}}
	if raw := v["topic"]; len(raw) > 0 {
		set, err := topic.ParseSet(raw)
		if err != nil {
			return hq, &paramError{"topic", err}
		}
		hq.q.Match = set.Match
	}
	if s := v.Get("from_seq"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return hq, &paramError{"from_seq", errors.New("not an unsigned integer")}
		}
		hq.q.FromSeq = n
	}
	if s := v.Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return hq, &paramError{"since", errors.New("not an RFC 3339 time such as 2026-11-23T17:00:00Z")}
		}
		hq.q.Since = clampSince(t)
	}
	if s := v.Get("points"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > ringlog.MaxPoints {
			return hq, &paramError{"points", fmt.Errorf("not an integer from 1 to %d", ringlog.MaxPoints)}
		}
		// A decimated window is read whole unless a limit is given.
		hq.points, hq.q.Limit = n, 0
	}
	if s := v.Get("until"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return hq, &paramError{"until", errors.New("not an RFC 3339 time such as 2026-11-23T17:00:00Z")}
		}
		hq.until = t
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxHistoryLimit {
			return hq, &paramError{"limit", fmt.Errorf("not an integer from 1 to %d", MaxHistoryLimit)}
		}
		hq.q.Limit = n
	}
	hq.ndjson = acceptsNDJSON(r.Header.Get("Accept"))
	return hq, nil
}

// Times a ring log can order: int64 nanoseconds since 1970 reach from
// 1677-09-21 to 2262-04-11.
var (
	minSince = time.Unix(0, math.MinInt64+1).UTC()
	maxSince = time.Unix(0, math.MaxInt64).UTC()
)

// clampSince keeps since within what UnixNano can say: a time before
// every record asks for all of them (no bound), one after every record
// for none.
func clampSince(t time.Time) time.Time {
	switch {
	case t.Before(minSince):
		return time.Time{}
	case t.After(maxSince):
		return maxSince
	}
	return t
}

func acceptsNDJSON(accept string) bool {
	for _, part := range strings.Split(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err == nil && (mt == "application/x-ndjson" || mt == "application/jsonl") {
			return true
		}
	}
	return false
}

// handleHistory streams records from the ring log, oldest first, as a JSON
// array or (Accept: application/x-ndjson) one object per line.
func (s *Server) handleHistory(w http.ResponseWriter, r *http.Request) {
	hq, err := parseHistory(r)
	if err != nil {
		http.Error(w, "400 bad request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if hq.points > 0 {
		s.handleDecimated(w, r, hq)
		return
	}
	ct, open, sep, end := "application/json", "[", ",", "]\n"
	if hq.ndjson {
		ct, open, sep, end = "application/x-ndjson", "", "\n", "\n"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Cache-Control", "no-store")
	bw := bufio.NewWriterSize(w, 32<<10)
	bw.WriteString(open)
	n := 0
	var buf []byte
	err = s.opt.Log.History(r.Context(), hq.q, func(rec ringlog.Record) error {
		if n > 0 {
			bw.WriteString(sep)
		}
		n++
		buf = sse.AppendRecordJSON(buf[:0], &rec)
		_, err := bw.Write(buf)
		return err
	})
	if err != nil {
		// The status is sent; cutting the body short makes the client's
		// JSON parse fail rather than look complete.
		if r.Context().Err() == nil { // not merely the client leaving
			s.log.Warn("server: history aborted", "error", err)
		}
		return
	}
	if n > 0 || !hq.ndjson {
		bw.WriteString(end)
	}
	bw.Flush()
}

// handleDecimated answers /api/history?points=N: per topic, at most N
// buckets {"ts","min","max","last","count"} of its numeric values, as a
// JSON array of {"topic","unit","buckets"} sorted by topic (ndjson: one
// series per line). The window is since (default: the first record) to
// until (default: now).
func (s *Server) handleDecimated(w http.ResponseWriter, r *http.Request, hq historyQuery) {
	series, err := s.opt.Log.Decimate(r.Context(), hq.q, hq.points, hq.until)
	if err != nil {
		if r.Context().Err() == nil {
			s.log.Warn("server: decimated history", "error", err)
			http.Error(w, "500 ring log: "+err.Error(), http.StatusInternalServerError)
		}
		return
	}
	ct, open, sep, end := "application/json", "[", ",", "]\n"
	if hq.ndjson {
		ct, open, sep, end = "application/x-ndjson", "", "\n", "\n"
		if len(series) == 0 {
			end = ""
		}
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Cache-Control", "no-store")
	buf := make([]byte, 0, 64<<10)
	buf = append(buf, open...)
	for i := range series {
		if i > 0 {
			buf = append(buf, sep...)
		}
		buf = appendSeries(buf, &series[i])
		if len(buf) > 48<<10 {
			if _, err := w.Write(buf); err != nil {
				return
			}
			buf = buf[:0]
		}
	}
	buf = append(buf, end...)
	w.Write(buf)
}

// appendSeries appends one decimated series as JSON.
func appendSeries(dst []byte, sr *ringlog.Series) []byte {
	dst = append(dst, `{"topic":`...)
	dst, _ = appendJSONString(dst, sr.Topic)
	if sr.Unit != "" {
		dst = append(dst, `,"unit":`...)
		dst, _ = appendJSONString(dst, sr.Unit)
	}
	dst = append(dst, `,"buckets":[`...)
	for i, b := range sr.Buckets {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"ts":"`...)
		dst = b.Time.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z07:00")
		dst = append(dst, `","min":`...)
		dst = strconv.AppendFloat(dst, b.Min, 'g', -1, 64)
		dst = append(dst, `,"max":`...)
		dst = strconv.AppendFloat(dst, b.Max, 'g', -1, 64)
		dst = append(dst, `,"last":`...)
		dst = strconv.AppendFloat(dst, b.Last, 'g', -1, 64)
		dst = append(dst, `,"count":`...)
		dst = strconv.AppendInt(dst, int64(b.Count), 10)
		dst = append(dst, '}')
	}
	return append(dst, ']', '}')
}

func appendJSONString(dst []byte, s string) ([]byte, error) {
	b, err := json.Marshal(s)
	return append(dst, b...), err
}

package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/eddy-iot/eddy/ringlog"
)

// StatusFunc returns one section of GET /api/status: a value that
// encoding/json can marshal, computed at request time. It must not block.
type StatusFunc func() any

// statusBuiltin are the top-level keys the server fills itself; sections
// added with AddStatus cannot take them.
var statusBuiltin = map[string]bool{
	"hostname": true, "version": true, "time": true, "started": true, "uptime_seconds": true,
	"epoch": true, "ingest": true, "log": true,
}

// statusState is what /api/status remembers between calls.
type statusState struct {
	started time.Time

	mu       sync.Mutex            // protects the fields below
	sections map[string]StatusFunc // added by AddStatus
	sampleT  time.Time             // when appended was sampled
	sampleN  uint64                // ringlog Stats.Appended then
	rate     float64               // records/s over the last sampling period
}

func (st *statusState) init(l *ringlog.Log) {
	st.started = time.Now()
	st.sampleT, st.sampleN = st.started, l.Stats().Appended
	st.sections = map[string]StatusFunc{}
}

// ingestRate is records appended per second: over the time since the
// previous sample, taken at most once a second, so that frequent callers
// see a smoothed figure and rare callers an average.
func (st *statusState) ingestRate(now time.Time, appended uint64) float64 {
	st.mu.Lock()
	defer st.mu.Unlock()
	if dt := now.Sub(st.sampleT); dt >= time.Second {
		st.rate = float64(appended-st.sampleN) / dt.Seconds()
		st.sampleT, st.sampleN = now, appended
	}
	return st.rate
}

// AddStatus adds (or with a nil fn removes) a section of GET /api/status
// under name, e.g. "mqtt", "sensors", "streams", "upstream": parts the
// server does not know about plug in here. It is safe to call at any
// time; a name the server fills itself panics, a programming error.
func (s *Server) AddStatus(name string, fn StatusFunc) {
	if statusBuiltin[name] {
		panic(fmt.Sprintf("server: AddStatus(%q): the server fills that key itself", name))
	}
	s.stat.mu.Lock()
	defer s.stat.mu.Unlock()
	if fn == nil {
		delete(s.stat.sections, name)
		return
	}
	s.stat.sections[name] = fn
}

// logStatus is the "log" section of /api/status.
type logStatus struct {
	Bytes      int64      `json:"bytes"`      // bytes the stored records account for
	FileBytes  int64      `json:"file_bytes"` // size of ring.db
	Records    int64      `json:"records"`
	OldestSeq  uint64     `json:"oldest_seq"`
	LastSeq    uint64     `json:"last_seq"`
	DurableSeq uint64     `json:"durable_seq"`
	OldestTime *time.Time `json:"oldest_time,omitempty"` // absent when the log is empty
	Trimmed    uint64     `json:"trimmed"`
	Error      string     `json:"error,omitempty"` // why appends are not durable, if they are not
}

// handleStatus answers GET /api/status: the device panel's JSON (see
// docs/api.md).
func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	ls := s.opt.Log.Stats()
	host, _ := os.Hostname()
	out := map[string]any{
		"hostname":       host,
		"version":        s.opt.Version,
		"time":           now.UTC(),
		"started":        s.stat.started.UTC(),
		"uptime_seconds": roundTo(now.Sub(s.stat.started).Seconds(), 1),
		"ingest": map[string]any{
			"appended":           ls.Appended,
			"records_per_second": roundTo(s.stat.ingestRate(now, ls.Appended), 100),
		},
	}
	lg := logStatus{Bytes: ls.Bytes, FileBytes: ls.FileBytes, Records: ls.Records, OldestSeq: ls.OldestSeq,
		LastSeq: ls.LastSeq, DurableSeq: ls.DurableSeq, Trimmed: ls.Trimmed}
	if !ls.OldestTime.IsZero() {
		lg.OldestTime = &ls.OldestTime
	}
	if err := s.opt.Log.Err(); err != nil {
		lg.Error = err.Error()
	}
	out["log"] = lg
	out["epoch"] = s.opt.Log.Epoch() // one ring.db's numbering: seqs compare within an epoch
	s.stat.mu.Lock()
	names := make([]string, 0, len(s.stat.sections))
	fns := make([]StatusFunc, 0, len(s.stat.sections))
	for n := range s.stat.sections {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fns = append(fns, s.stat.sections[n])
	}
	s.stat.mu.Unlock()
	for i, fn := range fns { // outside the lock: sections take their own
		out[names[i]] = fn()
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	if err := enc.Encode(out); err != nil && r.Context().Err() == nil {
		s.log.Warn("server: status", "error", err)
	}
}

func roundTo(f float64, per float64) float64 {
	return float64(int64(f*per+0.5)) / per
}

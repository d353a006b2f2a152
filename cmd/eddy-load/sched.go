package main

import (
	"runtime/metrics"
	"strconv"
	"strings"
)

// schedLatencies is the Go runtime's histogram of how long goroutines
// waited to run after becoming runnable. Its tail tells how much of a
// delivery's latency was time spent waiting for a CPU.
const schedLatencies = "/sched/latencies:seconds"

// schedHist is a snapshot of a scheduling-latency histogram: counts[i]
// goroutine wake-ups waited between bounds[i] and bounds[i+1] seconds.
type schedHist struct {
	counts []uint64
	bounds []float64
}

// ownSched reads this process's scheduling latencies.
func ownSched() schedHist {
	s := []metrics.Sample{{Name: schedLatencies}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64Histogram {
		return schedHist{}
	}
	h := s[0].Value.Float64Histogram()
	return schedHist{counts: append([]uint64(nil), h.Counts...), bounds: append([]float64(nil), h.Buckets...)}
}

// parseSched reads the go_sched_latencies_seconds histogram from lines
// of a Prometheus text exposition; empty when it is not there.
func parseSched(lines []string) schedHist {
	const prefix = `go_sched_latencies_seconds_bucket{le="`
	h := schedHist{bounds: []float64{0}}
	var prev uint64
	for _, line := range lines {
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		le, count, ok := strings.Cut(rest, `"} `)
		bound, err1 := strconv.ParseFloat(le, 64)
		cum, err2 := strconv.ParseFloat(count, 64)
		if !ok || err1 != nil || err2 != nil || uint64(cum) < prev {
			return schedHist{}
		}
		h.bounds = append(h.bounds, bound)
		h.counts = append(h.counts, uint64(cum)-prev)
		prev = uint64(cum)
	}
	if len(h.counts) == 0 {
		return schedHist{}
	}
	return h
}

// schedOver is the share of the wake-ups counted between the snapshots
// a and b (same process) that waited longer than over, counting whole
// buckets from the first whose lower bound is at least over; -1 when
// there were none or the snapshots do not match. eddy exports the
// histogram with few buckets (about eleven times apart), so the tool
// reports both processes against one of eddy's bounds.
func schedOver(a, b schedHist, over float64) float64 {
	if len(b.counts) == 0 || len(a.counts) != len(b.counts) || len(b.bounds) != len(b.counts)+1 {
		return -1
	}
	var total, late uint64
	for i := range b.counts {
		n := b.counts[i] - a.counts[i]
		total += n
		if b.bounds[i] >= over*(1-1e-9) {
			late += n
		}
	}
	if total == 0 {
		return -1
	}
	return float64(late) / float64(total)
}

// lateWake is the wait the report counts wake-ups beyond: the bound of
// eddy's exported histogram nearest 10 ms (0.01048576 s, 10 * 2^20 ns).
const lateWake = 0.01048576

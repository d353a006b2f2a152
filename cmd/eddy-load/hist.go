package main

import (
	"math"
	"math/bits"
	"time"
)

// hist is a log-linear histogram of durations in nanoseconds: exact below
// 128 ns, then 64 buckets per power of two, so a reported quantile is
// within 1/64 (1.6 %) of the true value. It holds any number of samples
// in fixed memory, which lets a million deliveries a second be recorded
// without keeping them; 32-bit counts (up to 4 billion samples a bucket)
// keep a thousand streams' histograms small enough to stay in cache. The
// zero value is empty and ready; it is not safe for concurrent use.
type hist struct {
	counts [histBuckets]uint32
	n      uint64
	max    int64
}

const (
	histSubBits = 6
	histSub     = 1 << histSubBits // buckets per power of two
	// histBuckets covers durations up to 2^38 ns (about 275 s); longer
	// ones land in the last bucket.
	histBuckets = (38 - histSubBits + 1) * histSub
)

// bucketOf is the bucket index of v (v >= 0).
func bucketOf(v int64) int {
	if v < 2*histSub {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - histSubBits - 1
	i := (shift+1)*histSub + int(v>>shift) - histSub
	return min(i, histBuckets-1)
}

// bucketMid is the middle of bucket i's range of values.
func bucketMid(i int) int64 {
	if i < 2*histSub {
		return int64(i)
	}
	shift := i/histSub - 1
	m := int64(i%histSub + histSub)
	lo := m << shift
	return lo + (int64(1)<<shift)/2
}

// add records one duration; negative durations (clock steps) count as 0.
func (h *hist) add(d int64) {
	d = max(d, 0)
	h.counts[bucketOf(d)]++
	h.n++
	h.max = max(h.max, d)
}

// merge adds o's samples to h.
func (h *hist) merge(o *hist) {
	if o == nil {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile is the q-quantile (0 < q <= 1) by the nearest-rank method:
// the smallest recorded value v such that at least q of the samples are
// <= v, reported as its bucket's middle. 0 when h is empty.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += uint64(c)
		if seen >= rank {
			return time.Duration(min(bucketMid(i), h.max))
		}
	}
	return time.Duration(h.max)
}

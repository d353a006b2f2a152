package main

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestHistQuantile compares the histogram's quantiles with exact
// nearest-rank quantiles of the same samples.
func TestHistQuantile(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	sets := map[string][]int64{
		"small exact":    {1, 2, 3, 4, 5, 6, 7, 8, 9, 10},
		"uniform 0-50ms": nil,
		"lognormal":      nil,
	}
	for range 100000 {
		sets["uniform 0-50ms"] = append(sets["uniform 0-50ms"], r.Int64N(int64(50*time.Millisecond)))
		sets["lognormal"] = append(sets["lognormal"], int64(float64(time.Millisecond)*r.ExpFloat64()*r.ExpFloat64()))
	}
	for name, samples := range sets {
		var h hist
		for _, s := range samples {
			h.add(s)
		}
		sorted := slices.Clone(samples)
		slices.Sort(sorted)
		for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999, 1} {
			rank := int(float64(len(sorted))*q+0.999999999) - 1
			want := sorted[max(rank, 0)]
			got := int64(h.quantile(q))
			if diff := got - want; diff < -want/64-1 || diff > want/64+1 {
				t.Errorf("%s: q%.3f = %d, want %d within 1/64", name, q, got, want)
			}
		}
		if h.n != uint64(len(samples)) {
			t.Errorf("%s: n = %d, want %d", name, h.n, len(samples))
		}
	}
}

func TestHistBuckets(t *testing.T) {
	// Buckets are contiguous and ordered: every value falls in a bucket
	// whose middle is within 1/64 of it.
	prev := -1
	for _, v := range []int64{0, 1, 127, 128, 129, 255, 256, 1000, 1 << 20, 123456789, 1 << 37} {
		i := bucketOf(v)
		if i < prev {
			t.Fatalf("bucketOf(%d) = %d, below the bucket of a smaller value (%d)", v, i, prev)
		}
		prev = i
		if mid := bucketMid(i); mid-v > v/64+1 || v-mid > v/64+1 {
			t.Errorf("value %d: bucket %d middle %d, more than 1/64 away", v, i, mid)
		}
	}
	for v := int64(0); v < 1<<16; v++ {
		if bucketOf(v+1) != bucketOf(v) && bucketOf(v+1) != bucketOf(v)+1 {
			t.Fatalf("buckets skip between %d and %d", v, v+1)
		}
	}
	var h hist
	if h.quantile(0.5) != 0 {
		t.Error("empty histogram: quantile not 0")
	}
	h.add(-5)
	if h.quantile(1) != 0 {
		t.Error("negative sample not clamped to 0")
	}
	var a, b hist
	a.add(10)
	b.add(1000)
	a.merge(&b)
	if a.n != 2 || a.quantile(1) != 1000 || a.quantile(0.5) != 10 {
		t.Errorf("merge: n %d q1 %v q.5 %v", a.n, a.quantile(1), a.quantile(0.5))
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
		{nil, 0},
	} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

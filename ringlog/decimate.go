package ringlog

import (
	"bytes"
	"context"
	"errors"
	"math"
	"sort"
	"strconv"
	"time"
	"unsafe"
)

// MaxPoints bounds Decimate's points per series.
const MaxPoints = 10000

// ErrPoints is returned by Decimate when points is not in 1..MaxPoints.
var ErrPoints = errors.New("ringlog: points must be from 1 to 10000")

// Bucket is one time slice of a decimated series: the numeric records of
// one topic observed in the slice, summarized. Time and Last are those of
// the slice's last record (by seq), so a bucket holding one record is that
// record exactly.
type Bucket struct {
	Time  time.Time
	Min   float64
	Max   float64
	Last  float64
	Count int

	idx int // the slice's index in the window
}

// Series is one topic's buckets, oldest first. Unit is the unit of the
// series' last record.
type Series struct {
	Topic   string
	Unit    string
	Buckets []Bucket
}

// Decimate reads the records History(q) would read (q.Limit <= 0: no
// bound, so a 24 h window is read whole) and summarizes each topic's
// numeric values into at most points buckets of equal width between
// q.Since (zero: the time of the first numeric record read) and until (zero: now; records
// observed later fall in the last bucket). A value is numeric when it is
// a JSON number, or a JSON boolean (true 1, false 0); other records are
// skipped. Series are sorted by topic, and memory is bounded by points per
// topic, whatever the number of records read.
func (l *Log) Decimate(ctx context.Context, q Query, points int, until time.Time) ([]Series, error) {
	if points < 1 || points > MaxPoints {
		return nil, ErrPoints
	}
	if until.IsZero() {
		until = time.Now()
	}
	var start, span int64
	setStart := func(from time.Time) {
		start, span = from.UnixNano(), max(until.UnixNano()-from.UnixNano(), 1)
	}
	if !q.Since.IsZero() {
		setStart(q.Since)
	}
	if q.Limit <= 0 {
		q.Limit = math.MaxInt
	}
	byTopic := map[string]*Series{}
	err := l.History(ctx, q, func(r Record) error {
		v, ok := numeric(r)
		if !ok {
			return nil
		}
		if span == 0 {
			setStart(r.Time) // the first record read opens the window
		}
		s := byTopic[r.Topic]
		if s == nil {
			s = &Series{Topic: r.Topic}
			byTopic[r.Topic] = s
		}
		s.Unit = r.Unit
		idx := int(float64(r.Time.UnixNano()-start) / float64(span) * float64(points))
		if r.Time.UnixNano() < start {
			idx = 0 // observed out of order, within History's slack
		}
		s.add(min(max(idx, 0), points-1), r.Time, v)
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]Series, 0, len(byTopic))
	for _, s := range byTopic {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Topic < out[j].Topic })
	return out, nil
}

// add merges value v observed at t into bucket idx. Records arrive in seq
// order, which is time order but for stragglers; a straggler is merged
// into the bucket its time belongs to.
func (s *Series) add(idx int, t time.Time, v float64) {
	n := len(s.Buckets)
	i := n
	for i > 0 && s.Buckets[i-1].idx > idx {
		i--
	}
	if i > 0 && s.Buckets[i-1].idx == idx {
		b := &s.Buckets[i-1]
		b.Min, b.Max, b.Count = min(b.Min, v), max(b.Max, v), b.Count+1
		b.Time, b.Last = t, v // the latest by seq
		return
	}
	b := Bucket{Time: t, Min: v, Max: v, Last: v, Count: 1, idx: idx}
	s.Buckets = append(s.Buckets, Bucket{})
	copy(s.Buckets[i+1:], s.Buckets[i:n])
	s.Buckets[i] = b
}

// numeric reads r's value as a number: JSON numbers and booleans.
func numeric(r Record) (float64, bool) {
	if r.Kind != KindJSON {
		return 0, false
	}
	v := bytes.TrimSpace(r.Value)
	if len(v) == 0 {
		return 0, false
	}
	switch c := v[0]; {
	case c == '-' || (c >= '0' && c <= '9'):
		// A valid JSON number (KindJSON guarantees it) is a valid Go float;
		// ParseFloat keeps no reference to the unsafe string.
		f, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(v), len(v)), 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return 0, false
		}
		return f, !math.IsInf(f, 0)
	case string(v) == "true":
		return 1, true
	case string(v) == "false":
		return 0, true
	}
	return 0, false
}

package ringlog

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"
)

// TestDecimate checks buckets against a recount of the same records done
// the slow way, for a 1 Hz series over 24 h-like windows, stragglers,
// non-numeric values and a second topic.
func TestDecimate(t *testing.T) {
	l, _ := openTest(t, &Options{SyncInterval: time.Millisecond})
	base := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	type in struct {
		topic string
		off   time.Duration
		kind  Kind
		value string
	}
	var ins []in
	for i := range 3600 { // one hour at 1 Hz, values 0..3599
		ins = append(ins, in{"a/x", time.Duration(i) * time.Second, KindJSON, fmt.Sprint(i)})
		if i%60 == 0 {
			ins = append(ins, in{"b/y", time.Duration(i) * time.Second, KindJSON, fmt.Sprint(-i)})
			ins = append(ins, in{"b/text", time.Duration(i) * time.Second, KindText, "on"})
			ins = append(ins, in{"b/obj", time.Duration(i) * time.Second, KindJSON, `{"v":1}`})
		}
	}
	ins = append(ins,
		in{"a/x", 10 * time.Second, KindJSON, "-5"}, // a straggler, observed early, stored last
		in{"c/flag", 30 * time.Minute, KindJSON, "true"},
		in{"c/flag", 30*time.Minute + 30*time.Second, KindJSON, "false"},
	)
	for _, x := range ins {
		if _, err := l.Append(Record{Topic: x.topic, Kind: x.kind, Value: []byte(x.value), Unit: "u", Time: base.Add(x.off)}); err != nil {
			t.Fatal(err)
		}
	}
	until := base.Add(time.Hour)
	got, err := l.Decimate(context.Background(), Query{Since: base}, 60, until)
	if err != nil {
		t.Fatal(err)
	}
	var topics []string
	for _, s := range got {
		topics = append(topics, s.Topic)
	}
	if fmt.Sprint(topics) != "[a/x b/y c/flag]" {
		t.Fatalf("topics %v, want the numeric ones, sorted", topics)
	}
	ax := got[0]
	if len(ax.Buckets) != 60 || ax.Unit != "u" {
		t.Fatalf("a/x: %d buckets unit %q, want 60 of u", len(ax.Buckets), ax.Unit)
	}
	for i, b := range ax.Buckets {
		wantMin, wantMax, wantCount := float64(i*60), float64(i*60+59), 60
		wantLast, wantTime := wantMax, base.Add(time.Duration(i*60+59)*time.Second)
		if i == 0 { // the straggler: stored last, so it is this bucket's last
			wantMin, wantCount, wantLast, wantTime = -5, 61, -5, base.Add(10*time.Second)
		}
		if b.Min != wantMin || b.Max != wantMax || b.Count != wantCount || b.Last != wantLast || !b.Time.Equal(wantTime) {
			t.Fatalf("a/x bucket %d = %+v, want min %v max %v last %v count %d at %v", i, b, wantMin, wantMax, wantLast, wantCount, wantTime)
		}
	}
	if by := got[1].Buckets; len(by) != 60 || by[59].Last != -3540 || by[59].Count != 1 {
		t.Fatalf("b/y buckets %d, last %+v", len(by), by[len(by)-1])
	}
	if cf := got[2].Buckets; len(cf) != 1 || cf[0].Min != 0 || cf[0].Max != 1 || cf[0].Last != 0 || cf[0].Count != 2 {
		t.Fatalf("c/flag buckets %+v, want one with min 0 max 1 last 0 count 2", cf)
	}

	// With more points than records, each bucket is one record, exactly
	// as History returns it.
	match := func(s string) bool { return s == "b/y" }
	got, err = l.Decimate(context.Background(), Query{Match: match}, 1000, until)
	if err != nil {
		t.Fatal(err)
	}
	var hist []Record
	l.History(context.Background(), Query{Match: match, Limit: 1000}, func(r Record) error { hist = append(hist, r); return nil })
	if len(got) != 1 || len(got[0].Buckets) != len(hist) {
		t.Fatalf("b/y with 1000 points: %d series %d buckets, want %d buckets (oldest %v)", len(got), len(got[0].Buckets), len(hist), l.Stats().OldestTime)
	}
	for i, b := range got[0].Buckets {
		if !b.Time.Equal(hist[i].Time) || fmt.Sprint(b.Last) != string(hist[i].Value) || b.Count != 1 || b.Min != b.Max {
			t.Fatalf("bucket %d = %+v, record %v %s", i, b, hist[i].Time, hist[i].Value)
		}
	}

	// Later records than until land in the last bucket; points bounds.
	got, err = l.Decimate(context.Background(), Query{Since: base, Match: func(s string) bool { return s == "a/x" }}, 3, base.Add(time.Minute))
	if err != nil || len(got) != 1 || len(got[0].Buckets) != 3 || got[0].Buckets[2].Last != 3599 {
		t.Fatalf("until before the end: %v %+v", err, got)
	}
	for _, p := range []int{0, -1, MaxPoints + 1} {
		if _, err := l.Decimate(context.Background(), Query{}, p, time.Time{}); !errors.Is(err, ErrPoints) {
			t.Errorf("points %d: err %v, want ErrPoints", p, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Decimate(ctx, Query{}, 10, time.Time{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err %v", err)
	}
}

func TestNumeric(t *testing.T) {
	for _, c := range []struct {
		kind  Kind
		value string
		want  float64
		ok    bool
	}{
		{KindJSON, "2.5", 2.5, true},
		{KindJSON, " -1e3 ", -1000, true},
		{KindJSON, "true", 1, true},
		{KindJSON, "false", 0, true},
		{KindJSON, "1e999", 0, false}, // valid JSON, not a finite float
		{KindJSON, `"3"`, 0, false},
		{KindJSON, "null", 0, false},
		{KindJSON, "[1]", 0, false},
		{KindText, "3", 0, false},
		{KindBinary, "3", 0, false},
	} {
		got, ok := numeric(Record{Kind: c.kind, Value: []byte(c.value)})
		if ok != c.ok || (ok && got != c.want) || math.IsNaN(got) {
			t.Errorf("numeric(%v %q) = %v, %v; want %v, %v", c.kind, c.value, got, ok, c.want, c.ok)
		}
	}
}

// BenchmarkDecimate24h: a day of one 1 Hz series into 500 points, the
// dashboard's 24 h chart.
func BenchmarkDecimate24h(b *testing.B) {
	l, _ := openTest(b, &Options{SyncInterval: 10 * time.Millisecond, MaxBytes: 1 << 30})
	base := time.Now().Add(-24 * time.Hour)
	for i := range 86400 {
		if _, err := l.Append(Record{Topic: "a/x", Kind: KindJSON, Value: fmt.Appendf(nil, "%d.5", i), Time: base.Add(time.Duration(i) * time.Second)}); err != nil {
			b.Fatal(err)
		}
	}
	l.Sync(context.Background())
	b.Run("decimate", func(b *testing.B) {
		for range b.N {
			s, err := l.Decimate(context.Background(), Query{Since: base}, 500, time.Time{})
			if err != nil || len(s) != 1 || len(s[0].Buckets) < 490 {
				b.Fatalf("%v %d", err, len(s))
			}
		}
	})
	// The baseline: reading the same records with History, as listing
	// them would, without summarizing.
	b.Run("history", func(b *testing.B) {
		for range b.N {
			n := 0
			if err := l.History(context.Background(), Query{Since: base, Limit: math.MaxInt}, func(Record) error { n++; return nil }); err != nil || n != 86400 {
				b.Fatalf("%v %d", err, n)
			}
		}
	})
}

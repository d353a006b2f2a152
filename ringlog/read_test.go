package ringlog

import (
	"context"
	"testing"
	"time"
)

// TestHistorySparseFilterInMemory: a filter that matches one record in a
// thousand finds every match in memory, across the short lock holds the
// scan takes (memVisit records each).
func TestHistorySparseFilterInMemory(t *testing.T) {
	l, _ := openTest(t, &Options{MemRecords: 8192, SyncInterval: time.Hour})
	for i := range 5000 {
		topic := "noise"
		if i%1000 == 999 {
			topic = "rare"
		}
		if _, err := l.Append(rec(topic, i)); err != nil {
			t.Fatal(err)
		}
	}
	var got []Record
	q := Query{Match: func(s string) bool { return s == "rare" }, Limit: 100}
	if err := l.History(context.Background(), q, func(r Record) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 || got[0].Seq != 1000 || got[4].Seq != 5000 {
		t.Fatalf("sparse history found %d records: %+v", len(got), got)
	}
}

// TestHistorySinceOutOfRange: a since far in the future finds nothing and
// one far in the past finds everything (UnixNano would overflow).
func TestHistorySinceOutOfRange(t *testing.T) {
	l, _ := openTest(t, nil)
	appendN(t, l, 10, "t")
	count := func(since time.Time) int {
		n := 0
		q := Query{Since: since, Limit: 100}
		if err := l.History(context.Background(), q, func(Record) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)); n != 0 {
		t.Errorf("since the year 3000: %d records, want 0", n)
	}
	if n := count(time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)); n != 10 {
		t.Errorf("since the year 1000: %d records, want 10", n)
	}
}

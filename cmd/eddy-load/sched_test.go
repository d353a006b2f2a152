package main

import (
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseSchedAndOver(t *testing.T) {
	exposition := func(counts ...int) []string {
		les := []string{"6.399999999999999e-08", "0.0009175039999999999", "0.010485759999999998", "0.11744051199999998", "+Inf"}
		lines := []string{"# TYPE go_sched_latencies_seconds histogram"}
		cum := 0
		for i, le := range les {
			cum += counts[i]
			lines = append(lines, `go_sched_latencies_seconds_bucket{le="`+le+`"} `+strconv.Itoa(cum))
		}
		return append(lines, "go_sched_latencies_seconds_count "+strconv.Itoa(cum), "go_goroutines 12")
	}
	a := parseSched(exposition(10, 20, 30, 0, 0))
	if len(a.counts) != 5 || len(a.bounds) != 6 || !math.IsInf(a.bounds[5], 1) {
		t.Fatalf("parsed %+v", a)
	}
	// Between the snapshots: 100 wake-ups, 4 of them in the buckets
	// from 10.49 ms up.
	b := parseSched(exposition(10+50, 20+30, 30+16, 3, 1))
	if got := schedOver(a, b, lateWake); math.Abs(got-0.04) > 1e-12 {
		t.Errorf("share over 10 ms: %v, want 0.04", got)
	}
	if got := schedOver(a, a, lateWake); got != -1 {
		t.Errorf("no wake-ups: %v, want -1", got)
	}
	if got := schedOver(a, parseSched([]string{"go_goroutines 3"}), lateWake); got != -1 {
		t.Errorf("no histogram: %v, want -1", got)
	}
	if h := parseSched(strings.Split(`go_sched_latencies_seconds_bucket{le="0.1"} 5
go_sched_latencies_seconds_bucket{le="1"} 4`, "\n")); len(h.counts) != 0 {
		t.Errorf("decreasing cumulative counts accepted: %+v", h)
	}
}

func TestOwnSched(t *testing.T) {
	a := ownSched()
	done := make(chan struct{})
	for range 100 {
		go func() { done <- struct{}{} }()
		<-done
	}
	time.Sleep(10 * time.Millisecond)
	b := ownSched()
	if got := schedOver(a, b, 0); got != 1 {
		t.Errorf("every wake-up waited at least 0: %v, want 1 (snapshots %d and %d buckets)", got, len(a.counts), len(b.counts))
	}
}

func TestFigures(t *testing.T) {
	f0 := parseFigures([]string{
		"# HELP eddy_stream_events_sent_total Reading events written.",
		"eddy_stream_events_sent_total 1000",
		"eddy_stream_flushes_total 100",
		"eddy_http3_packets_lost_total 3",
		`eddy_ringlog_appended_total{x="y"} 7`, // labelled: not ours
	})
	f1 := parseFigures([]string{
		"eddy_stream_events_sent_total 2.5e+03",
		"eddy_stream_flushes_total 250",
		"eddy_http3_packets_lost_total 9",
		"eddy_http3_packets_sent_total 100",
		"eddy_ringlog_appended_total 70",
	})
	if got := f1.ratio(f0, evSent, evFlushes); got != 10 {
		t.Errorf("events per flush: %v, want 10", got)
	}
	if got := f1.delta(f0, h3Lost); got != 6 {
		t.Errorf("lost in the window: %v, want 6", got)
	}
	if got := f1.delta(f0, h3Sent); got != -1 {
		t.Errorf("sent, unknown at the start: %v, want -1", got)
	}
	if got := f1.delta(f0, appended); got != -1 {
		t.Errorf("appended, unknown at the start: %v, want -1", got)
	}
	if got := f0.ratio(f0, evSent, evFlushes); got != -1 {
		t.Errorf("no flushes in between: %v, want -1", got)
	}
}

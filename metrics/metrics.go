// Package metrics owns eddy's Prometheus exposition: it turns the counters
// that the ring log, the stream hub, ingest and the HTTP/3 server keep
// into metrics read at scrape time, so that no hot path calls into a
// metrics library.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/eddy-iot/eddy/ringlog"
	"github.com/eddy-iot/eddy/server"
	"github.com/eddy-iot/eddy/sse"
)

const ns = "eddy"

// Registry is a Prometheus registry with the Go runtime and process
// collectors already in it. The runtime's scheduler metrics are included:
// go_sched_latencies_seconds (how long goroutines wait for a CPU once
// runnable) tells whether a device is short of CPU, which latency alone
// cannot tell apart from a slow disk or network.
func Registry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.MetricsScheduler)),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// CommitObserver returns a ringlog.Options.OnCommit hook that records
// commit latency and failures.
func CommitObserver(reg prometheus.Registerer) func(int, time.Duration, error) {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: ns, Subsystem: "ringlog", Name: "commit_seconds",
		Help:    "Time to commit one group of appended records to disk (fsync included).",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	})
	n := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: ns, Subsystem: "ringlog", Name: "commit_records",
		Help:    "Records per group commit.",
		Buckets: prometheus.ExponentialBuckets(1, 4, 10),
	})
	reg.MustRegister(h, n)
	return func(records int, took time.Duration, err error) {
		if err == nil {
			h.Observe(took.Seconds())
			n.Observe(float64(records))
		}
	}
}

// snapMetric is one figure read from a snapshot of type S.
type snapMetric[S any] struct {
	name, help string
	kind       prometheus.ValueType
	get        func(S) float64
}

var logMetrics = []snapMetric[ringlog.Stats]{
	{"appended_total", "Records appended.", prometheus.CounterValue, func(s ringlog.Stats) float64 { return float64(s.Appended) }},
	{"append_errors_total", "Appends accepted live but not durable (disk failing).", prometheus.CounterValue, func(s ringlog.Stats) float64 { return float64(s.AppendErrors) }},
	{"commits_total", "Group commits.", prometheus.CounterValue, func(s ringlog.Stats) float64 { return float64(s.Commits) }},
	{"commit_errors_total", "Failed commits.", prometheus.CounterValue, func(s ringlog.Stats) float64 { return float64(s.CommitErrors) }},
	{"disk_full_total", "Commits that failed for want of space.", prometheus.CounterValue, func(s ringlog.Stats) float64 { return float64(s.DiskFull) }},
	{"trimmed_total", "Records deleted by the size or age bound.", prometheus.CounterValue, func(s ringlog.Stats) float64 { return float64(s.Trimmed) }},
	{"lost_total", "Records given up while the disk failed.", prometheus.CounterValue, func(s ringlog.Stats) float64 { return float64(s.Lost) }},
	{"reserve_waits_total", "Times an append waited for the writer to reserve ids.", prometheus.CounterValue, func(s ringlog.Stats) float64 { return float64(s.ReserveWaits) }},
	{"no_ids_total", "Appends refused: no durable id reservation while commits kept failing.", prometheus.CounterValue, func(s ringlog.Stats) float64 { return float64(s.NoIDs) }},
	{"corrupt_records_total", "Undecodable records skipped when the log was opened.", prometheus.CounterValue, func(s ringlog.Stats) float64 { return float64(s.CorruptRecords) }},
	{"corrupt_moved_aside_total", "Unreadable ring.db files moved aside at open (a fresh log was started).", prometheus.CounterValue, func(s ringlog.Stats) float64 { return float64(s.CorruptMovedAside) }},
	{"records", "Records stored.", prometheus.GaugeValue, func(s ringlog.Stats) float64 { return float64(s.Records) }},
	{"bytes", "Bytes the stored records account for.", prometheus.GaugeValue, func(s ringlog.Stats) float64 { return float64(s.Bytes) }},
	{"file_bytes", "Size of ring.db.", prometheus.GaugeValue, func(s ringlog.Stats) float64 { return float64(s.FileBytes) }},
	{"pending_records", "Records appended but not yet durable.", prometheus.GaugeValue, func(s ringlog.Stats) float64 { return float64(s.Pending) }},
	{"last_seq", "Highest event id appended.", prometheus.GaugeValue, func(s ringlog.Stats) float64 { return float64(s.LastSeq) }},
	{"oldest_seq", "Oldest event id stored.", prometheus.GaugeValue, func(s ringlog.Stats) float64 { return float64(s.OldestSeq) }},
	{"oldest_age_seconds", "Age of the oldest record stored.", prometheus.GaugeValue, func(s ringlog.Stats) float64 {
		if s.OldestTime.IsZero() {
			return 0
		}
		return time.Since(s.OldestTime).Seconds()
	}},
}

// snapCollector reads one snapshot per scrape and exports every figure
// from it: the ring log's Stats take its lock and stat ring.db, the QUIC
// statistics walk the open connections; once per scrape, not per metric.
type snapCollector[S any] struct {
	read    func() S
	metrics []snapMetric[S]
	descs   []*prometheus.Desc
}

func newSnapCollector[S any](prefix string, read func() S, metrics []snapMetric[S]) *snapCollector[S] {
	c := &snapCollector[S]{read: read, metrics: metrics}
	for _, m := range metrics {
		c.descs = append(c.descs, prometheus.NewDesc(prefix+m.name, m.help, nil, nil))
	}
	return c
}

func (c *snapCollector[S]) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *snapCollector[S]) Collect(ch chan<- prometheus.Metric) {
	s := c.read()
	for i, m := range c.metrics {
		ch <- prometheus.MustNewConstMetric(c.descs[i], m.kind, m.get(s))
	}
}

// RegisterLog exports the ring log's counters.
func RegisterLog(reg prometheus.Registerer, l *ringlog.Log) {
	reg.MustRegister(newSnapCollector(ns+"_ringlog_", l.Stats, logMetrics))
}

// LagObserver returns an sse.Options.ObserveLag hook: a histogram of the
// time from a record's observation to its fan-out to streams.
func LagObserver(reg prometheus.Registerer) func(time.Duration) {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: ns, Subsystem: "stream", Name: "fanout_lag_seconds",
		Help:    "Time from a record's observation (its ts) to its fan-out to live streams.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	})
	reg.MustRegister(h)
	return func(d time.Duration) { h.Observe(d.Seconds()) }
}

// RegisterHub exports the stream hub's counters and client gauges.
func RegisterHub(reg prometheus.Registerer, h *sse.Hub, m *sse.Metrics) {
	byKind := prometheus.NewDesc(ns+"_stream_clients_by_kind", "Open SSE streams by protocol (h1, h2, h3) and mode (downsample, exact, rate).", []string{"proto", "mode"}, nil)
	reg.MustRegister(collectorFunc{desc: byKind, collect: func(ch chan<- prometheus.Metric) {
		for p, proto := range sse.StreamProtos {
			for k, mode := range sse.StreamModes {
				ch <- prometheus.MustNewConstMetric(byKind, prometheus.GaugeValue, float64(m.Streams[p][k].Load()), proto, mode)
			}
		}
	}})
	counter := func(name, help string, f func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Subsystem: "stream", Name: name, Help: help},
			func() float64 { return float64(f()) })
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: "stream", Name: "clients", Help: "Connected SSE streams."},
			func() float64 { return float64(h.Clients()) }),
		counter("published_total", "Records fanned out live.", m.Published.Load),
		counter("events_sent_total", "Reading events written to streams, live or replayed.", m.Delivered.Load),
		counter("flushes_total", "Writes flushed to streams; events_sent_total / flushes_total is how many events a write carries.", m.Flushes.Load),
		counter("replayed_total", "Events read from the ring log (resume, exact catch-up).", m.Replayed.Load),
		counter("dropped_total", "Events dropped for slow streams (downsample, rate).", m.Dropped.Load),
		counter("gaps_total", "Gap events written.", m.Gaps.Load),
		counter("detached_total", "Times an exact-mode stream fell behind and was served from the log.", m.Detached.Load),
		counter("write_deadline_disconnects_total", "Streams ended by a failed or timed-out write.", m.WriteErrors.Load),
		counter("rejected_total", "Stream requests answered 400.", m.Rejected.Load),
	)
}

var quicMetrics = []snapMetric[server.QUICStats]{
	{"connections", "Open HTTP/3 (QUIC) connections.", prometheus.GaugeValue, func(s server.QUICStats) float64 { return float64(s.Conns) }},
	{"packets_sent_total", "QUIC packets sent, retransmissions included.", prometheus.CounterValue, func(s server.QUICStats) float64 { return float64(s.PacketsSent) }},
	{"packets_received_total", "QUIC packets received.", prometheus.CounterValue, func(s server.QUICStats) float64 { return float64(s.PacketsReceived) }},
	{"packets_lost_total", "QUIC packets declared lost: their data is sent again, and the streams they carried wait for it.", prometheus.CounterValue,
		func(s server.QUICStats) float64 { return float64(s.PacketsLost) }},
	{"sent_bytes_total", "QUIC bytes sent (UDP and IP headers not included).", prometheus.CounterValue, func(s server.QUICStats) float64 { return float64(s.BytesSent) }},
	{"received_bytes_total", "QUIC bytes received (UDP and IP headers not included).", prometheus.CounterValue, func(s server.QUICStats) float64 { return float64(s.BytesReceived) }},
}

// RegisterQUIC exports the HTTP/3 connections' QUIC statistics, read by
// stats at scrape time.
func RegisterQUIC(reg prometheus.Registerer, stats func() server.QUICStats) {
	reg.MustRegister(newSnapCollector(ns+"_http3_", stats, quicMetrics))
}

// collectorFunc is a collector of one metric family computed at scrape time.
type collectorFunc struct {
	desc    *prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }

// RegisterDefense exports every connection and request the server
// refused or cut off, by reason (eddy_server_refused_total{reason}: the
// limits of issue 12 and the 401/429 answers to bad or missing
// credentials alike), and the memory figure its admission control
// compares with server.memory_limit.
func RegisterDefense(reg prometheus.Registerer, stats func() server.DefenseStats) {
	refused := prometheus.NewDesc(ns+"_server_refused_total",
		"Connections and requests the server refused or cut off, by reason: its limits, and 401/429 answers to missing, wrong or throttled credentials.", []string{"reason"}, nil)
	mem := prometheus.NewDesc(ns+"_server_admission_memory_bytes",
		"Go heap objects and stacks as admission control last sampled them.", nil, nil)
	limit := prometheus.NewDesc(ns+"_server_memory_limit_bytes",
		"server.memory_limit; new connections and streams are refused above 80% of it.", nil, nil)
	reg.MustRegister(multiCollector{descs: []*prometheus.Desc{refused, mem, limit}, collect: func(ch chan<- prometheus.Metric) {
		st := stats()
		for _, r := range server.Refusals() {
			ch <- prometheus.MustNewConstMetric(refused, prometheus.CounterValue, float64(st.Refused[r]), r.String())
		}
		ch <- prometheus.MustNewConstMetric(mem, prometheus.GaugeValue, float64(st.MemoryBytes))
		ch <- prometheus.MustNewConstMetric(limit, prometheus.GaugeValue, float64(st.MemoryLimit))
	}})
}

// multiCollector is a collector of several metric families computed
// together at scrape time.
type multiCollector struct {
	descs   []*prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c multiCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}
func (c multiCollector) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }

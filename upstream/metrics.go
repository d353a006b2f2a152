package upstream

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DeviceView is one device's upstream state, for /metrics and /api/status.
type DeviceView struct {
	Device     string  `json:"device"`
	Connected  bool    `json:"connected"`
	Protocol   string  `json:"protocol,omitempty"` // pull: "h3", "h2" or "h1" (parked)
	Held       bool    `json:"lease_held"`         // pull: this collector holds the lease
	Published  uint64  `json:"published"`
	Duplicates uint64  `json:"duplicates"`
	Gaps       uint64  `json:"gaps"`
	GapRecords uint64  `json:"gap_records"`
	LagRecords uint64  `json:"lag_records"`
	LagSeconds float64 `json:"lag_seconds"`
	Reconnects uint64  `json:"reconnects"`
	stats      *Stats
	errors     uint64
	malformed  uint64
	parks      uint64
}

// Status is push's state for /api/status.
func (p *Pusher) Status() DeviceView {
	lr, ls := p.Lag()
	s := p.stats
	return DeviceView{Device: p.opt.Device, Connected: p.c.Connected(), Published: s.Published.Load(), Duplicates: s.Duplicates.Load(),
		Gaps: s.Gaps.Load(), GapRecords: s.GapRecords.Load(), LagRecords: lr, LagSeconds: ls, Reconnects: p.c.Reconnects(), stats: s}
}

// Status is every device's state, sorted by nothing in particular.
func (c *Collector) Status() []DeviceView {
	devs := c.Devices()
	out := make([]DeviceView, 0, len(devs))
	for name, st := range devs {
		s := st.Stats
		v := DeviceView{Device: name, Connected: st.Connected.Load(), Held: st.Held.Load(), Published: s.Published.Load(),
			Duplicates: s.Duplicates.Load(), Gaps: s.Gaps.Load(), GapRecords: s.GapRecords.Load(),
			Reconnects: st.Reconnects.Load(), stats: s, errors: st.Errors.Load(), malformed: st.Malformed.Load(),
			parks: st.Parks.Load()}
		v.Protocol, _ = st.Protocol.Load().(string)
		if rcv, ack := st.Received.Load(), s.AckedSeq.Load(); rcv > ack {
			v.LagRecords = rcv - ack
			if t := s.AckedTime.Load(); t > 0 {
				v.LagSeconds = max(0, time.Since(time.Unix(0, t)).Seconds())
			}
		}
		out = append(out, v)
	}
	return out
}

// Metrics exports eddy_upstream_* for push or pull: per device counters
// and gauges, and one publish-to-acknowledgement histogram.
type Metrics struct {
	views    func() []DeviceView
	conn     *Conn
	leases   func() int // pull only
	Latency  prometheus.Histogram
	descs    map[string]*prometheus.Desc
	counters []string
}

// NewMetrics returns the exporter; views is called on every scrape.
// Observe the latency with Metrics.Observe (Stats.OnAck).
func NewMetrics(conn *Conn, views func() []DeviceView, leases func() int) *Metrics {
	m := &Metrics{views: views, conn: conn, leases: leases, descs: map[string]*prometheus.Desc{}}
	m.Latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "eddy_upstream_publish_seconds",
		Help:    "Time from publishing a record to JetStream's acknowledgement (every device).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	})
	d := func(name, help string, labels ...string) {
		m.descs[name] = prometheus.NewDesc(name, help, labels, nil)
	}
	d("eddy_upstream_nats_connected", "1 while the NATS connection is up.")
	d("eddy_upstream_nats_reconnects_total", "NATS reconnections.")
	d("eddy_upstream_connected", "1 while the device's records flow (pull: its /events stream is open).", "device")
	d("eddy_upstream_protocol", "1 for the protocol the device's stream uses (pull).", "device", "protocol")
	d("eddy_upstream_lease_held", "1 while this collector holds the device's lease (pull).", "device")
	d("eddy_upstream_leases_held", "Device leases this collector holds (pull).")
	d("eddy_upstream_lag_records", "Records the device has that JetStream has not acknowledged.", "device")
	d("eddy_upstream_lag_seconds", "Age of the last acknowledged record while records wait (0 when caught up).", "device")
	m.counters = []string{"published", "duplicates", "republished", "units", "gaps", "gap_records", "failures", "reconnects", "errors", "malformed", "parks"}
	help := map[string]string{
		"published":   "Records newly stored in the stream.",
		"duplicates":  "Records JetStream acknowledged as duplicates of stored ones.",
		"republished": "Records sent again after a failed or unanswered publish.",
		"units":       "Publish units stored: single messages or atomic batches (published divided by units is the mean batch).",
		"gaps":        "Gap messages stored (records trimmed before they went upstream).",
		"gap_records": "Records the gap messages cover.",
		"failures":    "Publish units refused, failed or unanswered in time.",
		"reconnects":  "Device stream reconnections (pull).",
		"errors":      "Device sessions that ended in an error (pull).",
		"malformed":   "Events from the device that were not valid readings (pull).",
		"parks":       "Times the device's stream moved to HTTP/1.1 after park_after without a record (pull).",
	}
	for _, n := range m.counters {
		d("eddy_upstream_"+n+"_total", help[n], "device")
	}
	return m
}

// Observe records one publish-to-acknowledgement time.
func (m *Metrics) Observe(_ uint64, _ time.Time, d time.Duration) { m.Latency.Observe(d.Seconds()) }

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range m.descs {
		ch <- d
	}
	m.Latency.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	g := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(m.descs[name], prometheus.GaugeValue, v, labels...)
	}
	c := func(name string, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(m.descs[name], prometheus.CounterValue, float64(v), labels...)
	}
	g("eddy_upstream_nats_connected", b2f(m.conn.Connected()))
	c("eddy_upstream_nats_reconnects_total", m.conn.Reconnects())
	if m.leases != nil {
		g("eddy_upstream_leases_held", float64(m.leases()))
	}
	for _, v := range m.views() {
		g("eddy_upstream_connected", b2f(v.Connected), v.Device)
		g("eddy_upstream_lag_records", float64(v.LagRecords), v.Device)
		g("eddy_upstream_lag_seconds", v.LagSeconds, v.Device)
		if m.leases != nil {
			g("eddy_upstream_lease_held", b2f(v.Held), v.Device)
			if v.Protocol != "" {
				g("eddy_upstream_protocol", 1, v.Device, v.Protocol)
			}
		}
		s := v.stats
		vals := map[string]uint64{
			"published": s.Published.Load(), "duplicates": s.Duplicates.Load(), "republished": s.Republished.Load(),
			"units": s.Units.Load(), "gaps": s.Gaps.Load(), "gap_records": s.GapRecords.Load(),
			"failures": s.Failures.Load(), "reconnects": v.Reconnects, "errors": v.errors, "malformed": v.malformed,
			"parks": v.parks,
		}
		for _, n := range m.counters {
			if m.leases == nil && (n == "errors" || n == "malformed" || n == "reconnects" || n == "parks") {
				continue
			}
			c("eddy_upstream_"+n+"_total", vals[n], v.Device)
		}
	}
	m.Latency.Collect(ch)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

var _ prometheus.Collector = (*Metrics)(nil)

package metrics

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eddy-iot/eddy/ingest"
	"github.com/eddy-iot/eddy/ringlog"
	"github.com/eddy-iot/eddy/server"
	"github.com/eddy-iot/eddy/sse"
)

func TestLogAndHubMetrics(t *testing.T) {
	reg := Registry()
	l, err := ringlog.Open(t.TempDir(), &ringlog.Options{OnCommit: CommitObserver(reg), SyncInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	RegisterLog(reg, l)
	hm := &sse.Metrics{}
	RegisterHub(reg, sse.NewHub(l, sse.Options{Metrics: hm}), hm)
	for range 3 {
		if _, err := l.Append(ringlog.Record{Topic: "m/t", Kind: ringlog.KindJSON, Value: []byte("1")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	hm.Gaps.Add(2)
	hm.Streams[2][1].Add(3) // h3, exact
	want := `
# HELP eddy_ringlog_appended_total Records appended.
# TYPE eddy_ringlog_appended_total counter
eddy_ringlog_appended_total 3
# HELP eddy_ringlog_records Records stored.
# TYPE eddy_ringlog_records gauge
eddy_ringlog_records 3
# HELP eddy_stream_gaps_total Gap events written.
# TYPE eddy_stream_gaps_total counter
eddy_stream_gaps_total 2
# HELP eddy_stream_clients Connected SSE streams.
# TYPE eddy_stream_clients gauge
eddy_stream_clients 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"eddy_ringlog_appended_total", "eddy_ringlog_records", "eddy_stream_gaps_total", "eddy_stream_clients"); err != nil {
		t.Error(err)
	}
	byKind := `
# HELP eddy_stream_clients_by_kind Open SSE streams by protocol (h1, h2, h3) and mode (downsample, exact, rate).
# TYPE eddy_stream_clients_by_kind gauge
eddy_stream_clients_by_kind{mode="downsample",proto="h1"} 0
eddy_stream_clients_by_kind{mode="downsample",proto="h2"} 0
eddy_stream_clients_by_kind{mode="downsample",proto="h3"} 0
eddy_stream_clients_by_kind{mode="exact",proto="h1"} 0
eddy_stream_clients_by_kind{mode="exact",proto="h2"} 0
eddy_stream_clients_by_kind{mode="exact",proto="h3"} 3
eddy_stream_clients_by_kind{mode="rate",proto="h1"} 0
eddy_stream_clients_by_kind{mode="rate",proto="h2"} 0
eddy_stream_clients_by_kind{mode="rate",proto="h3"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(byKind), "eddy_stream_clients_by_kind"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg, "eddy_ringlog_commit_seconds"); err != nil || n != 1 {
		t.Errorf("commit histogram: %d series, %v", n, err)
	}
	// What the log counts for alerting reaches /metrics too.
	for _, name := range []string{"eddy_ringlog_corrupt_moved_aside_total", "eddy_ringlog_corrupt_records_total",
		"eddy_ringlog_reserve_waits_total", "eddy_ringlog_no_ids_total"} {
		if n, err := testutil.GatherAndCount(reg, name); err != nil || n != 1 {
			t.Errorf("%s: %d series, %v", name, n, err)
		}
	}
	if n, err := testutil.GatherAndCount(reg, "go_goroutines"); err != nil || n != 1 {
		t.Errorf("Go runtime metrics missing: %d, %v", n, err)
	}
	if n, err := testutil.GatherAndCount(reg, "go_sched_latencies_seconds"); err != nil || n != 1 {
		t.Errorf("scheduler latencies missing: %d, %v", n, err)
	}
}

func TestIngestMetrics(t *testing.T) {
	reg := Registry()
	RegisterIngest(reg, func() ([]ingest.MQTTStats, []ingest.SensorHealth) {
		return []ingest.MQTTStats{{Broker: "tcp://b:1883", ClientID: "c", Connected: true, Oversized: 4, ConnectionsLost: 1,
				StoredBytes: 100, RetainedSkipped: 2, Unsubscribed: 3, EarlySyncs: 5}},
			[]ingest.SensorHealth{{Name: "env", Kind: "bme280", Up: false, Errors: 7, LastDuration: 1500 * time.Millisecond}}
	})
	want := `
# HELP eddy_mqtt_connected 1 while connected to the broker.
# TYPE eddy_mqtt_connected gauge
eddy_mqtt_connected{broker="tcp://b:1883",client_id="c"} 1
# HELP eddy_mqtt_oversized_total Messages refused: payload over max_payload.
# TYPE eddy_mqtt_oversized_total counter
eddy_mqtt_oversized_total{broker="tcp://b:1883",client_id="c"} 4
# HELP eddy_sensor_up 1 when the sensor's last read succeeded.
# TYPE eddy_sensor_up gauge
eddy_sensor_up{kind="bme280",sensor="env"} 0
# HELP eddy_sensor_errors_total Sensor reads that failed.
# TYPE eddy_sensor_errors_total counter
eddy_sensor_errors_total{kind="bme280",sensor="env"} 7
# HELP eddy_sensor_read_duration_seconds How long the sensor's last read took.
# TYPE eddy_sensor_read_duration_seconds gauge
eddy_sensor_read_duration_seconds{kind="bme280",sensor="env"} 1.5
# HELP eddy_mqtt_stored_bytes_total Bytes of topic and value appended to the ring log.
# TYPE eddy_mqtt_stored_bytes_total counter
eddy_mqtt_stored_bytes_total{broker="tcp://b:1883",client_id="c"} 100
# HELP eddy_mqtt_retained_skipped_total Retained messages the broker sent again, unchanged, on resubscribing (not stored twice).
# TYPE eddy_mqtt_retained_skipped_total counter
eddy_mqtt_retained_skipped_total{broker="tcp://b:1883",client_id="c"} 2
# HELP eddy_mqtt_unsubscribed_total Messages dropped: matching no configured topic (a stale session subscription).
# TYPE eddy_mqtt_unsubscribed_total counter
eddy_mqtt_unsubscribed_total{broker="tcp://b:1883",client_id="c"} 3
# HELP eddy_mqtt_early_syncs_total Ring log commits forced by ack_batch or ack_delay.
# TYPE eddy_mqtt_early_syncs_total counter
eddy_mqtt_early_syncs_total{broker="tcp://b:1883",client_id="c"} 5
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"eddy_mqtt_connected", "eddy_mqtt_oversized_total", "eddy_sensor_up", "eddy_sensor_errors_total",
		"eddy_sensor_read_duration_seconds", "eddy_mqtt_stored_bytes_total", "eddy_mqtt_retained_skipped_total",
		"eddy_mqtt_unsubscribed_total", "eddy_mqtt_early_syncs_total"); err != nil {
		t.Error(err)
	}
}

func TestQUICMetrics(t *testing.T) {
	reg := Registry()
	scrapes := 0
	RegisterQUIC(reg, func() server.QUICStats {
		scrapes++
		return server.QUICStats{Conns: 2, PacketsSent: 900, PacketsReceived: 300, PacketsLost: 7, BytesSent: 1200000, BytesReceived: 40000}
	})
	want := `
# HELP eddy_http3_connections Open HTTP/3 (QUIC) connections.
# TYPE eddy_http3_connections gauge
eddy_http3_connections 2
# HELP eddy_http3_packets_lost_total QUIC packets declared lost: their data is sent again, and the streams they carried wait for it.
# TYPE eddy_http3_packets_lost_total counter
eddy_http3_packets_lost_total 7
# HELP eddy_http3_packets_sent_total QUIC packets sent, retransmissions included.
# TYPE eddy_http3_packets_sent_total counter
eddy_http3_packets_sent_total 900
# HELP eddy_http3_sent_bytes_total QUIC bytes sent (UDP and IP headers not included).
# TYPE eddy_http3_sent_bytes_total counter
eddy_http3_sent_bytes_total 1.2e+06
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"eddy_http3_connections", "eddy_http3_packets_lost_total", "eddy_http3_packets_sent_total", "eddy_http3_sent_bytes_total"); err != nil {
		t.Error(err)
	}
	if scrapes != 1 {
		t.Errorf("stats read %d times in one scrape, want 1", scrapes)
	}
}

// One family counts every refusal, the server's limits and the 401/429
// answers to credentials alike, with a reason label of its own each.
func TestRefusalMetrics(t *testing.T) {
	reg := Registry()
	RegisterDefense(reg, func() server.DefenseStats {
		var st server.DefenseStats
		st.Refused[server.RefusedNoCredentials] = 1091
		st.Refused[server.RefusedAuthThrottled] = 3
		st.Refused[server.RefusedH2RapidReset] = 2
		return st
	})
	var lines []string
	seen := map[string]bool{}
	for _, r := range server.Refusals() {
		n := map[server.Refusal]int{server.RefusedNoCredentials: 1091, server.RefusedAuthThrottled: 3, server.RefusedH2RapidReset: 2}[r]
		if seen[r.String()] || r.String() == "unknown" {
			t.Fatalf("reason %q named twice or unnamed", r)
		}
		seen[r.String()] = true
		lines = append(lines, fmt.Sprintf("eddy_server_refused_total{reason=%q} %d", r.String(), n))
	}
	for _, want := range []string{"no_credentials", "bad_token", "bad_session", "login_failed", "auth_throttled", "host_limit", "conns_per_host", "memory"} {
		if !seen[want] {
			t.Errorf("reason %q missing", want)
		}
	}
	sort.Strings(lines)
	want := `
# HELP eddy_server_refused_total Connections and requests the server refused or cut off, by reason: its limits, and 401/429 answers to missing, wrong or throttled credentials.
# TYPE eddy_server_refused_total counter
` + strings.Join(lines, "\n") + "\n"
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "eddy_server_refused_total"); err != nil {
		t.Error(err)
	}
}

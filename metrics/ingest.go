package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/ingest"
)

// IngestSource returns the current MQTT clients' and sensors' states; it
// is called at every scrape, so reloaded clients are reported as they are.
type IngestSource func() ([]ingest.MQTTStats, []ingest.SensorHealth)

type ingestCollector struct {
	src  IngestSource
	mqtt map[string]*prometheus.Desc
	sens map[string]*prometheus.Desc
}

var mqttCounters = map[string]struct {
	help string
	get  func(ingest.MQTTStats) uint64
}{
	"connects_total":         {"Successful connections to the broker.", func(s ingest.MQTTStats) uint64 { return s.Connects }},
	"connect_errors_total":   {"Failed connection attempts.", func(s ingest.MQTTStats) uint64 { return s.ConnectErrors }},
	"connections_lost_total": {"Connections lost (each followed by a reconnect).", func(s ingest.MQTTStats) uint64 { return s.ConnectionsLost }},
	"subscribe_errors_total": {"Subscriptions the broker refused.", func(s ingest.MQTTStats) uint64 { return s.SubscribeErrors }},
	"received_total":         {"PUBLISH packets received.", func(s ingest.MQTTStats) uint64 { return s.Received }},
	"duplicates_total":       {"Redeliveries received.", func(s ingest.MQTTStats) uint64 { return s.Duplicates }},
	"records_total":          {"Records appended to the ring log.", func(s ingest.MQTTStats) uint64 { return s.Stored }},
	"acked_total":            {"QoS 1/2 messages acknowledged after they were durable.", func(s ingest.MQTTStats) uint64 { return s.Acked }},
	"not_acked_total":        {"QoS 1/2 messages left for the broker to redeliver.", func(s ingest.MQTTStats) uint64 { return s.NotAcked }},
	"oversized_total":        {"Messages refused: payload over max_payload.", func(s ingest.MQTTStats) uint64 { return s.Oversized }},
	"bad_topic_total":        {"Messages refused: topic not valid UTF-8.", func(s ingest.MQTTStats) uint64 { return s.BadTopic }},
	"topics_refused_total":   {"Records refused: a new topic beyond max_topics.", func(s ingest.MQTTStats) uint64 { return s.TopicsRefused }},
	"append_errors_total":    {"Records the ring log refused.", func(s ingest.MQTTStats) uint64 { return s.AppendErrors }},
	"stored_bytes_total":     {"Bytes of topic and value appended to the ring log.", func(s ingest.MQTTStats) uint64 { return s.StoredBytes }},
	"retained_skipped_total": {"Retained messages the broker sent again, unchanged, on resubscribing (not stored twice).", func(s ingest.MQTTStats) uint64 { return s.RetainedSkipped }},
	"unsubscribed_total":     {"Messages dropped: matching no configured topic (a stale session subscription).", func(s ingest.MQTTStats) uint64 { return s.Unsubscribed }},
	"early_syncs_total":      {"Ring log commits forced by ack_batch or ack_delay.", func(s ingest.MQTTStats) uint64 { return s.EarlySyncs }},
	"deep_json_total":        {"JSON payloads nested deeper than 64, stored as text.", func(s ingest.MQTTStats) uint64 { return s.DeepJSON }},
	"redelivered_total":      {"QoS 1 redeliveries of a message already stored, acknowledged and not stored again.", func(s ingest.MQTTStats) uint64 { return s.Redelivered }},
	"topics_evicted_total":   {"Topics silent for 10 min forgotten to make room for a new one (max_topics).", func(s ingest.MQTTStats) uint64 { return s.TopicsEvicted }},
}

var sensorCounters = map[string]struct {
	help string
	get  func(ingest.SensorHealth) uint64
}{
	"reads_total":         {"Sensor reads attempted.", func(h ingest.SensorHealth) uint64 { return h.Reads }},
	"errors_total":        {"Sensor reads that failed.", func(h ingest.SensorHealth) uint64 { return h.Errors }},
	"records_total":       {"Readings appended to the ring log.", func(h ingest.SensorHealth) uint64 { return h.Records }},
	"bytes_total":         {"Bytes of topic and value appended to the ring log.", func(h ingest.SensorHealth) uint64 { return h.Bytes }},
	"skipped_total":       {"Readings not stored (NaN, Inf, bad name).", func(h ingest.SensorHealth) uint64 { return h.Skipped }},
	"append_errors_total": {"Readings the ring log refused.", func(h ingest.SensorHealth) uint64 { return h.AppendErrors }},
}

// RegisterIngest exports MQTT connection state and counters per broker and
// health and counters per sensor.
func RegisterIngest(reg prometheus.Registerer, src IngestSource) {
	c := &ingestCollector{src: src, mqtt: map[string]*prometheus.Desc{}, sens: map[string]*prometheus.Desc{}}
	for name, m := range mqttCounters {
		c.mqtt[name] = prometheus.NewDesc(ns+"_mqtt_"+name, m.help, []string{"broker", "client_id"}, nil)
	}
	c.mqtt["connected"] = prometheus.NewDesc(ns+"_mqtt_connected", "1 while connected to the broker.", []string{"broker", "client_id"}, nil)
	c.mqtt["topics"] = prometheus.NewDesc(ns+"_mqtt_topics", "Distinct topics stored from this client.", []string{"broker", "client_id"}, nil)
	c.mqtt["ack_waiting"] = prometheus.NewDesc(ns+"_mqtt_ack_waiting", "Messages waiting for durability before their ack.", []string{"broker", "client_id"}, nil)
	for name, m := range sensorCounters {
		c.sens[name] = prometheus.NewDesc(ns+"_sensor_"+name, m.help, []string{"sensor", "kind"}, nil)
	}
	c.sens["up"] = prometheus.NewDesc(ns+"_sensor_up", "1 when the sensor's last read succeeded.", []string{"sensor", "kind"}, nil)
	c.sens["duration"] = prometheus.NewDesc(ns+"_sensor_read_duration_seconds", "How long the sensor's last read took.", []string{"sensor", "kind"}, nil)
	reg.MustRegister(c)
}

func (c *ingestCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.mqtt {
		ch <- d
	}
	for _, d := range c.sens {
		ch <- d
	}
}

func (c *ingestCollector) Collect(ch chan<- prometheus.Metric) {
	mqtts, sensors := c.src()
	for _, s := range mqtts {
		l := []string{s.Broker, s.ClientID}
		for name, m := range mqttCounters {
			ch <- prometheus.MustNewConstMetric(c.mqtt[name], prometheus.CounterValue, float64(m.get(s)), l...)
		}
		ch <- prometheus.MustNewConstMetric(c.mqtt["connected"], prometheus.GaugeValue, b2f(s.Connected), l...)
		ch <- prometheus.MustNewConstMetric(c.mqtt["topics"], prometheus.GaugeValue, float64(s.Topics), l...)
		ch <- prometheus.MustNewConstMetric(c.mqtt["ack_waiting"], prometheus.GaugeValue, float64(s.AckWaiting), l...)
	}
	for _, h := range sensors {
		l := []string{h.Name, h.Kind}
		for name, m := range sensorCounters {
			ch <- prometheus.MustNewConstMetric(c.sens[name], prometheus.CounterValue, float64(m.get(h)), l...)
		}
		ch <- prometheus.MustNewConstMetric(c.sens["up"], prometheus.GaugeValue, b2f(h.Up), l...)
		ch <- prometheus.MustNewConstMetric(c.sens["duration"], prometheus.GaugeValue, h.LastDuration.Seconds(), l...)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

package config

import (
	"fmt"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/eddy-iot/eddy/topic"
)

// MQTT defaults and bounds.
const (
	DefaultMQTTQoS          = 1
	DefaultMQTTKeepalive    = 30 * time.Second
	DefaultMQTTMaxPayload   = Size(64 << 10)
	DefaultMQTTMaxTopics    = 10000
	DefaultMQTTReconnectMax = 30 * time.Second
	DefaultMQTTAckBatch     = 10
	DefaultMQTTAckDelay     = 10 * time.Millisecond

	// maxMQTTPayload is the ring log's bound on one record's value
	// (ringlog.MaxValueLen); config does not import ringlog.
	maxMQTTPayload = Size(1 << 20)
	// maxUnitLen is the ring log's bound on a unit (ringlog.MaxUnitLen).
	maxUnitLen = 64
)

// MQTT is one [[mqtt]] block: one client connection to one broker, with a
// persistent session (clean session off) under a stable client id.
//
//	[[mqtt]]
//	broker = "ssl://broker.lan:8883"   # tcp://, ssl://, ws://, wss:// (also mqtt://, mqtts://, tls://)
//	topics = ["sensors/#", "plant/+/status"]
//	qos = 1                            # 0, 1 or 2; default 1
//	client_id = "eddy-lab-1"           # default "eddy-<hostname>" ("eddy-<hostname>-<n>" for the n-th block, n >= 2)
//	username = "eddy"
//	password = "secret"                # needs username
//	ca_file = "/etc/eddy/broker-ca.pem"
//	cert_file = "/etc/eddy/client.pem" # client certificate: cert_file and key_file together
//	key_file = "/etc/eddy/client.key"
//	insecure_skip_verify = false
//	keepalive = "30s"                  # 1s to 18h
//	max_payload = "64KiB"              # larger messages are counted and refused; at most 1MiB
//	max_topics = 10000                 # distinct topics this client stores; new ones beyond are refused
//	reconnect_max = "30s"              # cap of the exponential reconnect backoff
//	ack_batch = 10                     # see below; 0: off
//	ack_delay = "10ms"                 # see below; "0s": off
//
//	# Optional mappings, tried in order; the first whose filter matches a
//	# message's topic applies.
//	[[mqtt.map]]
//	topic = "sensors/+/env"            # a topic filter
//	fields = { t = "°C", h = "%", "wind.speed" = "m/s" }
//
//	[[mqtt.map]]
//	topic = "sensors/+/pressure"
//	unit = "bar"
//
// eddy never unsubscribes (that would end the session's queue): after a
// filter is removed from topics, the broker may keep delivering it, and
// those messages are dropped and counted. Changing client_id starts a new
// session; messages queued for the old one stay with the broker.
//
// QoS 1/2 messages are acknowledged only once durable in the ring log, which
// commits every storage.sync_interval. A broker sends a client at most its
// in-flight window of unacknowledged messages (mosquitto's
// max_inflight_messages, 20 by default), so QoS 1/2 throughput would be
// capped near window/sync_interval (200 msgs/s). When ack_batch messages
// wait for their acknowledgement, the ring log commits at once instead:
// keep ack_batch at about half the broker's window, so that the next
// batch can arrive while one commits (measured with mosquitto's window
// of 20: 10 rather than 16 took p99 at 1,000 msgs/s from 17-19 to 15 ms
// and the maximum rate up 1-4%). Likewise once a message has
// waited ack_delay for its acknowledgement, so that the window never stays
// full for long: this bounds what durable acknowledgement adds to the
// latency of the messages behind it (measured with mosquitto's default
// window at 1,000 msgs/s: p99 56 ms with ack_batch alone; see
// BENCHMARKS.md). Commits then happen more often than sync_interval only
// while messages are waiting, at most one per ack_delay; 0 turns each off
// (acknowledgements wait for the periodic commit).
//
// A mapping with fields splits a JSON object payload into one series per
// field path: {"t":21.5,"h":40} on sensors/a/env is stored as sensors/a/env/t
// (unit °C) and sensors/a/env/h (unit %). A path reaches into nested objects
// with dots ("wind.speed" is stored as <topic>/wind/speed; quote it, as an
// unquoted dotted key is a TOML table) and into arrays with an index
// ("values.0"). Fields missing from a payload are skipped; a payload with
// none of the fields, or that is not a JSON object, is stored whole under
// its own topic, so that nothing is lost. A mapping without fields sets the
// unit of the whole payload.
type MQTT struct {
	Broker             string    `toml:"broker"`
	Topics             []string  `toml:"topics"`
	QoS                *int      `toml:"qos"` // nil until defaults apply: 1
	ClientID           string    `toml:"client_id"`
	Username           string    `toml:"username"`
	Password           string    `toml:"password"`
	CAFile             string    `toml:"ca_file"`
	CertFile           string    `toml:"cert_file"`
	KeyFile            string    `toml:"key_file"`
	InsecureSkipVerify bool      `toml:"insecure_skip_verify"`
	Keepalive          Duration  `toml:"keepalive"`
	MaxPayload         Size      `toml:"max_payload"`
	MaxTopics          int       `toml:"max_topics"`
	ReconnectMax       Duration  `toml:"reconnect_max"`
	AckBatch           *int      `toml:"ack_batch"` // nil until defaults apply: DefaultMQTTAckBatch
	AckDelay           *Duration `toml:"ack_delay"` // nil until defaults apply: DefaultMQTTAckDelay
	Map                []MQTTMap `toml:"map"`
}

// MQTTMap is one [[mqtt.map]] entry: how payloads on topics matching Topic
// become series.
type MQTTMap struct {
	Topic  string            `toml:"topic"`  // topic filter, wildcards allowed
	Fields map[string]string `toml:"fields"` // JSON field path -> unit ("" for none)
	Unit   string            `toml:"unit"`   // unit of the whole payload, when Fields is empty
}

// QoSLevel is the subscription QoS, DefaultMQTTQoS when unset.
func (m *MQTT) QoSLevel() byte {
	if m.QoS == nil {
		return DefaultMQTTQoS
	}
	return byte(*m.QoS)
}

// SetDefaults fills every unset field. index is the block's position in
// the file (0-based); it keeps default client ids of several blocks apart.
func (m *MQTT) SetDefaults(index int) {
	if m.QoS == nil {
		q := DefaultMQTTQoS
		m.QoS = &q
	}
	if m.ClientID == "" {
		m.ClientID = DefaultClientID(index)
	}
	if m.Keepalive.Duration == 0 {
		m.Keepalive.Duration = DefaultMQTTKeepalive
	}
	if m.MaxPayload == 0 {
		m.MaxPayload = DefaultMQTTMaxPayload
	}
	if m.MaxTopics == 0 {
		m.MaxTopics = DefaultMQTTMaxTopics
	}
	if m.ReconnectMax.Duration == 0 {
		m.ReconnectMax.Duration = DefaultMQTTReconnectMax
	}
	if m.AckBatch == nil {
		n := DefaultMQTTAckBatch
		m.AckBatch = &n
	}
	if m.AckDelay == nil {
		m.AckDelay = &Duration{DefaultMQTTAckDelay}
	}
}

// DefaultClientID is "eddy-<hostname>" for the first [[mqtt]] block and
// "eddy-<hostname>-<index+1>" for later ones: stable across restarts, as a
// persistent session needs, and distinct per device.
func DefaultClientID(index int) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	id := "eddy-" + host
	if index > 0 {
		id += "-" + strconv.Itoa(index+1)
	}
	return id
}

func (m *MQTT) validate(key string) error {
	index := 0
	fmt.Sscanf(key, "mqtt[%d]", &index) //nolint:errcheck // key is always mqtt[i]
	m.SetDefaults(index)
	var e errList
	for _, f := range []func(string) error{m.validateBroker, m.validateTopics, m.validateSession, m.validateTLS, m.validateLimits} {
		e.addErr(f(key))
	}
	for i := range m.Map {
		e.addErr(m.Map[i].validate(fmt.Sprintf("%s.map[%d]", key, i)))
	}
	return e.err()
}

func (m *MQTT) validateBroker(key string) error {
	u, err := url.Parse(m.Broker)
	if err != nil || u.Host == "" {
		return &Error{Key: key + ".broker", Msg: fmt.Sprintf("want a broker URL like tcp://host:1883, got %q", m.Broker)}
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts":
		if u.Port() == "" {
			return &Error{Key: key + ".broker", Msg: fmt.Sprintf("%q has no port (tcp://host:1883, ssl://host:8883)", m.Broker)}
		}
	case "ws", "wss":
	default:
		return &Error{Key: key + ".broker", Msg: fmt.Sprintf("scheme %q is not one of tcp, ssl, ws, wss", u.Scheme)}
	}
	return nil
}

func (m *MQTT) validateTopics(key string) error {
	if len(m.Topics) == 0 {
		return &Error{Key: key + ".topics", Msg: "at least one topic filter is needed"}
	}
	var e errList
	for i, t := range m.Topics {
		if _, err := topic.ParseFilter(t); err != nil {
			e.add(fmt.Sprintf("%s.topics[%d]", key, i), err.Error())
		}
	}
	return e.err()
}

func (m *MQTT) validateSession(key string) error {
	var e errList
	if q := *m.QoS; q < 0 || q > 2 {
		e.add(key+".qos", fmt.Sprintf("%d is not 0, 1 or 2", q))
	}
	if len(m.ClientID) > 65535 || !utf8.ValidString(m.ClientID) {
		e.add(key+".client_id", "must be UTF-8 and at most 65535 bytes")
	}
	if m.Password != "" && m.Username == "" {
		e.add(key+".password", "a password needs a username (MQTT 3.1.1)")
	}
	return e.err()
}

func (m *MQTT) validateTLS(key string) error {
	var e errList
	if (m.CertFile == "") != (m.KeyFile == "") {
		k := key + ".key_file"
		if m.CertFile == "" {
			k = key + ".cert_file"
		}
		e.add(k, "cert_file and key_file are set together or both left empty")
	}
	usesTLS := m.CAFile != "" || m.CertFile != "" || m.InsecureSkipVerify
	scheme, _, _ := strings.Cut(m.Broker, "://")
	switch scheme {
	case "ssl", "tls", "mqtts", "wss":
	default:
		if usesTLS {
			e.add(key+".broker", fmt.Sprintf("TLS options are set but %q is not a TLS URL (ssl:// or wss://)", m.Broker))
		}
	}
	for _, f := range []struct{ name, path string }{{"ca_file", m.CAFile}, {"cert_file", m.CertFile}, {"key_file", m.KeyFile}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			e.add(key+"."+f.name, err.Error())
		}
	}
	return e.err()
}

func (m *MQTT) validateLimits(key string) error {
	var e errList
	if k := m.Keepalive.Duration; k < time.Second || k > 65535*time.Second {
		e.add(key+".keepalive", fmt.Sprintf("%s is out of range: from 1s to 18h12m15s", k))
	}
	if m.MaxPayload < 1 || m.MaxPayload > maxMQTTPayload {
		e.add(key+".max_payload", fmt.Sprintf("%s is out of range: from 1B to %s", m.MaxPayload, maxMQTTPayload))
	}
	if m.MaxTopics < 1 || m.MaxTopics > 1_000_000 {
		e.add(key+".max_topics", fmt.Sprintf("%d is out of range: from 1 to 1000000", m.MaxTopics))
	}
	if n := *m.AckBatch; n < 0 || n > 65535 {
		e.add(key+".ack_batch", fmt.Sprintf("%d is out of range: from 0 (off) to 65535", n))
	}
	if d := m.AckDelay.Duration; d < 0 || d > time.Minute {
		e.add(key+".ack_delay", fmt.Sprintf("%s is out of range: from 0s (off) to 1m", d))
	}
	if r := m.ReconnectMax.Duration; r < 100*time.Millisecond || r > time.Hour {
		e.add(key+".reconnect_max", fmt.Sprintf("%s is out of range: from 100ms to 1h", r))
	}
	return e.err()
}

func (mm *MQTTMap) validate(key string) error {
	var e errList
	if mm.Topic == "" {
		e.add(key+".topic", "is required: the topic filter this mapping applies to")
	} else if _, err := topic.ParseFilter(mm.Topic); err != nil {
		e.add(key+".topic", err.Error())
	}
	if err := validUnit(mm.Unit); err != nil {
		e.add(key+".unit", err.Error())
	}
	if mm.Unit != "" && len(mm.Fields) > 0 {
		e.add(key+".unit", "set a unit per field in fields, or unit for the whole payload, not both")
	}
	paths := make([]string, 0, len(mm.Fields))
	for p := range mm.Fields {
		paths = append(paths, p)
	}
	sort.Strings(paths) // report the same errors every time
	for _, path := range paths {
		unit := mm.Fields[path]
		fk := key + ".fields." + path
		if err := ValidFieldPath(path); err != nil {
			e.add(fk, err.Error())
		} else if err := validUnit(unit); err != nil {
			e.add(fk, err.Error())
		}
	}
	return e.err()
}

// ValidFieldPath checks a JSON field path of a mapping: dot-separated,
// non-empty segments that can be topic levels (no '/', '+', '#' or control
// characters).
func ValidFieldPath(path string) error {
	if path == "" {
		return fmt.Errorf("empty field path")
	}
	for _, seg := range strings.Split(path, ".") {
		if seg == "" {
			return fmt.Errorf("field path %q has an empty segment", path)
		}
		if strings.ContainsAny(seg, "/+#") {
			return fmt.Errorf("field path %q: a segment must not contain '/', '+' or '#'", path)
		}
	}
	if err := topic.ValidName(path); err != nil {
		return fmt.Errorf("field path: %w", err)
	}
	return nil
}

func validUnit(u string) error {
	if len(u) > maxUnitLen || !utf8.ValidString(u) {
		return fmt.Errorf("a unit is UTF-8 of at most %d bytes", maxUnitLen)
	}
	for _, r := range u {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("unit %q contains a control character", u)
		}
	}
	return nil
}

package ingest

import (
	"container/list"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eddy-iot/eddy/backoff"
	"github.com/eddy-iot/eddy/config"
	"github.com/eddy-iot/eddy/ratelog"
	"github.com/eddy-iot/eddy/ringlog"
	"github.com/eddy-iot/eddy/topic"
)

// Tuning of the MQTT client. Not configurable: they bound shutdown time and
// memory, not behaviour a user tunes.
const (
	// ackQueueBytes bounds the payload memory the ack queue can hold (a
	// queued message keeps its payload, and the ring log its not yet
	// committed copy): the queue has room for this many bytes of
	// max_payload messages, at least 20 (mosquitto's default window, at
	// max_payload 1 MiB: 20 MiB) and at most 8192 messages (256 at the
	// default max_payload). Brokers bound their unacknowledged window too
	// (mosquitto: 20 by default, mochi: 8192), and ack_batch commits early
	// long before the queue fills. A message that finds the queue full is
	// neither stored nor acknowledged (see takeSlot).
	ackQueueBytes = 16 << 20
	// enqueueWait is how long the message handler waits for room in a full
	// ack queue (the disk is slow) before it leaves the message
	// unacknowledged for the broker to redeliver. It must stay well below
	// the keepalive: while the handler waits, paho reads nothing.
	enqueueWait = 200 * time.Millisecond
	// connectTimeout bounds one connection attempt (dial, TLS, CONNACK).
	connectTimeout = 10 * time.Second
	// subscribeTimeout bounds the wait for a SUBACK.
	subscribeTimeout = 10 * time.Second
	// drainTimeout bounds how long Run waits at shutdown for queued
	// messages to become durable so that they can be acknowledged.
	drainTimeout = 2 * time.Second
	// logEvery is the rate limit of warnings about bad input: one line
	// per reason per period, with the count of those not logged.
	logEvery = 10 * time.Second
)

// MQTTStats is a snapshot of one client's counters, for /metrics.
type MQTTStats struct {
	Broker          string
	ClientID        string
	Connected       bool   // connected and every subscription granted
	Connects        uint64 // successful connections, the first included
	ConnectErrors   uint64 // failed connection attempts
	ConnectionsLost uint64
	SubscribeErrors uint64 // filters the broker refused or a SUBACK that never came
	Received        uint64 // PUBLISH packets handled
	Duplicates      uint64 // of those, redeliveries (DUP flag set)
	Stored          uint64 // records appended to the ring log
	StoredBytes     uint64 // bytes of topic and value those records hold
	Acked           uint64 // QoS 1/2 messages acknowledged
	NotAcked        uint64 // QoS 1/2 messages left to the broker to redeliver
	Oversized       uint64 // refused: payload larger than max_payload
	BadTopic        uint64 // refused: topic not a valid UTF-8 name
	TopicsRefused   uint64 // records refused: a new topic beyond max_topics
	AppendErrors    uint64 // records the ring log refused
	RetainedSkipped uint64 // retained messages the broker sent again, unchanged, on resubscribing
	Unsubscribed    uint64 // dropped: matching no configured topic (a stale session subscription)
	DeepJSON        uint64 // JSON payloads nested deeper than MaxJSONDepth, stored as text
	Redelivered     uint64 // QoS 1 redeliveries of a message already stored, acknowledged and not stored again
	TopicsEvicted   uint64 // topics silent for TopicIdle forgotten to make room for a new one
	Topics          int    // distinct topics stored by this client
	AckWaiting      int    // messages waiting for durability before their ack
	EarlySyncs      uint64 // ring log commits forced by ack_batch or ack_delay
}

// counters are the live values behind MQTTStats.
type counters struct {
	connected                                atomic.Bool
	connects, connectErrors, lost, subErrors atomic.Uint64
	received, dups, stored, acked, notAcked  atomic.Uint64
	storedBytes                              atomic.Uint64
	oversized, badTopic, topicsRefused       atomic.Uint64
	appendErrors, retainedSkipped            atomic.Uint64
	unsubscribed                             atomic.Uint64
	deepJSON, redelivered, topicsEvicted     atomic.Uint64
	earlySyncs                               atomic.Uint64
	waiting                                  atomic.Int64 // queued or being settled
}

// pending is a QoS 1/2 message on its way from the handler to the acker.
type pending struct {
	msg paho.Message
	seq uint64    // last record appended for it; 0: nothing to wait for
	ack bool      // false: leave it to the broker to redeliver
	at  time.Time // when it was received, for ack_delay
}

// MQTT is a client of one broker that appends every message it receives
// to a ring log. Create it with NewMQTT and start it with Run.
type MQTT struct {
	cfg     config.MQTT
	log     *ringlog.Log
	logger  *slog.Logger
	limit   *ratelog.Logger
	maps    []mapping
	subs    map[string]byte
	filters topic.Set // what subs match; other messages come from stale subscriptions
	tls     *tls.Config

	queue     chan pending  // handler -> acker, FIFO
	slots     chan struct{} // a token per message queued or being settled; cap(queue)
	stop      chan struct{} // closed when Run begins to shut down
	lost      chan error    // connection losses, cap 1
	started   atomic.Bool   // Run was called
	draining  atomic.Bool   // set at shutdown: the handler stores nothing more
	saturated atomic.Bool   // the ack queue stayed full; the handler no longer waits
	left      atomic.Int64  // messages left to the broker for a full queue since the last redelivery

	noWait context.Context // already cancelled: WaitDurable as a probe

	kickMu sync.Mutex         // protects kick
	kick   context.CancelFunc // ends the acker's current wait for the periodic commit

	mu       sync.Mutex               // protects topics, topicLRU and lastHash
	topics   map[string]*list.Element // distinct topics stored, at most cfg.MaxTopics; values are *topicSeen
	topicLRU list.List                // of *topicSeen, least recently seen first
	lastHash map[string]uint64        // MQTT topic -> hash of its last stored payload
	seed     maphash.Seed

	// unacked holds the QoS 1 messages stored but not yet acknowledged,
	// by broker packet id: a redelivery (DUP set, same id and content)
	// is acknowledged without being stored twice. Written by the handler,
	// cleared by the acker.
	unackedMu sync.Mutex
	unacked   map[uint16]storedMsg

	stats counters
}

// NewMQTT prepares a client for one [[mqtt]] block; unset fields take
// their defaults. It checks the topics, mappings and TLS files but does not
// connect: Run does. logger may be nil.
func NewMQTT(cfg config.MQTT, log *ringlog.Log, logger *slog.Logger) (*MQTT, error) {
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cfg.SetDefaults(0)
	m := &MQTT{
		cfg:      cfg,
		log:      log,
		logger:   logger.With("broker", cfg.Broker, "client_id", cfg.ClientID),
		subs:     map[string]byte{},
		queue:    make(chan pending, queueLen(cfg)),
		slots:    make(chan struct{}, queueLen(cfg)),
		stop:     make(chan struct{}),
		lost:     make(chan error, 1),
		topics:   map[string]*list.Element{},
		lastHash: map[string]uint64{},
		unacked:  map[uint16]storedMsg{},
		seed:     maphash.MakeSeed(),
	}
	m.limit = ratelog.New(m.logger, logEvery)
	var cancel context.CancelFunc
	m.noWait, cancel = context.WithCancel(context.Background())
	cancel()
	if log == nil {
		return nil, fmt.Errorf("ingest: mqtt %s: no ring log", cfg.Broker)
	}
	if q := cfg.QoSLevel(); q > 2 {
		return nil, fmt.Errorf("ingest: mqtt %s: qos %d is not 0, 1 or 2", cfg.Broker, q)
	}
	if len(cfg.Topics) == 0 {
		return nil, fmt.Errorf("ingest: mqtt %s: no topics to subscribe to", cfg.Broker)
	}
	for _, t := range cfg.Topics {
		f, err := topic.ParseFilter(matchPart(t))
		if err != nil {
			return nil, fmt.Errorf("ingest: mqtt %s: %w", cfg.Broker, err)
		}
		m.subs[t] = cfg.QoSLevel()
		m.filters = append(m.filters, f)
	}
	var err error
	if m.maps, err = parseMappings(cfg.Map); err != nil {
		return nil, err
	}
	if m.tls, err = tlsConfig(cfg); err != nil {
		return nil, fmt.Errorf("ingest: mqtt %s: %w", cfg.Broker, err)
	}
	return m, nil
}

// queueLen is the ack queue's capacity: ackQueueBytes of max_payload
// messages, at least 20 and at most 8192.
func queueLen(cfg config.MQTT) int {
	return min(max(ackQueueBytes/int(max(cfg.MaxPayload, 1)), 20), 8192)
}

// matchPart is the part of a subscription filter that topics match:
// "$share/<group>/<filter>" delivers topics matching <filter>.
func matchPart(filter string) string {
	if rest, ok := strings.CutPrefix(filter, "$share/"); ok {
		if _, f, ok := strings.Cut(rest, "/"); ok {
			return f
		}
	}
	return filter
}

// tlsConfig builds the client TLS settings; nil when none are set.
func tlsConfig(cfg config.MQTT) (*tls.Config, error) {
	if cfg.CAFile == "" && cfg.CertFile == "" && !cfg.InsecureSkipVerify {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.InsecureSkipVerify} //nolint:gosec // the user asked for it
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s holds no PEM certificate", cfg.CAFile)
		}
	}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// options builds paho's options. Reconnecting is ours, not paho's: paho's
// reconnect sleeps cannot be cancelled (a stopped client would linger for
// up to the backoff cap) and have no jitter, and its first-connect retry
// does not back off at all.
func (m *MQTT) options() *paho.ClientOptions {
	o := paho.NewClientOptions().
		AddBroker(m.cfg.Broker).
		SetClientID(m.cfg.ClientID).
		SetUsername(m.cfg.Username).
		SetPassword(m.cfg.Password).
		SetCleanSession(false). // the broker keeps our QoS 1/2 messages while we are away
		SetKeepAlive(m.cfg.Keepalive.Duration).
		SetPingTimeout(min(m.cfg.Keepalive.Duration, 10*time.Second)).
		SetConnectTimeout(connectTimeout).
		SetWriteTimeout(connectTimeout).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetResumeSubs(false). // subscriptions are renewed on every connect instead
		// In order: one handler call at a time, in arrival order, so
		// records are appended and acks queued in the order the broker
		// sent them (MQTT wants PUBACKs in that order). Unordered, paho
		// runs each handler in its own goroutine. The handler never
		// blocks for long (enqueueWait).
		SetOrderMatters(true).
		SetAutoAckDisabled(true). // the acker acks once records are durable
		// paho keeps each received QoS 1 message in its store until it is
		// acknowledged, and drops them all on reconnect anyway (the broker
		// delivers them again): keeping them only pins memory.
		SetStore(inboundDropStore{paho.NewMemoryStore()}).
		// Messages of the persistent session arrive before our
		// subscriptions are renewed: route everything here.
		SetDefaultPublishHandler(m.handle).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case m.lost <- err:
			default:
			}
		})
	if m.tls != nil {
		o.SetTLSConfig(m.tls)
	}
	if u, err := url.Parse(m.cfg.Broker); err == nil && u.Scheme != "ws" && u.Scheme != "wss" {
		o.SetCustomOpenConnectionFn(openBuffered)
	}
	return o
}

// Run connects, keeps the client connected until ctx ends, then
// acknowledges what became durable and disconnects. It returns nil after a
// clean shutdown. Run must return before the ring log is closed; it may be
// called once.
func (m *MQTT) Run(ctx context.Context) error {
	if !m.started.CompareAndSwap(false, true) {
		return fmt.Errorf("ingest: mqtt %s: Run called twice", m.cfg.Broker)
	}
	defer m.limit.Stop()
	client := paho.NewClient(m.options())
	ackCtx, cancelAck := context.WithCancel(context.Background())
	defer cancelAck()
	ackDone := make(chan struct{})
	go func() {
		defer close(ackDone)
		m.acker(ackCtx)
	}()

	limit := m.cfg.ReconnectMax.Duration
	bo := backoff.Backoff{First: min(max(limit/32, 50*time.Millisecond), time.Second, limit), Max: limit}
	for ctx.Err() == nil {
		up := m.session(ctx, client)
		if ctx.Err() != nil {
			break
		}
		if up {
			bo.Reset()
		}
		if !bo.Sleep(ctx) {
			break
		}
	}
	m.shutdown(client, cancelAck, ackDone)
	return nil
}

// session runs one connection: connect, subscribe, wait for its loss or
// for ctx to end. It reports whether the connection came up.
func (m *MQTT) session(ctx context.Context, client paho.Client) bool {
	select { // forget a loss reported for an earlier connection
	case <-m.lost:
	default:
	}
	if err := m.connect(ctx, client); err != nil {
		if ctx.Err() == nil {
			m.stats.connectErrors.Add(1)
			m.limit.Warn("connect", "mqtt connect failed; retrying", "err", err)
		}
		return false
	}
	m.stats.connects.Add(1)
	if err := m.subscribe(ctx, client); err != nil {
		m.limit.Warn("subscribe", "mqtt subscribe failed; reconnecting", "err", err)
		client.Disconnect(0)
		return true
	}
	// Connected means subscribed too: from here on the broker delivers.
	m.stats.connected.Store(true)
	defer m.stats.connected.Store(false)
	m.logger.Info("mqtt connected and subscribed")
	select {
	case err := <-m.lost:
		if errors.Is(err, errRedeliver) {
			client.Disconnect(250)
			return true
		}
		m.stats.lost.Add(1)
		m.logger.Warn("mqtt connection lost; reconnecting", "err", err)
	case <-ctx.Done():
	}
	return true
}

// connect makes one connection attempt.
func (m *MQTT) connect(ctx context.Context, client paho.Client) error {
	tok := client.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		// The attempt ends by itself within connectTimeout; Disconnect
		// makes paho drop the connection if it comes up.
		client.Disconnect(0)
		return ctx.Err()
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("ingest: mqtt connect %s: %w", m.cfg.Broker, err)
	}
	return nil
}

// subscribe (re)creates every subscription: the broker may have lost them.
func (m *MQTT) subscribe(ctx context.Context, client paho.Client) error {
	// nil callback: messages go to the default handler, one code path.
	tok := client.SubscribeMultiple(m.subs, nil)
	timer := time.NewTimer(subscribeTimeout)
	defer timer.Stop()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		m.stats.subErrors.Add(1)
		return fmt.Errorf("ingest: mqtt subscribe %s: no SUBACK within %s", m.cfg.Broker, subscribeTimeout)
	}
	if err := tok.Error(); err != nil {
		m.stats.subErrors.Add(1)
		return fmt.Errorf("ingest: mqtt subscribe %s: %w", m.cfg.Broker, err)
	}
	st, _ := tok.(*paho.SubscribeToken)
	for filter, code := range st.Result() {
		if code == 0x80 { // SUBACK failure: an ACL, usually; other filters still work
			m.stats.subErrors.Add(1)
			m.logger.Error("mqtt broker refused a subscription", "topic", filter)
		}
	}
	return nil
}

// shutdown stops storing, acknowledges whatever becomes durable within
// drainTimeout, then disconnects.
func (m *MQTT) shutdown(client paho.Client, cancelAck context.CancelFunc, ackDone <-chan struct{}) {
	m.draining.Store(true)
	close(m.stop)
	timer := time.AfterFunc(drainTimeout, cancelAck)
	<-ackDone
	timer.Stop()
	client.Disconnect(250)
	m.stats.connected.Store(false)
	m.logger.Info("mqtt disconnected")
}

// Stats returns the client's counters.
func (m *MQTT) Stats() MQTTStats {
	m.mu.Lock()
	n := len(m.topics)
	m.mu.Unlock()
	s := &m.stats
	return MQTTStats{
		Broker: m.cfg.Broker, ClientID: m.cfg.ClientID,
		Connected: s.connected.Load(), Connects: s.connects.Load(), ConnectErrors: s.connectErrors.Load(),
		ConnectionsLost: s.lost.Load(), SubscribeErrors: s.subErrors.Load(),
		Received: s.received.Load(), Duplicates: s.dups.Load(), Stored: s.stored.Load(), StoredBytes: s.storedBytes.Load(),
		Acked: s.acked.Load(), NotAcked: s.notAcked.Load(),
		Oversized: s.oversized.Load(), BadTopic: s.badTopic.Load(), TopicsRefused: s.topicsRefused.Load(),
		DeepJSON: s.deepJSON.Load(), Redelivered: s.redelivered.Load(), TopicsEvicted: s.topicsEvicted.Load(),
		AppendErrors: s.appendErrors.Load(), RetainedSkipped: s.retainedSkipped.Load(), Unsubscribed: s.unsubscribed.Load(), Topics: n, AckWaiting: int(s.waiting.Load()), EarlySyncs: s.earlySyncs.Load(),
	}
}

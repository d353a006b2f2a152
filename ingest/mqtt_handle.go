package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"hash/maphash"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eddy-iot/eddy/ringlog"
	"github.com/eddy-iot/eddy/topic"
)

// handle is paho's handler for every message. paho calls it on one
// goroutine, in arrival order (OrderMatters). It appends the message's
// records and queues the message for the acker; it never waits for the
// disk.
func (m *MQTT) handle(_ paho.Client, msg paho.Message) {
	m.stats.received.Add(1)
	if msg.Duplicate() {
		m.stats.dups.Add(1)
	}
	p := pending{msg: msg, at: time.Now()}
	if msg.Qos() > 0 && !m.takeSlot() {
		// The disk is far behind: neither stored nor acknowledged, so
		// that what waits between broker and log stays bounded; the
		// broker delivers it again (redeliverLeft).
		m.leave("ack_queue_full", p)
		return
	}
	if msg.Qos() == 1 && msg.Duplicate() {
		if seq, ok := m.storedBefore(msg); ok {
			// Stored when first delivered, never acknowledged: acknowledge
			// it now (once durable), do not store it twice.
			m.stats.redelivered.Add(1)
			p.seq, p.ack = seq, true
			m.enqueue(p)
			return
		}
	}
	p.seq, p.ack = m.store(msg)
	if msg.Qos() == 0 {
		return // nothing to acknowledge
	}
	if msg.Qos() == 1 && p.ack && p.seq > 0 {
		m.noteStored(msg, p.seq)
	}
	m.enqueue(p)
}

// storedMsg identifies a stored QoS 1 message beyond its packet id.
type storedMsg struct {
	seq  uint64
	hash uint64 // of topic and payload
}

func (m *MQTT) msgHash(msg paho.Message) uint64 {
	var h maphash.Hash
	h.SetSeed(m.seed)
	h.WriteString(msg.Topic())
	h.WriteByte(0)
	h.Write(msg.Payload())
	return h.Sum64()
}

// noteStored remembers that msg was stored as seq until it is acknowledged.
func (m *MQTT) noteStored(msg paho.Message, seq uint64) {
	h := m.msgHash(msg)
	m.unackedMu.Lock()
	m.unacked[msg.MessageID()] = storedMsg{seq: seq, hash: h}
	m.unackedMu.Unlock()
}

// storedBefore reports whether redelivered msg was stored and not yet
// acknowledged, and as which seq.
func (m *MQTT) storedBefore(msg paho.Message) (uint64, bool) {
	h := m.msgHash(msg)
	m.unackedMu.Lock()
	defer m.unackedMu.Unlock()
	sm, ok := m.unacked[msg.MessageID()]
	return sm.seq, ok && sm.hash == h
}

// acked forgets msg: the broker may use its packet id again.
func (m *MQTT) acked(msg paho.Message) {
	if msg.Qos() != 1 {
		return
	}
	m.unackedMu.Lock()
	delete(m.unacked, msg.MessageID())
	m.unackedMu.Unlock()
}

// store appends the records made from msg. It returns the last seq
// appended (0 for none) and whether the message may be acknowledged: true
// for a message stored or refused for good, false for one the broker
// should deliver again (shutting down, log closed).
func (m *MQTT) store(msg paho.Message) (uint64, bool) {
	if m.draining.Load() {
		return 0, false
	}
	name, payload := msg.Topic(), msg.Payload()
	if len(payload) > int(m.cfg.MaxPayload) {
		m.stats.oversized.Add(1)
		m.limit.Warn("oversized", "mqtt payload over max_payload refused",
			"topic", safeTopic(name), "bytes", len(payload), "max_payload", int64(m.cfg.MaxPayload))
		return 0, true
	}
	if err := topic.ValidName(name); err != nil {
		m.stats.badTopic.Add(1)
		m.limit.Warn("bad_topic", "mqtt message with an invalid topic refused", "topic", safeTopic(name), "err", err)
		return 0, true
	}
	if !m.filters.Match(name) {
		// A subscription of an earlier configuration that the persistent
		// session still holds (eddy never unsubscribes).
		m.stats.unsubscribed.Add(1)
		m.limit.Warn("unsubscribed", "mqtt message matches no configured topic; dropped", "topic", name)
		return 0, true
	}
	if msg.Retained() && m.replayed(name, payload) {
		// A retained value sent again because we subscribed again.
		m.stats.retainedSkipped.Add(1)
		return 0, true
	}
	if jsonDepth(payload) > MaxJSONDepth && json.Valid(payload) {
		m.stats.deepJSON.Add(1)
		m.limit.Warn("deep_json", "mqtt JSON payload nested too deep; stored as text",
			"topic", safeTopic(name), "max_depth", MaxJSONDepth)
	}
	recs, err := decodeMessage(name, payload, findMapping(m.maps, name), time.Now())
	if err != nil {
		m.stats.appendErrors.Add(1)
		m.limit.Warn("decode", "mqtt message could not be mapped", "topic", name, "err", err)
		return 0, true
	}
	var last uint64
	for _, r := range recs {
		if !m.admitTopic(r.Topic) {
			continue
		}
		seq, err := m.log.Append(r)
		switch {
		case err == nil || errors.Is(err, ringlog.ErrNotDurable):
			// Not durable yet is decided by WaitDurable in the acker:
			// the writer keeps retrying pending records.
			m.stats.stored.Add(1)
			m.stats.storedBytes.Add(uint64(len(r.Topic) + len(r.Value)))
			last = seq
		case errors.Is(err, ringlog.ErrClosed):
			return last, false
		default:
			m.stats.appendErrors.Add(1)
			m.limit.Warn("append", "ring log refused an mqtt record", "topic", r.Topic, "err", err)
		}
	}
	if last > 0 {
		m.remember(name, payload)
	}
	return last, true
}

// replayed reports whether payload is the last one stored from topic name:
// brokers send a topic's retained message on every new subscription, and
// every reconnect subscribes again.
func (m *MQTT) replayed(name string, payload []byte) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	h, ok := m.lastHash[name]
	return ok && h == maphash.Bytes(m.seed, payload)
}

// remember notes the hash of the last payload stored from topic name, for
// at most max_topics topics.
func (m *MQTT) remember(name string, payload []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.lastHash[name]; ok || len(m.lastHash) < m.cfg.MaxTopics {
		m.lastHash[name] = maphash.Bytes(m.seed, payload)
	}
}

// TopicIdle is how long a topic must have been silent before a new
// topic may take its place once max_topics topics are known.
const TopicIdle = 10 * time.Minute

// topicSeen is a known topic and when it last had a record.
type topicSeen struct {
	name string
	last time.Time
}

// admitTopic reports whether records of name may be stored: a known topic
// always; a new one while fewer than max_topics are known, or in place of
// the least recently seen topic when that one has been silent for
// TopicIdle. So a burst of junk topics keeps new ones out for TopicIdle at
// most, and never stops a topic that keeps reporting.
func (m *MQTT) admitTopic(name string) bool {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.topics[name]; ok {
		e.Value.(*topicSeen).last = now
		m.topicLRU.MoveToBack(e)
		return true
	}
	if len(m.topics) >= m.cfg.MaxTopics {
		oldest := m.topicLRU.Front()
		if oldest == nil || now.Sub(oldest.Value.(*topicSeen).last) < TopicIdle {
			m.stats.topicsRefused.Add(1)
			m.limit.Warn("max_topics", "mqtt topic refused: max_topics distinct topics reported within topic idle time",
				"topic", name, "max_topics", m.cfg.MaxTopics, "idle", TopicIdle)
			return false
		}
		old := m.topicLRU.Remove(oldest).(*topicSeen)
		delete(m.topics, old.name)
		delete(m.lastHash, old.name)
		m.stats.topicsEvicted.Add(1)
	}
	m.topics[name] = m.topicLRU.PushBack(&topicSeen{name: name, last: now})
	return true
}

// takeSlot takes one of the ack queue's places for a QoS 1/2 message,
// before anything is stored for it: the queue holds a message until its
// records are durable, so its capacity bounds the payload bytes waiting
// between broker and log (ackQueueBytes of max_payload messages), and the
// log's not yet committed copies of them. When the queue stays full (the
// disk is far behind) takeSlot gives up after enqueueWait, and then does
// not wait again until the queue has room.
func (m *MQTT) takeSlot() bool {
	select {
	case m.slots <- struct{}{}:
		m.saturated.Store(false)
		return true
	default:
	}
	if m.saturated.Load() {
		return false
	}
	m.kickIfFull()
	t := time.NewTimer(enqueueWait)
	defer t.Stop()
	select {
	case m.slots <- struct{}{}:
		return true
	case <-t.C:
		m.saturated.Store(true)
		return false
	case <-m.stop:
		return false
	}
}

// enqueue hands p, which holds a slot (takeSlot), to the acker. The queue
// has a place for every slot: it never waits.
func (m *MQTT) enqueue(p pending) {
	m.stats.waiting.Add(1)
	m.queue <- p
	m.kickIfBatch()
}

// leave leaves a message to the broker: not stored, not acknowledged.
func (m *MQTT) leave(reason string, p pending) {
	m.stats.notAcked.Add(1)
	if reason == "ack_queue_full" {
		m.left.Add(1)
	}
	m.limit.Warn(reason, "mqtt message left to the broker to redeliver (not stored, not acknowledged)",
		"reason", reason, "topic", p.msg.Topic())
}

// errRedeliver ends a session on purpose: see redeliverLeft.
var errRedeliver = errors.New("ingest: reconnecting for the broker to redeliver unacknowledged messages")

// redeliverLeft is called by the acker when its queue has drained. A
// message left while the queue was full holds one of the broker's
// in-flight slots for as long as the connection lasts (the broker
// redelivers only on a new connection); enough of them and the broker
// stops sending altogether. So once the queue is empty again, the session
// is ended and the broker delivers them again.
func (m *MQTT) redeliverLeft() {
	n := m.left.Swap(0)
	if n == 0 {
		return
	}
	m.logger.Warn("mqtt reconnecting for the broker to redeliver messages left unacknowledged while the disk was behind", "messages", n)
	select {
	case m.lost <- errRedeliver:
	default:
	}
}

// acker acknowledges queued messages in order, each once its records are
// durable. After Run closes m.stop it settles what is queued and returns;
// cancelling ctx cuts the wait for durability short.
func (m *MQTT) acker(ctx context.Context) {
	for {
		select {
		case p := <-m.queue:
			m.settle(ctx, p)
			if len(m.queue) == 0 {
				m.redeliverLeft()
			}
		case <-m.stop:
			for {
				select {
				case p := <-m.queue:
					m.settle(ctx, p)
				default:
					return
				}
			}
		}
	}
}

// settle waits until p's records are durable and acknowledges it; then
// p's slot is free.
func (m *MQTT) settle(ctx context.Context, p pending) {
	defer func() { <-m.slots }()
	defer m.stats.waiting.Add(-1)
	if p.ack && p.seq > 0 {
		if err := m.durable(ctx, p.seq, p.at); err != nil {
			// Dropped while the disk failed, or we are stopping: the
			// broker keeps the message and delivers it again.
			p.ack = false
			m.limit.Warn("not_durable", "mqtt record not durable; not acknowledged", "seq", p.seq, "err", err)
		}
	}
	if !p.ack {
		m.stats.notAcked.Add(1)
		return
	}
	p.msg.Ack()
	m.acked(p.msg)
	m.stats.acked.Add(1)
}

// durable waits until seq is on disk. When ack_batch messages are
// waiting, or the message received at 'at' has waited ack_delay, the
// broker's in-flight window may be filling: it commits the log at once
// rather than stall the broker's stream until the next group commit. The
// handler cuts a wait short through m.kick when the batch fills.
func (m *MQTT) durable(ctx context.Context, seq uint64, at time.Time) error {
	if done, err := m.probe(seq); done || err != nil {
		return err
	}
	if !m.batchFull() {
		if kicked, err := m.waitKickable(ctx, seq, at); !kicked {
			return err
		}
	}
	m.stats.earlySyncs.Add(1)
	if err := m.log.Sync(ctx); err != nil && ctx.Err() != nil {
		return err
	}
	// Sync covered seq; WaitDurable gives seq's own verdict at once.
	return m.log.WaitDurable(ctx, seq)
}

// probe tells without waiting whether seq is durable, or an error when it
// never will be (dropped while the disk failed, log closed).
func (m *MQTT) probe(seq uint64) (bool, error) {
	err := m.log.WaitDurable(m.noWait, seq)
	if errors.Is(err, context.Canceled) {
		return false, nil
	}
	return err == nil, err
}

// waitKickable waits for seq to become durable through the periodic
// commit, or until the handler kicks it because ack_batch messages wait,
// or until the message has waited ack_delay.
func (m *MQTT) waitKickable(ctx context.Context, seq uint64, at time.Time) (kicked bool, err error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if d := m.cfg.AckDelay.Duration; d > 0 {
		t := time.AfterFunc(time.Until(at.Add(d)), cancel)
		defer t.Stop()
	}
	m.kickMu.Lock()
	m.kick = cancel
	m.kickMu.Unlock()
	if m.batchFull() { // filled before m.kick was set
		cancel()
	}
	err = m.log.WaitDurable(wctx, seq)
	m.kickMu.Lock()
	m.kick = nil
	m.kickMu.Unlock()
	if errors.Is(err, context.Canceled) && ctx.Err() == nil {
		return true, nil
	}
	return false, err
}

func (m *MQTT) batchFull() bool {
	n := *m.cfg.AckBatch
	return n > 0 && m.stats.waiting.Load() >= int64(n)
}

// kickIfBatch ends the acker's wait for the periodic commit once ack_batch
// messages are waiting.
func (m *MQTT) kickIfBatch() {
	if m.batchFull() {
		m.kickIfFull()
	}
}

// kickIfFull ends the acker's wait for the periodic commit.
func (m *MQTT) kickIfFull() {
	m.kickMu.Lock()
	if m.kick != nil {
		m.kick()
		m.kick = nil
	}
	m.kickMu.Unlock()
}

// safeTopic makes a topic fit for a log line: at most 128 bytes, invalid
// UTF-8 replaced by U+FFFD.
func safeTopic(s string) string {
	const max = 128
	if len(s) > max {
		s = s[:max]
	}
	return string([]rune(s)) // replaces invalid bytes with U+FFFD
}

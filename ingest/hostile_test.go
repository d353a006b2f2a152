package ingest

import (
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/eddy-iot/eddy/ringlog"
)

// fakeMsg is a received MQTT message as paho hands it to the handler.
type fakeMsg struct {
	topic   string
	payload []byte
	qos     byte
	dup     bool
	id      uint16
	acks    *atomic.Int32
}

func (m fakeMsg) Duplicate() bool   { return m.dup }
func (m fakeMsg) Qos() byte         { return m.qos }
func (m fakeMsg) Retained() bool    { return false }
func (m fakeMsg) Topic() string     { return m.topic }
func (m fakeMsg) MessageID() uint16 { return m.id }
func (m fakeMsg) Payload() []byte   { return m.payload }
func (m fakeMsg) Ack()              { m.acks.Add(1) }

// The poison pill of issue 12: valid JSON nested 10,000 deep is stored as
// text, and counted, so that no client meets a document too deep to parse.
func TestDeepJSONStoredAsText(t *testing.T) {
	deep := []byte(strings.Repeat("[", 10000) + strings.Repeat("]", 10000))
	if !json.Valid(deep) {
		t.Fatal("test payload is not valid JSON")
	}
	for _, tc := range []struct {
		payload []byte
		want    ringlog.Kind
	}{
		{deep, ringlog.KindText},
		{[]byte(strings.Repeat("[", MaxJSONDepth) + strings.Repeat("]", MaxJSONDepth)), ringlog.KindJSON},
		{[]byte(strings.Repeat("[", MaxJSONDepth+1) + strings.Repeat("]", MaxJSONDepth+1)), ringlog.KindText},
		{[]byte(`{"a":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"["}`), ringlog.KindJSON},
	} {
		if kind, _ := decodePayload(tc.payload); kind != tc.want {
			t.Errorf("payload %.30q...: kind %v, want %v", tc.payload, kind, tc.want)
		}
	}

	l := openLog(t, time.Hour)
	m, err := NewMQTT(testConfig("tcp://127.0.0.1:1", "deep", "sensors/#"), l, nil)
	if err != nil {
		t.Fatal(err)
	}
	var acks atomic.Int32
	m.handle(nil, fakeMsg{topic: "sensors/x", payload: deep, acks: &acks})
	if got := m.Stats().DeepJSON; got != 1 {
		t.Errorf("DeepJSON = %d, want 1", got)
	}
	recs := records(t, l)
	if len(recs) != 1 || recs[0].Kind != ringlog.KindText {
		t.Fatalf("stored %d records (first of kind %v), want one text record", len(recs), recs[0].Kind)
	}
}

// A QoS 1 message stored and left unacknowledged comes again with DUP set
// and the same packet id: it is acknowledged and not stored twice. A
// different message that reuses the id, and a DUP of something never
// stored, are stored.
func TestRedeliveryStoredOnce(t *testing.T) {
	l := openLog(t, 10*time.Millisecond)
	m, err := NewMQTT(testConfig("tcp://127.0.0.1:1", "dup", "sensors/#"), l, nil)
	if err != nil {
		t.Fatal(err)
	}
	var acks atomic.Int32
	msg := fakeMsg{topic: "sensors/a", payload: []byte("1"), qos: 1, id: 7, acks: &acks}
	m.handle(nil, msg) // queued for the acker, which is not running: never acked
	dup := msg
	dup.dup = true
	m.handle(nil, dup)
	other := fakeMsg{topic: "sensors/a", payload: []byte("2"), qos: 1, id: 8, dup: true, acks: &acks}
	m.handle(nil, other)
	if n := len(records(t, l)); n != 2 {
		t.Fatalf("%d records stored, want 2 (the redelivery stored once)", n)
	}
	if got := m.Stats().Redelivered; got != 1 {
		t.Errorf("Redelivered = %d, want 1", got)
	}
	// Once acked, the id is free: the same id with DUP and other content
	// is a different message.
	m.acked(msg)
	again := fakeMsg{topic: "sensors/a", payload: []byte("3"), qos: 1, id: 7, dup: true, acks: &acks}
	m.handle(nil, again)
	if n := len(records(t, l)); n != 3 {
		t.Fatalf("%d records stored, want 3", n)
	}
}

// paho's store no longer keeps received QoS 1 messages (issue 12: 1,986
// unacknowledged 60 KB messages pinned 114 MB), and keeps everything else.
func TestInboundDropStore(t *testing.T) {
	s := inboundDropStore{paho.NewMemoryStore()}
	s.Open()
	defer s.Close()
	pub := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	pub.Qos, pub.MessageID, pub.Payload = 1, 3, make([]byte, 60<<10)
	s.Put("i.3", pub)
	if s.Get("i.3") != nil {
		t.Error("received QoS 1 publish kept")
	}
	s.Put("o.3", pub)
	if s.Get("o.3") == nil {
		t.Error("outgoing publish dropped")
	}
	pub2 := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	pub2.Qos, pub2.MessageID = 2, 4
	s.Put("i.4", pub2)
	if s.Get("i.4") == nil {
		t.Error("received QoS 2 publish dropped")
	}
}

// max_topics: a burst of junk topics fills the table; a topic that keeps
// reporting is never refused, and a new topic gets in once the junk has
// been silent for TopicIdle (before this, never until a restart).
func TestMaxTopicsEvictsIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := openLog(t, time.Hour)
		cfg := testConfig("tcp://127.0.0.1:1", "topics", "#")
		cfg.MaxTopics = 100
		m, err := NewMQTT(cfg, l, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !m.admitTopic("legit/a") {
			t.Fatal("first topic refused")
		}
		for i := range 99 {
			m.admitTopic("junk/" + string(rune('A'+i%26)) + strings.Repeat("x", i))
		}
		if m.admitTopic("legit/new") {
			t.Fatal("new topic admitted while the table is full of fresh topics")
		}
		for range 11 { // legit/a reports every minute, the junk never again
			time.Sleep(time.Minute)
			if !m.admitTopic("legit/a") {
				t.Fatal("known topic refused")
			}
		}
		if !m.admitTopic("legit/new") {
			t.Fatal("new topic refused although junk topics were silent for over TopicIdle")
		}
		st := m.Stats()
		if st.TopicsEvicted != 1 || st.TopicsRefused != 1 || st.Topics != 100 {
			t.Errorf("stats: evicted %d refused %d topics %d, want 1 1 100", st.TopicsEvicted, st.TopicsRefused, st.Topics)
		}
	})
}

// Messages left unacknowledged for a full queue hold the broker's
// in-flight slots until the connection ends (issue 12's probe lost 1,096
// legitimate messages that way, the broker's window stuck): once the
// queue drains, the session is ended so that the broker delivers them
// again.
func TestRedeliverLeftEndsSession(t *testing.T) {
	l := openLog(t, time.Hour)
	m, err := NewMQTT(testConfig("tcp://127.0.0.1:1", "left", "sensors/#"), l, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.redeliverLeft()
	select {
	case err := <-m.lost:
		t.Fatalf("session ended with nothing left unacknowledged: %v", err)
	default:
	}
	var acks atomic.Int32
	m.leave("ack_queue_full", pending{msg: fakeMsg{topic: "sensors/a", qos: 1, acks: &acks}})
	m.leave("shutdown", pending{msg: fakeMsg{topic: "sensors/a", qos: 1, acks: &acks}})
	m.redeliverLeft()
	select {
	case err := <-m.lost:
		if !errors.Is(err, errRedeliver) {
			t.Fatalf("session ended with %v, want errRedeliver", err)
		}
	default:
		t.Fatal("session not ended with a message left unacknowledged")
	}
	if n := m.left.Load(); n != 0 {
		t.Errorf("left = %d after the redelivery was asked for", n)
	}
}

// Issue 12's MQTT burst: what waits between broker and log is bounded by
// the ack queue. With the acker stalled (not running here, as behind a
// disk far behind), QoS 1 messages beyond the queue's capacity are
// neither stored nor acknowledged, and counted for redelivery: before,
// they were stored anyway and piled up uncommitted in memory.
func TestAckQueueBoundsInFlight(t *testing.T) {
	l := openLog(t, time.Hour)
	cfg := testConfig("tcp://127.0.0.1:1", "bound", "sensors/#")
	cfg.MaxPayload = 1 << 20
	m, err := NewMQTT(cfg, l, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := cap(m.queue)
	if n != 20 || cap(m.slots) != n {
		t.Fatalf("queue of %d, slots %d, want 20 (16 MiB of 1 MiB messages, at least 20)", n, cap(m.slots))
	}
	var acks atomic.Int32
	for i := range n + 5 {
		m.handle(nil, fakeMsg{topic: "sensors/a", payload: []byte("1"), qos: 1, id: uint16(i + 1), acks: &acks})
	}
	if got := len(records(t, l)); got != n {
		t.Errorf("%d records stored, want %d (the queue's capacity)", got, n)
	}
	if got := m.left.Load(); got != 5 {
		t.Errorf("%d messages left for redelivery, want 5", got)
	}
	if got := m.Stats().NotAcked; got != 5 {
		t.Errorf("NotAcked = %d, want 5", got)
	}
	// QoS 0 takes no place in the queue.
	m.handle(nil, fakeMsg{topic: "sensors/a", payload: []byte("2"), acks: &acks})
	if got := len(records(t, l)); got != n+1 {
		t.Errorf("%d records stored, want %d", got, n+1)
	}
}

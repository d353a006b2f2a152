package ingest

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/eddy-iot/eddy/config"
	"github.com/eddy-iot/eddy/ringlog"
)

// TestMain checks that no test leaves a goroutine behind: the MQTT client,
// its acker, paho's workers and the brokers must all have ended.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestMQTTPayloadKinds(t *testing.T) {
	b := startBroker(t, "127.0.0.1:0")
	l := openLog(t, 20*time.Millisecond)
	m, _ := runMQTT(t, testConfig(b.url, "eddy-kinds", "dev/#"), l)
	waitConnected(t, m, 1)
	pub := newPublisher(t, b.url)

	tests := []struct {
		topic   string
		payload []byte
		kind    ringlog.Kind
		value   string
	}{
		{"dev/obj", []byte("{ \"a\" : 1,\n \"b\": [true, null] }"), ringlog.KindJSON, `{"a":1,"b":[true,null]}`},
		{"dev/num", []byte(" 21.5 "), ringlog.KindJSON, `21.5`},
		{"dev/str", []byte(`"on"`), ringlog.KindJSON, `"on"`},
		{"dev/text", []byte("pump on\nsecond line"), ringlog.KindText, "pump on\nsecond line"},
		{"dev/bin", []byte{0xff, 0x00, 0xfe}, ringlog.KindBinary, "\xff\x00\xfe"},
		{"dev/empty", []byte{}, ringlog.KindText, ""},
	}
	for _, tt := range tests {
		pub.publish(tt.topic, 1, tt.payload)
	}
	recs := waitRecords(t, l, len(tests))
	if len(recs) != len(tests) {
		t.Fatalf("got %d records, want %d", len(recs), len(tests))
	}
	for i, tt := range tests {
		r := recs[i]
		if r.Topic != tt.topic || r.Kind != tt.kind || string(r.Value) != tt.value {
			t.Errorf("record %d = %s %s %q; want %s %s %q", i, r.Topic, r.Kind, r.Value, tt.topic, tt.kind, tt.value)
		}
		if r.Time.IsZero() || time.Since(r.Time) > time.Minute {
			t.Errorf("record %d has time %v, want the time of receipt", i, r.Time)
		}
	}
	waitFor(t, 10*time.Second, "every message acknowledged", func() bool {
		s := m.Stats()
		return s.Acked == uint64(len(tests)) && s.AckWaiting == 0 && b.inflight("eddy-kinds") == 0
	})
	if s := m.Stats(); s.Received != uint64(len(tests)) || s.Stored != uint64(len(tests)) || s.Topics != len(tests) {
		t.Errorf("stats = %+v", s)
	}
	var bytes uint64
	for _, r := range recs {
		bytes += uint64(len(r.Topic) + len(r.Value))
	}
	if s := m.Stats(); s.StoredBytes != bytes {
		t.Errorf("StoredBytes = %d, want %d", s.StoredBytes, bytes)
	}
}

func TestMQTTFieldMapping(t *testing.T) {
	b := startBroker(t, "127.0.0.1:0")
	l := openLog(t, 20*time.Millisecond)
	cfg := testConfig(b.url, "eddy-map", "sensors/#")
	cfg.Map = []config.MQTTMap{
		{Topic: "sensors/+/env", Fields: map[string]string{"t": "°C", "h": "%", "wind.speed": "m/s", "v.1": "V"}},
		{Topic: "sensors/+/pressure", Unit: "bar"},
	}
	m, _ := runMQTT(t, cfg, l)
	waitConnected(t, m, 1)
	pub := newPublisher(t, b.url)
	pub.publish("sensors/a/env", 1, []byte(`{"t": 21.5, "h": 40, "wind": {"speed": 3.2}, "v": [1, 2.5], "other": 1}`))
	pub.publish("sensors/a/pressure", 1, []byte(`2.31`))
	pub.publish("sensors/b/env", 1, []byte(`{"unmapped": true}`)) // no field: stored whole
	pub.publish("sensors/c/env", 1, []byte(`not json`))           // not JSON: stored whole

	want := []struct{ topic, value, unit string }{
		{"sensors/a/env/h", "40", "%"},
		{"sensors/a/env/t", "21.5", "°C"},
		{"sensors/a/env/v/1", "2.5", "V"},
		{"sensors/a/env/wind/speed", "3.2", "m/s"},
		{"sensors/a/pressure", "2.31", "bar"},
		{"sensors/b/env", `{"unmapped":true}`, ""},
		{"sensors/c/env", "not json", ""},
	}
	recs := waitRecords(t, l, len(want))
	if len(recs) != len(want) {
		t.Fatalf("got %d records, want %d: %+v", len(recs), len(want), recs)
	}
	for i, w := range want {
		r := recs[i]
		if r.Topic != w.topic || string(r.Value) != w.value || r.Unit != w.unit {
			t.Errorf("record %d = %s %q %q; want %s %q %q", i, r.Topic, r.Value, r.Unit, w.topic, w.value, w.unit)
		}
	}
	// The fields of one message share its observation time.
	if !recs[0].Time.Equal(recs[3].Time) {
		t.Errorf("fields of one message have times %v and %v", recs[0].Time, recs[3].Time)
	}
	waitFor(t, 10*time.Second, "4 acks", func() bool { return m.Stats().Acked == 4 })
}

func TestMQTTBadInput(t *testing.T) {
	b := startBroker(t, "127.0.0.1:0")
	l := openLog(t, 20*time.Millisecond)
	cfg := testConfig(b.url, "eddy-bad", "#")
	cfg.MaxPayload = 16
	cfg.MaxTopics = 3
	m, _ := runMQTT(t, cfg, l)
	waitConnected(t, m, 1)
	pub := newPublisher(t, b.url)

	pub.publish("big", 1, bytes.Repeat([]byte("x"), 17)) // oversized
	pub.publish("ctl\x01topic", 1, []byte("1"))          // a control character: not a valid name
	for _, name := range []string{"t/1", "t/2", "t/3", "t/4", "t/5", "t/1"} {
		pub.publish(name, 1, []byte("1")) // t/4 and t/5 are beyond max_topics
	}
	waitFor(t, 10*time.Second, "every message acknowledged", func() bool {
		return m.Stats().Acked == 8 && b.inflight("eddy-bad") == 0
	})
	s := m.Stats()
	if s.Oversized != 1 || s.BadTopic != 1 || s.TopicsRefused != 2 || s.Stored != 4 || s.Topics != 3 {
		t.Errorf("stats = %+v; want 1 oversized, 1 bad topic, 2 topics refused, 4 stored, 3 topics", s)
	}
	var got []string
	for _, r := range records(t, l) {
		got = append(got, r.Topic)
	}
	if want := "[t/1 t/2 t/3 t/1]"; fmtList(got) != want {
		t.Errorf("stored topics %v, want %s", got, want)
	}

	// Invalid UTF-8 cannot pass a conforming broker; feed the handler directly.
	m.handle(nil, &fakeMessage{topic: "bad\xff", qos: 0, payload: []byte("1")})
	if s := m.Stats(); s.BadTopic != 2 {
		t.Errorf("BadTopic = %d after an invalid UTF-8 topic, want 2", s.BadTopic)
	}
}

func fmtList(s []string) string {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, x := range s {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(x)
	}
	b.WriteByte(']')
	return b.String()
}

// fakeMessage stands in for a message no broker would deliver.
type fakeMessage struct {
	topic   string
	qos     byte
	payload []byte
	acked   bool
}

func (f *fakeMessage) Duplicate() bool   { return false }
func (f *fakeMessage) Qos() byte         { return f.qos }
func (f *fakeMessage) Retained() bool    { return false }
func (f *fakeMessage) Topic() string     { return f.topic }
func (f *fakeMessage) MessageID() uint16 { return 1 }
func (f *fakeMessage) Payload() []byte   { return f.payload }
func (f *fakeMessage) Ack()              { f.acked = true }

// TestMQTTAckAfterDurable proves that a message is acknowledged only once
// its record is on disk: with a sync interval too long to pass during the
// test, the record is live at once but the broker still holds the message;
// a client that stops then is sent the message again.
func TestMQTTAckAfterDurable(t *testing.T) {
	b := startBroker(t, "127.0.0.1:0")
	l := openLog(t, time.Hour)
	cfg := testConfig(b.url, "eddy-durable", "d/#")
	m, stop := runMQTT(t, cfg, l)
	waitConnected(t, m, 1)
	pub := newPublisher(t, b.url)
	pub.publish("d/x", 1, []byte("42"))

	recs := waitRecords(t, l, 1)
	if string(recs[0].Value) != "42" {
		t.Fatalf("record = %q", recs[0].Value)
	}
	// Live but not durable: give a wrong early ack time to show itself.
	time.Sleep(300 * time.Millisecond)
	if s := m.Stats(); s.Acked != 0 || s.AckWaiting != 1 {
		t.Fatalf("before durability: acked %d, queued %d; want 0 and 1", s.Acked, s.AckWaiting)
	}
	if n := b.inflight("eddy-durable"); n != 1 {
		t.Fatalf("broker holds %d unacknowledged messages, want 1", n)
	}
	stop() // the record never became durable: not acknowledged
	if s := m.Stats(); s.Acked != 0 || s.NotAcked != 1 {
		t.Fatalf("after stop: %+v; want 0 acked, 1 not acked", s)
	}

	// The same session again: the broker delivers the message again, and
	// once the log syncs it is acknowledged.
	m2, _ := runMQTT(t, cfg, l)
	recs = waitRecords(t, l, 2)
	if string(recs[1].Value) != "42" || recs[1].Topic != "d/x" {
		t.Fatalf("redelivered record = %s %q", recs[1].Topic, recs[1].Value)
	}
	if s := m2.Stats(); s.Duplicates != 1 {
		t.Errorf("Duplicates = %d, want 1 (the redelivery carries DUP)", s.Duplicates)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	waitFor(t, 10*time.Second, "ack after sync", func() bool {
		return m2.Stats().Acked == 1 && b.inflight("eddy-durable") == 0
	})
}

// TestMQTTReconnectAfterBrokerRestart starts eddy before its broker, then
// replaces the broker by a fresh one (no sessions, no subscriptions) on the
// same port: eddy must reconnect and subscribe again by itself.
func TestMQTTReconnectAfterBrokerRestart(t *testing.T) {
	addr := freeAddr(t)
	l := openLog(t, 20*time.Millisecond)
	m, _ := runMQTT(t, testConfig("tcp://"+addr, "eddy-restart", "r/#"), l)
	waitFor(t, 10*time.Second, "a failed connect", func() bool { return m.Stats().ConnectErrors > 0 })

	b1 := startBroker(t, addr)
	waitConnected(t, m, 1)
	// Connected is not yet subscribed: publish only once the broker has
	// the subscription, or the message finds no subscriber.
	waitFor(t, 10*time.Second, "subscription on the first broker", func() bool {
		return len(b1.srv.Topics.Subscribers("r/1").Subscriptions) > 0
	})
	newPublisher(t, b1.url).publish("r/1", 1, []byte("1"))
	waitRecords(t, l, 1)

	b1.close()
	waitFor(t, 10*time.Second, "the loss noticed", func() bool { return m.Stats().ConnectionsLost >= 1 })
	b2 := startBroker(t, addr)
	waitConnected(t, m, 2)
	// A fresh broker knows no subscription: only a renewed one delivers this.
	waitFor(t, 10*time.Second, "subscription on the new broker", func() bool {
		return len(b2.srv.Topics.Subscribers("r/2").Subscriptions) > 0
	})
	newPublisher(t, b2.url).publish("r/2", 1, []byte("2"))
	recs := waitRecords(t, l, 2)
	if recs[1].Topic != "r/2" {
		t.Errorf("second record on %s, want r/2", recs[1].Topic)
	}
}

// TestMQTTPersistentSession proves that messages published while eddy was
// away are delivered when it comes back under the same client id.
func TestMQTTPersistentSession(t *testing.T) {
	b := startBroker(t, "127.0.0.1:0")
	l := openLog(t, 20*time.Millisecond)
	cfg := testConfig(b.url, "eddy-session", "s/#")
	m, stop := runMQTT(t, cfg, l)
	waitConnected(t, m, 1)
	stop()

	pub := newPublisher(t, b.url)
	for _, v := range []string{"1", "2", "3"} {
		pub.publish("s/v", 1, []byte(v))
	}
	if got := records(t, l); len(got) != 0 {
		t.Fatalf("records while eddy was away: %d", len(got))
	}

	m2, _ := runMQTT(t, cfg, l)
	recs := waitRecords(t, l, 3)
	// mochi resends a session's stored messages in no fixed order.
	var got []string
	for _, r := range recs {
		got = append(got, string(r.Value))
	}
	slices.Sort(got)
	if fmtList(got) != "[1 2 3]" {
		t.Errorf("records after reconnect %v, want 1, 2, 3", got)
	}
	waitFor(t, 10*time.Second, "acks", func() bool { return m2.Stats().Acked == 3 })
}

// TestMQTTAckDelayCommitsEarly: with a sync interval that never passes
// and no batch, a lone message is made durable and acknowledged once it
// has waited ack_delay, so the broker's window never stays full.
func TestMQTTAckDelayCommitsEarly(t *testing.T) {
	b := startBroker(t, "127.0.0.1:0")
	l := openLog(t, time.Hour)
	cfg := testConfig(b.url, "eddy-delay", "k/#")
	off := 0
	cfg.AckBatch = &off
	cfg.AckDelay = &config.Duration{Duration: 20 * time.Millisecond}
	m, _ := runMQTT(t, cfg, l)
	waitConnected(t, m, 1)
	newPublisher(t, b.url).publish("k/v", 1, []byte("1"))
	waitFor(t, 10*time.Second, "an ack after ack_delay", func() bool {
		s := m.Stats()
		return s.Acked == 1 && s.EarlySyncs == 1 && b.inflight("eddy-delay") == 0
	})
	if d := l.DurableSeq(); d < 1 {
		t.Errorf("DurableSeq = %d after the ack, want >= 1", d)
	}
}

// TestMQTTAckBatchCommitsEarly: with a sync interval that never passes,
// ack_batch waiting messages make the log commit at once, so they are
// acknowledged instead of stalling the broker's in-flight window.
func TestMQTTAckBatchCommitsEarly(t *testing.T) {
	b := startBroker(t, "127.0.0.1:0")
	l := openLog(t, time.Hour)
	cfg := testConfig(b.url, "eddy-batch", "k/#")
	batch := 3
	cfg.AckBatch = &batch
	m, _ := runMQTT(t, cfg, l)
	waitConnected(t, m, 1)
	pub := newPublisher(t, b.url)
	for i := range 3 {
		pub.publish("k/v", 1, []byte{'0' + byte(i)})
	}
	waitFor(t, 10*time.Second, "3 acks from an early commit", func() bool {
		s := m.Stats()
		return s.Acked == 3 && s.EarlySyncs >= 1 && b.inflight("eddy-batch") == 0
	})
	if d := l.DurableSeq(); d < 3 {
		t.Errorf("DurableSeq = %d after the acks, want >= 3", d)
	}
}

// TestMQTTStaleSubscriptionDropped: a persistent session keeps the
// subscriptions of an earlier configuration; their messages are dropped
// (and acknowledged), not stored.
func TestMQTTStaleSubscriptionDropped(t *testing.T) {
	b := startBroker(t, "127.0.0.1:0")
	l := openLog(t, 20*time.Millisecond)
	m, stop := runMQTT(t, testConfig(b.url, "eddy-stale", "a/#", "b/#"), l)
	waitConnected(t, m, 1)
	stop()

	m2, _ := runMQTT(t, testConfig(b.url, "eddy-stale", "a/#"), l)
	waitConnected(t, m2, 1)
	pub := newPublisher(t, b.url)
	pub.publish("b/x", 1, []byte("old"))
	pub.publish("a/x", 1, []byte("new"))
	recs := waitRecords(t, l, 1)
	waitFor(t, 10*time.Second, "both acknowledged", func() bool { return m2.Stats().Acked == 2 })
	if recs = records(t, l); len(recs) != 1 || recs[0].Topic != "a/x" {
		t.Errorf("records %v, want only a/x", recs)
	}
	if s := m2.Stats(); s.Unsubscribed != 1 {
		t.Errorf("Unsubscribed = %d, want 1", s.Unsubscribed)
	}
}

func TestMatchPart(t *testing.T) {
	for in, want := range map[string]string{
		"a/#": "a/#", "$share/g/a/+": "a/+", "$share/g": "$share/g", "$SYS/#": "$SYS/#",
	} {
		if got := matchPart(in); got != want {
			t.Errorf("matchPart(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestMQTTStopWhileBrokerDown: Run returns promptly when stopped between
// connection attempts (DESIGN.md: exit within 5 s of SIGTERM).
func TestMQTTStopWhileBrokerDown(t *testing.T) {
	l := openLog(t, 20*time.Millisecond)
	cfg := testConfig("tcp://"+freeAddr(t), "eddy-down", "x/#")
	cfg.ReconnectMax = config.Duration{Duration: time.Minute}
	m, stop := runMQTT(t, cfg, l)
	waitFor(t, 20*time.Second, "two failed connects", func() bool { return m.Stats().ConnectErrors >= 2 })
	start := time.Now()
	stop()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Run took %s to return after cancel, want < 5s", d)
	}
	if s := m.Stats(); s.Connected || s.Connects != 0 {
		t.Errorf("stats = %+v", s)
	}
}

// TestMQTTQoS2: the exactly-once flow completes (PUBREC after durability,
// then PUBREL/PUBCOMP) and the broker is left holding nothing.
func TestMQTTQoS2(t *testing.T) {
	b := startBroker(t, "127.0.0.1:0")
	l := openLog(t, 20*time.Millisecond)
	cfg := testConfig(b.url, "eddy-qos2", "q/#")
	two := 2
	cfg.QoS = &two
	m, _ := runMQTT(t, cfg, l)
	waitConnected(t, m, 1)
	pub := newPublisher(t, b.url)
	for i := range 5 {
		pub.publish("q/x", 2, []byte{'0' + byte(i)})
	}
	recs := waitRecords(t, l, 5)
	for i, r := range recs {
		if string(r.Value) != string(rune('0'+i)) {
			t.Errorf("record %d = %q", i, r.Value)
		}
	}
	waitFor(t, 10*time.Second, "the QoS 2 flows to complete", func() bool {
		return m.Stats().Acked == 5 && b.inflight("eddy-qos2") == 0
	})
}

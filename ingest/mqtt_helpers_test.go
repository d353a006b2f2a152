package ingest

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/eddy-iot/eddy/config"
	"github.com/eddy-iot/eddy/ringlog"
)

// testBroker is an embedded mochi MQTT broker on loopback.
type testBroker struct {
	srv     *mochi.Server
	stopped atomic.Bool
	addr    string // host:port
	url     string // tcp://host:port
}

// startBroker starts mochi on addr ("127.0.0.1:0" for any port) and stops
// it at cleanup (stopping twice is harmless).
func startBroker(t testing.TB, addr string) *testBroker {
	t.Helper()
	return startBrokerWith(t, addr, brokerOptions{})
}

// brokerOptions varies the test broker.
type brokerOptions struct {
	tls       *tls.Config  // serve MQTT over TLS (ssl://)
	ledger    *auth.Ledger // nil: allow everyone
	websocket bool         // serve MQTT over WebSocket (ws://); addr needs a port
}

func startBrokerWith(t testing.TB, addr string, o brokerOptions) *testBroker {
	t.Helper()
	srv := mochi.New(&mochi.Options{InlineClient: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	var err error
	if o.ledger != nil {
		err = srv.AddHook(new(auth.Hook), &auth.Options{Ledger: o.ledger})
	} else {
		err = srv.AddHook(new(auth.AllowHook), nil)
	}
	if err != nil {
		t.Fatalf("mochi AddHook: %v", err)
	}
	var ln listeners.Listener
	// The port of a restarted broker may still be held for a moment.
	for deadline := time.Now().Add(10 * time.Second); ; {
		cfg := listeners.Config{Type: "tcp", ID: "t", Address: addr, TLSConfig: o.tls}
		if o.websocket {
			ln = listeners.NewWebsocket(cfg)
		} else {
			ln = listeners.NewTCP(cfg)
		}
		err := srv.AddListener(ln)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mochi listen %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := srv.Serve(); err != nil {
		t.Fatalf("mochi Serve: %v", err)
	}
	scheme := "tcp"
	switch {
	case o.websocket:
		scheme = "ws"
	case o.tls != nil:
		scheme = "ssl"
	}
	b := &testBroker{srv: srv, addr: ln.Address(), url: scheme + "://" + ln.Address()}
	t.Cleanup(b.close)
	return b
}

// close stops the broker; closing twice is harmless.
func (b *testBroker) close() {
	if b.stopped.CompareAndSwap(false, true) {
		b.srv.Close()
	}
}

// inflight is how many QoS 1/2 messages the broker holds unacknowledged
// for clientID.
func (b *testBroker) inflight(clientID string) int {
	cl, ok := b.srv.Clients.Get(clientID)
	if !ok {
		return -1
	}
	return cl.State.Inflight.Len()
}

// openLog opens a ring log in a fresh directory, closed at cleanup.
func openLog(t testing.TB, sync time.Duration) *ringlog.Log {
	t.Helper()
	l, err := ringlog.Open(t.TempDir(), &ringlog.Options{SyncInterval: sync, MaxBytes: 64 << 20})
	if err != nil {
		t.Fatalf("ringlog.Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// testConfig is an [[mqtt]] block for tests: fast reconnects.
func testConfig(url, clientID string, topics ...string) config.MQTT {
	return config.MQTT{
		Broker:       url,
		Topics:       topics,
		ClientID:     clientID,
		Keepalive:    config.Duration{Duration: 5 * time.Second},
		ReconnectMax: config.Duration{Duration: 300 * time.Millisecond},
		// Off unless a test is about it: tests rely on acknowledgements
		// waiting for the (long) sync interval.
		AckDelay: &config.Duration{},
	}
}

// runMQTT starts Run and returns the client and a stop function that
// cancels it and waits for Run to return (also called at cleanup).
func runMQTT(t testing.TB, cfg config.MQTT, l *ringlog.Log) (*MQTT, func()) {
	t.Helper()
	m, err := NewMQTT(cfg, l, nil)
	if err != nil {
		t.Fatalf("NewMQTT: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var stopped atomic.Bool
	stop := func() {
		if !stopped.CompareAndSwap(false, true) {
			return
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("Run did not return within 15s of cancel")
		}
	}
	t.Cleanup(stop)
	return m, stop
}

// waitConnected waits until the client has connected n times in total.
func waitConnected(t testing.TB, m *MQTT, n uint64) {
	t.Helper()
	waitFor(t, 20*time.Second, fmt.Sprintf("connection %d", n), func() bool {
		s := m.Stats()
		return s.Connected && s.Connects >= n
	})
}

// waitFor polls cond until it holds; the deadline only guards against a hang.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// publisher is a plain paho client that publishes test traffic.
type publisher struct {
	t testing.TB
	c paho.Client
}

func newPublisher(t testing.TB, url string) *publisher {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("pub-%d", time.Now().UnixNano())).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publisher connect %s: %v", url, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return &publisher{t: t, c: c}
}

func (p *publisher) publish(topic string, qos byte, payload []byte) {
	p.t.Helper()
	tok := p.c.Publish(topic, qos, false, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		p.t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// records returns every record in the log.
func records(t testing.TB, l *ringlog.Log) []ringlog.Record {
	t.Helper()
	var out []ringlog.Record
	after := uint64(0)
	for {
		got, err := l.ReadAfter(nil, after, 1000)
		if err != nil {
			t.Fatalf("ReadAfter: %v", err)
		}
		if len(got) == 0 {
			return out
		}
		out = append(out, got...)
		after = got[len(got)-1].Seq
	}
}

// waitRecords waits until the log holds at least n records and returns them.
func waitRecords(t testing.TB, l *ringlog.Log, n int) []ringlog.Record {
	t.Helper()
	var recs []ringlog.Record
	waitFor(t, 20*time.Second, fmt.Sprintf("%d records", n), func() bool {
		recs = records(t, l)
		return len(recs) >= n
	})
	return recs
}

// freeAddr returns a loopback address with a port nobody listens on.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

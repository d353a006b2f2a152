package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// mosquitto is Debian's broker run by hand as a child process, with its own
// config and persistence directory.
type mosquitto struct {
	t    testing.TB
	bin  string
	conf string
	addr string
	log  *bytes.Buffer
	cmd  *exec.Cmd
	done chan error
}

// newMosquitto writes a config for a persistent broker on a free loopback
// port. It fails the test when mosquitto is not installed.
func newMosquitto(t testing.TB, extra ...string) *mosquitto {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/mosquitto"); serr != nil {
			t.Fatalf("mosquitto not found: run `make deps` (apt-get install -y mosquitto)")
		}
		bin = "/usr/sbin/mosquitto"
	}
	dir := t.TempDir()
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	conf := []string{
		"listener " + port + " 127.0.0.1",
		"allow_anonymous true",
		"persistence true",
		"persistence_location " + dir + "/",
		"max_queued_messages 0", // no limit: an offline or slow session loses nothing
		"log_dest stderr",
	}
	conf = append(conf, extra...)
	if os.Geteuid() == 0 {
		conf = append(conf, "user root") // else it drops to user mosquitto, who cannot write dir
	}
	path := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(path, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := &mosquitto{t: t, bin: bin, conf: path, addr: addr, log: &bytes.Buffer{}}
	t.Cleanup(func() {
		if m.cmd != nil {
			m.cmd.Process.Kill()
			<-m.done
		}
		if t.Failed() {
			t.Logf("mosquitto output:\n%s", m.log)
		}
	})
	return m
}

func (m *mosquitto) url() string { return "tcp://" + m.addr }

// start runs the broker and waits until it accepts connections.
func (m *mosquitto) start() {
	m.t.Helper()
	m.cmd = exec.Command(m.bin, "-c", m.conf)
	m.cmd.Stdout, m.cmd.Stderr = m.log, m.log
	if err := m.cmd.Start(); err != nil {
		m.t.Fatalf("start mosquitto: %v", err)
	}
	m.done = make(chan error, 1)
	go func(cmd *exec.Cmd, done chan<- error) { done <- cmd.Wait() }(m.cmd, m.done)
	waitFor(m.t, 10*time.Second, "mosquitto to listen", func() bool {
		c, err := net.DialTimeout("tcp", m.addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

// stop ends the broker with SIGTERM, which makes it save its persistence
// file (SIGKILL would lose up to autosave_interval of its queue).
func (m *mosquitto) stop() {
	m.t.Helper()
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		m.t.Fatalf("SIGTERM mosquitto: %v", err)
	}
	select {
	case <-m.done:
	case <-time.After(15 * time.Second):
		m.t.Fatalf("mosquitto did not exit within 15s of SIGTERM")
	}
	m.cmd = nil
}

// reliablePublisher publishes QoS 1 messages and retries each until the
// broker acknowledges it, reconnecting as needed: duplicates, never gaps.
type reliablePublisher struct {
	t   testing.TB
	url string
	c   paho.Client
}

func (p *reliablePublisher) publish(topic string, payload []byte) {
	p.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		if p.c == nil || !p.c.IsConnectionOpen() {
			p.connect()
			if p.c == nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
		}
		tok := p.c.Publish(topic, 1, false, payload)
		if tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
			return
		}
		p.c.Disconnect(0)
		p.c = nil
	}
	p.t.Fatalf("publish %s: broker did not acknowledge within 30s", topic)
}

func (p *reliablePublisher) connect() {
	o := paho.NewClientOptions().AddBroker(p.url).SetClientID("e2e-publisher").
		SetCleanSession(true).SetAutoReconnect(false).SetConnectTimeout(2 * time.Second)
	c := paho.NewClient(o)
	if tok := c.Connect(); tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
		p.c = c
		return
	}
	c.Disconnect(0)
	p.c = nil
}

func (p *reliablePublisher) close() {
	if p.c != nil {
		p.c.Disconnect(100)
		p.c = nil
	}
}

// TestMQTTMosquittoRestartLosesNothing publishes a numbered QoS 1 stream
// through Debian's mosquitto, restarts the broker in the middle (SIGTERM,
// same port and persistence), and proves that every number reaches the
// ring log.
func TestMQTTMosquittoRestartLosesNothing(t *testing.T) {
	const total = 3000
	mq := newMosquitto(t)
	mq.start()
	l := openLog(t, 20*time.Millisecond)
	m, stop := runMQTT(t, testConfig(mq.url(), "eddy-e2e", "e2e/#"), l)
	waitConnected(t, m, 1)

	pub := &reliablePublisher{t: t, url: mq.url()}
	defer pub.close()
	for i := range total {
		if i == total/2 {
			pub.close()
			mq.stop()
			mq.start()
		}
		pub.publish("e2e/seq", []byte(fmt.Sprintf(`{"n":%d}`, i)))
	}
	pub.close()

	seen := make([]bool, total)
	missing := total
	var after uint64
	deadline := time.Now().Add(60 * time.Second)
	for missing > 0 && time.Now().Before(deadline) {
		recs, err := l.ReadAfter(nil, after, 1000)
		if err != nil {
			t.Fatalf("ReadAfter: %v", err)
		}
		if len(recs) == 0 {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		for _, r := range recs {
			var v struct{ N int }
			if err := json.Unmarshal(r.Value, &v); err != nil || v.N < 0 || v.N >= total {
				t.Fatalf("unexpected record %s %q", r.Topic, r.Value)
			}
			if !seen[v.N] {
				seen[v.N] = true
				missing--
			}
		}
		after = recs[len(recs)-1].Seq
	}
	if missing > 0 {
		var lost []int
		for i, ok := range seen {
			if !ok && len(lost) < 20 {
				lost = append(lost, i)
			}
		}
		t.Fatalf("%d of %d messages never reached the log (first: %v); stats %+v", missing, total, lost, m.Stats())
	}
	s := m.Stats()
	if s.Connects < 2 {
		t.Errorf("Connects = %d: the broker restart was not noticed", s.Connects)
	}
	stop()
	t.Logf("stats after %d messages and a broker restart: %+v", total, m.Stats())
}

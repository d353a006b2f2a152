package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/eddy-iot/eddy/ringlog"
)

// These tests build the real binary and use it as a technician would:
// eddy run with a config on loopback ports, Debian's mosquitto as the
// broker, eddy tail over HTTP/2 and HTTP/3 as the subscriber.

var eddyBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "eddy-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	eddyBin = filepath.Join(dir, "eddy")
	build := exec.Command("go", "build", "-o", eddyBin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building eddy:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const e2eToken = "e2e-token-0123456789abcdef"

// freePort returns a port free on 127.0.0.1 for both TCP and UDP.
func freePort(t *testing.T) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no port free for both TCP and UDP")
	return 0
}

// daemon is one eddy run process.
type daemonProc struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	done   chan error
}

func startEddy(t *testing.T, args ...string) *daemonProc {
	t.Helper()
	cmd := exec.Command(eddyBin, append([]string{"run"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &syncWriter{w: &stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemonProc{cmd: cmd, stderr: &stderr, done: make(chan error, 1)}
	go func() { d.done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-d.done
		if t.Failed() {
			t.Logf("eddy stderr:\n%s", stderr.String())
		}
	})
	return d
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// httpsClient trusts the device CA under dataDir.
func httpsClient(t *testing.T, dataDir string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(dataDir, "tls", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
}

// waitHealthy polls /healthz until it answers 200.
func waitHealthy(t *testing.T, d *daemonProc, base, dataDir string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-d.done:
			d.done <- err
			t.Fatalf("eddy exited before it was healthy: %v\n%s", err, d.stderr.String())
		default:
		}
		if _, err := os.Stat(filepath.Join(dataDir, "tls", "ca.pem")); err == nil {
			resp, err := httpsClient(t, dataDir).Get(base + "/healthz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("eddy not healthy within 30 s:\n%s", d.stderr.String())
}

// startMosquitto runs Debian's mosquitto by hand with persistence on.
func startMosquitto(t *testing.T, port int, dir string) *exec.Cmd {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = "/usr/sbin/mosquitto"
		if _, err := os.Stat(bin); err != nil {
			t.Fatal("mosquitto not found: run `make deps` (apt-get install mosquitto)")
		}
	}
	conf := filepath.Join(dir, "mosquitto.conf")
	cfg := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\nmax_queued_messages 0\n", port, dir)
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return cmd
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("mosquitto did not start")
	return nil
}

// tailProc is one eddy tail process with its stdout collected.
type tailProc struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []tailLine
	done  chan struct{}
}

type tailLine struct {
	Seq   uint64          `json:"seq"`
	Topic string          `json:"topic"`
	Value json.RawMessage `json:"value"`
}

func startTail(t *testing.T, args ...string) *tailProc {
	t.Helper()
	cmd := exec.Command(eddyBin, append([]string{"tail"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &syncWriter{w: &stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tp := &tailProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(tp.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var l tailLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Errorf("tail printed a line that is not JSON: %q", sc.Text())
				continue
			}
			tp.mu.Lock()
			tp.lines = append(tp.lines, l)
			tp.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() || testing.Verbose() {
			t.Logf("tail %v stderr:\n%s", args, stderr.String())
		}
	})
	return tp
}

func (tp *tailProc) snapshot() []tailLine {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return append([]tailLine(nil), tp.lines...)
}

func (tp *tailProc) stop(t *testing.T) []tailLine {
	t.Helper()
	tp.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-tp.done:
	case <-time.After(10 * time.Second):
		t.Fatal("eddy tail did not stop on SIGINT")
	}
	return tp.snapshot()
}

func writeConfig(t *testing.T, dir string, port, brokerPort int) string {
	t.Helper()
	cfg := fmt.Sprintf(`
[server]
listen = "127.0.0.1:%d"
http3 = true

[storage]
dir = %q
sync_interval = "50ms"

[auth]
tokens = [%q]

[stream]
heartbeat = "1s"

[[mqtt]]
broker = "tcp://127.0.0.1:%d"
topics = ["e2e/#"]
qos = 1
client_id = "eddy-e2e"
`, port, filepath.Join(dir, "data"), e2eToken, brokerPort)
	path := filepath.Join(dir, "eddy.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestE2EKillRestartTail publishes a numbered QoS 1 stream through
// mosquitto into eddy, SIGKILLs eddy mid-stream and restarts it, and
// proves that eddy tail over HTTP/2 and over HTTP/3 ends up with every
// durable record exactly once, in order, and that no message is lost.
func TestE2EKillRestartTail(t *testing.T) {
	dir := t.TempDir()
	port, brokerPort := freePort(t), freePort(t)
	startMosquitto(t, brokerPort, t.TempDir())
	cfgPath := writeConfig(t, dir, port, brokerPort)
	dataDir := filepath.Join(dir, "data")
	base := fmt.Sprintf("https://127.0.0.1:%d", port)

	t0 := time.Now()
	d := startEddy(t, "--config", cfgPath)
	waitHealthy(t, d, base, dataDir)
	t.Logf("healthy after %s", time.Since(t0).Round(time.Millisecond))
	ca := filepath.Join(dataDir, "tls", "ca.pem")
	h2 := startTail(t, base, "--ca", ca, "--token", e2eToken, "--topic", "e2e/#", "--max-backoff", "500ms")
	h3 := startTail(t, base, "--http3", "--ca", ca, "--token", e2eToken, "--topic", "e2e/#", "--max-backoff", "500ms")

	// Publish only once both tails are subscribed: a tail without
	// --last-event-id starts live.
	client := httpsClient(t, dataDir)
	mqttUp := fmt.Sprintf(`eddy_mqtt_connected{broker="tcp://127.0.0.1:%d",client_id="eddy-e2e"}`, brokerPort)
	waitUntil(t, 30*time.Second, "eddy subscribed at the broker", func() bool { return metricValue(client, base, mqttUp) == 1 })
	waitUntil(t, 30*time.Second, "both tails connected", func() bool {
		return metricValue(client, base, `eddy_stream_clients_by_kind{mode="exact",proto="h2"}`) == 1 &&
			metricValue(client, base, `eddy_stream_clients_by_kind{mode="exact",proto="h3"}`) == 1 &&
			metricValue(client, base, "eddy_http3_connections") == 1
	})

	pub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(fmt.Sprintf("tcp://127.0.0.1:%d", brokerPort)).SetClientID("e2e-pub").SetAutoReconnect(true))
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publisher connect: %v", tok.Error())
	}
	defer pub.Disconnect(100)
	const total = 3000
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			tok := pub.Publish("e2e/counter", 1, false, fmt.Sprintf(`{"n":%d}`, i))
			if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatalf("publish %d: %v", i, tok.Error())
			}
			if i%10 == 0 {
				time.Sleep(5 * time.Millisecond) // about 2,000 messages/s
			}
		}
	}
	began := time.Now()
	publish(0, total/2)
	t.Logf("published %d in %s", total/2, time.Since(began).Round(time.Millisecond))
	// Kill eddy mid-stream, without warning, and start it again.
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.done
	d.done <- nil
	publish(total/2, total/2+200) // while eddy is down: the broker queues these
	d2 := startEddy(t, "--config", cfgPath)
	waitHealthy(t, d2, base, dataDir)
	publish(total/2+200, total)
	t.Logf("restarted and published the rest at %s", time.Since(began).Round(time.Millisecond))

	// Wait until every message number is in the log and both tails caught up.
	var lastSeq uint64
	waitUntil(t, 60*time.Second, "all messages stored", func() bool {
		var ok bool
		lastSeq, ok = allStored(t, client, base, total)
		return ok
	})
	t.Logf("all stored at %s", time.Since(began).Round(time.Millisecond))
	waitUntil(t, 60*time.Second, "tails caught up", func() bool {
		if os.Getenv("E2E_DEBUG") != "" {
			t.Logf("%s h2 %d h3 %d want %d", time.Since(began).Round(time.Millisecond), lastPrinted(h2), lastPrinted(h3), lastSeq)
		}
		return lastPrinted(h2) >= lastSeq && lastPrinted(h3) >= lastSeq
	})

	t.Logf("tails caught up at %s", time.Since(began).Round(time.Millisecond))
	// SIGTERM: exit 0 within 5 s.
	start := time.Now()
	d2.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d2.done:
		if err != nil {
			t.Errorf("eddy exited with %v on SIGTERM, want status 0", err)
		}
		d2.done <- err
	case <-time.After(5 * time.Second):
		t.Fatalf("eddy did not exit within 5 s of SIGTERM")
	}
	t.Logf("SIGTERM to exit: %s", time.Since(start).Round(time.Millisecond))

	durable := durableRecords(t, dataDir)
	for name, tp := range map[string]*tailProc{"h2": h2, "h3": h3} {
		checkTail(t, name, tp.stop(t), durable)
	}
	resumeAfterCleanRestart(t, cfgPath, base, dataDir, pub, lastSeq)
}

// resumeAfterCleanRestart starts eddy again after a clean stop and checks
// what a collector sees: a resume from the last id stays open while
// nothing is new (several heartbeats), and the next record continues the
// numbering with no hole.
func resumeAfterCleanRestart(t *testing.T, cfgPath, base, dataDir string, pub mqtt.Client, lastSeq uint64) {
	d := startEddy(t, "--config", cfgPath)
	waitHealthy(t, d, base, dataDir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/events?mode=exact&topic=e2e/%23", nil)
	req.Header.Set("Authorization", "Bearer "+e2eToken)
	req.Header.Set("Last-Event-ID", strconv.FormatUint(lastSeq, 10))
	tr := &http.Transport{TLSClientConfig: httpsClient(t, dataDir).Transport.(*http.Transport).TLSClientConfig, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	quiet := time.After(3 * time.Second) // three heartbeats
	for waiting := true; waiting; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("after a clean restart, a resume from the last id ended while the log was quiet")
			}
			if strings.HasPrefix(l, "id:") {
				t.Fatalf("resume from %d after a clean restart got %q before anything was published", lastSeq, l)
			}
		case <-quiet:
			waiting = false
		}
	}
	if tok := pub.Publish("e2e/after", 1, false, "1"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	for l := range lines {
		if strings.HasPrefix(l, "id:") {
			if got := strings.TrimSpace(strings.TrimPrefix(l, "id:")); got != strconv.FormatUint(lastSeq+1, 10) {
				t.Errorf("after a clean restart the next id is %s, want %d (no hole)", got, lastSeq+1)
			}
			return
		}
	}
	t.Fatal("the stream ended before the new record arrived")
}

func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// allStored asks /api/history whether message numbers 0..total-1 are all
// in the log, and returns the newest seq.
func allStored(t *testing.T, client *http.Client, base string, total int) (uint64, bool) {
	req, _ := http.NewRequest(http.MethodGet, base+"/api/history?topic=e2e/%23&limit=100000", nil)
	req.Header.Set("Authorization", "Bearer "+e2eToken)
	resp, err := client.Do(req)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	var recs []tailLine
	if err := json.NewDecoder(resp.Body).Decode(&recs); err != nil {
		return 0, false
	}
	seen := map[int]bool{}
	for _, r := range recs {
		var v struct{ N int }
		if json.Unmarshal(r.Value, &v) == nil {
			seen[v.N] = true
		}
	}
	if len(recs) == 0 {
		return 0, false
	}
	return recs[len(recs)-1].Seq, len(seen) == total
}

// metricValue reads one unlabelled metric from /metrics (-1 if absent).
func metricValue(client *http.Client, base, name string) float64 {
	req, _ := http.NewRequest(http.MethodGet, base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+e2eToken)
	resp, err := client.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

func lastPrinted(tp *tailProc) uint64 {
	l := tp.snapshot()
	if len(l) == 0 {
		return 0
	}
	return l[len(l)-1].Seq
}

// durableRecords reads the stopped daemon's ring log directly.
func durableRecords(t *testing.T, dataDir string) []ringlog.Record {
	t.Helper()
	l, err := ringlog.Open(dataDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var out []ringlog.Record
	after := uint64(0)
	for {
		recs, err := l.ReadAfter(nil, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return out
		}
		out = append(out, recs...)
		after = recs[len(recs)-1].Seq
	}
}

// checkTail: ids strictly increasing (nothing printed twice), and every
// durable e2e record printed exactly once.
func checkTail(t *testing.T, name string, lines []tailLine, durable []ringlog.Record) {
	t.Helper()
	printed := map[uint64]bool{}
	for i, l := range lines {
		if i > 0 && l.Seq <= lines[i-1].Seq {
			t.Fatalf("%s: seq %d printed after %d", name, l.Seq, lines[i-1].Seq)
		}
		printed[l.Seq] = true
	}
	n := 0
	for _, r := range durable {
		if !strings.HasPrefix(r.Topic, "e2e/") {
			continue
		}
		n++
		if !printed[r.Seq] {
			t.Fatalf("%s: durable record %d (%s) never printed", name, r.Seq, r.Value)
		}
	}
	t.Logf("%s: printed %d records; %d durable e2e records, each printed exactly once", name, len(lines), n)
}

// TestE2ENoConfig: the file-less defaults serve /healthz and system readings.
func TestE2ENoConfig(t *testing.T) {
	if _, err := os.Stat("/etc/eddy/eddy.toml"); err == nil {
		t.Fatal("/etc/eddy/eddy.toml exists on this machine: this test needs the embedded defaults")
	}
	dir := t.TempDir()
	port := freePort(t)
	base := fmt.Sprintf("https://127.0.0.1:%d", port)
	d := startEddy(t, "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--data", dir)
	waitHealthy(t, d, base, dir)
	token, err := os.ReadFile(filepath.Join(dir, "token"))
	if err != nil {
		t.Fatalf("no generated token: %v", err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "token")); fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	client := httpsClient(t, dir)
	waitUntil(t, 10*time.Second, "system readings in /api/series", func() bool {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, base+"/api/series", nil)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == 200 && bytes.Contains(body, []byte(`"system/load1"`))
	})
	// Unauthenticated requests are refused.
	resp, err := client.Get(base + "/api/series")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/api/series without a token: %d, want 401", resp.StatusCode)
	}
	d.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-d.done:
		d.done <- err
		if err != nil {
			t.Errorf("exit on SIGINT: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no exit within 5 s of SIGINT")
	}
}

// TestE2EBadConfig: the real binary exits 2 naming the file, line and key.
func TestE2EBadConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "eddy.toml")
	if err := os.WriteFile(path, []byte("[storage]\nmax_bytes = \"lots\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(eddyBin, "run", "--config", path).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("exit %v, want status 2; output %s", err, out)
	}
	if want := "eddy.toml:2: storage.max_bytes"; !strings.Contains(string(out), want) {
		t.Errorf("output %q does not name %q", out, want)
	}
}

// TestE2ESystemdNotify runs eddy as systemd would (NOTIFY_SOCKET,
// WATCHDOG_USEC) and reads what it reports: READY=1 once listening,
// WATCHDOG=1 while healthy, STOPPING=1 on SIGTERM.
func TestE2ESystemdNotify(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgs := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	port := freePort(t)
	cmd := exec.Command(eddyBin, "run", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--data", filepath.Join(dir, "data"))
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=400000")
	var stderr bytes.Buffer
	cmd.Stderr = &syncWriter{w: &stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	expect := func(want string) time.Time {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case m := <-msgs:
				if strings.Contains(m, want) {
					return time.Now()
				}
			case <-deadline:
				t.Fatalf("no %s from eddy; stderr:\n%s", want, stderr.String())
			}
		}
	}
	expect("READY=1")
	// READY comes after the listeners are bound: /healthz answers now.
	resp, err := httpsClient(t, filepath.Join(dir, "data")).Get(fmt.Sprintf("https://127.0.0.1:%d/healthz", port))
	if err != nil {
		t.Fatalf("READY before listening: %v", err)
	}
	resp.Body.Close()
	expect("WATCHDOG=1")
	expect("WATCHDOG=1")
	cmd.Process.Signal(syscall.SIGTERM)
	expect("STOPPING=1")
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
}

// TestE2EReloadTokens: SIGHUP swaps the tokens without dropping a stream.
func TestE2EReloadTokens(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	base := fmt.Sprintf("https://127.0.0.1:%d", port)
	dataDir := filepath.Join(dir, "data")
	cfgPath := filepath.Join(dir, "eddy.toml")
	write := func(token string) {
		cfg := fmt.Sprintf("[server]\nlisten = \"127.0.0.1:%d\"\n[storage]\ndir = %q\n[auth]\ntokens = [%q]\n[stream]\nheartbeat = \"200ms\"\n[[sensor]]\nkind = \"system\"\ninterval = \"100ms\"\n", port, dataDir, token)
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	oldTok, newTok := "old-token-0123456789abcdef", "new-token-0123456789abcdef"
	write(oldTok)
	d := startEddy(t, "--config", cfgPath)
	waitHealthy(t, d, base, dataDir)
	client := httpsClient(t, dataDir)
	status := func(tok string) int {
		req, _ := http.NewRequest(http.MethodGet, base+"/api/series", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// A stream opened with the old token stays up across the reload.
	tail := startTail(t, base, "--ca", filepath.Join(dataDir, "tls", "ca.pem"), "--token", oldTok, "--topic", "system/#")
	waitUntil(t, 20*time.Second, "the tail to print", func() bool { return len(tail.snapshot()) > 0 })
	write(newTok)
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, 10*time.Second, "the new token to work", func() bool { return status(newTok) == http.StatusOK })
	if s := status(oldTok); s != http.StatusUnauthorized {
		t.Errorf("old token after reload: %d, want 401", s)
	}
	n := len(tail.snapshot())
	waitUntil(t, 10*time.Second, "the open stream to keep delivering", func() bool { return len(tail.snapshot()) > n+5 })
}

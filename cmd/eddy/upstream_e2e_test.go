package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	devtls "github.com/eddy-iot/eddy/tls"
	"github.com/eddy-iot/eddy/upstream"
)

// startNATS runs a one-node JetStream server in the test, on loopback.
func startNATS(t *testing.T) string {
	t.Helper()
	o := &natsserver.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true, JetStream: true,
		StoreDir: t.TempDir(), SyncAlways: true}
	s, err := natsserver.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s.ClientURL()
}

// deviceSeqs reads every message of device from the stream: seqs per epoch.
func deviceSeqs(t *testing.T, url, device string) map[string][]uint64 {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "EDDY")
	if err != nil {
		return nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{upstream.DeviceFilter(device)}})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]uint64{}
	for {
		batch, err := cons.FetchNoWait(1000)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			seq, _ := strconv.ParseUint(m.Headers().Get(upstream.HdrSeq), 10, 64)
			out[m.Headers().Get(upstream.HdrEpoch)] = append(out[m.Headers().Get(upstream.HdrEpoch)], seq)
		}
		if n == 0 {
			return out
		}
	}
}

func countSeqs(m map[string][]uint64) int {
	n := 0
	for _, s := range m {
		n += len(s)
	}
	return n
}

// checkOnce fails when a seq of an epoch is stored twice or out of order.
func checkOnce(t *testing.T, what string, m map[string][]uint64) {
	t.Helper()
	for ep, seqs := range m {
		for i := 1; i < len(seqs); i++ {
			if seqs[i] <= seqs[i-1] {
				t.Errorf("%s epoch %s: seq %d after %d", what, ep, seqs[i], seqs[i-1])
			}
		}
	}
}

// TestE2EUpstream: the real eddy run pushes its ring log ([upstream]),
// is SIGKILLed and restarted, and the real eddy collect follows the same
// device over HTTP/3 into the same stream; every record is stored once
// per way in, and the collector serves /metrics and /healthz.
func TestE2EUpstream(t *testing.T) {
	natsURL := startNATS(t)
	port := freePort(t)
	dataDir := t.TempDir()
	cfgPath := filepath.Join(t.TempDir(), "eddy.toml")
	cfg := fmt.Sprintf(`[server]
listen = "127.0.0.1:%d"
[storage]
dir = %q
sync_interval = "50ms"
[auth]
tokens = [%q]
[[sensor]]
kind = "system"
interval = "100ms"
[upstream]
servers = [%q]
device = "e2e-push"
ack_timeout = "1s"
`, port, dataDir, e2eToken, natsURL)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("https://127.0.0.1:%d", port)
	d := startEddy(t, "--config", cfgPath)
	waitHealthy(t, d, base, dataDir)
	waitCount := func(device string, n int) map[string][]uint64 {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			m := deviceSeqs(t, natsURL, device)
			if countSeqs(m) >= n {
				return m
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d records in the stream after 30 s, want %d\n%s", device, countSeqs(m), n, d.stderr.String())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	first := countSeqs(waitCount("e2e-push", 20))

	// SIGKILL the device and start it again: push resumes from the stream.
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
	d.done <- nil
	d = startEddy(t, "--config", cfgPath)
	waitHealthy(t, d, base, dataDir)
	pushed := waitCount("e2e-push", first+20)
	checkOnce(t, "push", pushed)
	if len(pushed) != 1 {
		t.Errorf("push: %d epochs, want 1 (the same ring.db)", len(pushed))
	}
	// /api/status shows the push: connected and publishing.
	req, _ := http.NewRequest(http.MethodGet, base+"/api/status", nil)
	req.Header.Set("Authorization", "Bearer "+e2eToken)
	resp, err := httpsClient(t, dataDir).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Upstream map[string]any `json:"upstream"`
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || st.Upstream == nil {
		t.Errorf("/api/status has no upstream section: %v", err)
	}

	// eddy collect follows the same device over HTTP/3.
	certPEM, err := os.ReadFile(filepath.Join(dataDir, "tls", "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	fp, err := fingerprintOfPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	cport := freePort(t)
	collectPath := filepath.Join(t.TempDir(), "collect.toml")
	ccfg := fmt.Sprintf(`[collector]
listen = "127.0.0.1:%d"
lease_ttl = "2s"
[nats]
servers = [%q]
[[device]]
name = "e2e-pull"
url = %q
token = %q
fingerprint = %q
`, cport, natsURL, base, e2eToken, fp)
	if err := os.WriteFile(collectPath, []byte(ccfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(eddyBin, "check-config", collectPath).CombinedOutput(); err != nil {
		t.Fatalf("check-config collect.toml: %v\n%s", err, out)
	}
	col := exec.Command(eddyBin, "collect", "--config", collectPath)
	var cbuf bytes.Buffer
	col.Stderr = &syncWriter{w: &cbuf}
	if err := col.Start(); err != nil {
		t.Fatal(err)
	}
	colDone := make(chan error, 1)
	go func() { colDone <- col.Wait() }()
	defer func() {
		col.Process.Signal(syscall.SIGTERM)
		select {
		case <-colDone:
		case <-time.After(5 * time.Second):
			col.Process.Kill()
			<-colDone
		}
		if t.Failed() {
			t.Logf("eddy collect stderr:\n%s", cbuf.String())
		}
	}()
	pulled := waitCount("e2e-pull", 50)
	checkOnce(t, "pull", pulled)
	for ep := range pulled {
		if _, ok := pushed[ep]; !ok {
			t.Errorf("pull epoch %s is not push's (%v): /events does not name the ring log's epoch", ep, pushed)
		}
	}
	t.Logf("stream: push %d records (%d before the SIGKILL), pull %d, epochs %v", countSeqs(pushed), first, countSeqs(pulled), keys(pulled))
	for _, path := range []string{"/healthz", "/metrics"} {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", cport, path))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("collector %s: %s", path, resp.Status)
		}
	}
}

func fingerprintOfPEM(b []byte) (string, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return "", fmt.Errorf("no PEM block")
	}
	return devtls.Fingerprint(blk.Bytes), nil
}

func keys(m map[string][]uint64) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

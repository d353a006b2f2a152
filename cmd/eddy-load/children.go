package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	devtls "github.com/eddy-iot/eddy/tls"
)

// startMosquitto runs Debian's mosquitto on 127.0.0.1:port with
// persistence off and no queue limit (a slow QoS 1 subscriber is queued
// for, never dropped), and waits until it accepts connections.
// extra lines are appended to its config.
func startMosquitto(ctx context.Context, dir string, extra ...string) (*child, string, error) {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = "/usr/sbin/mosquitto"
		if _, err := os.Stat(bin); err != nil {
			return nil, "", fmt.Errorf("load: mosquitto not found: run `make deps` (apt-get install -y mosquitto)")
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	conf := []string{
		fmt.Sprintf("listener %d 127.0.0.1", port),
		"allow_anonymous true",
		"persistence false",
		"max_queued_messages 0",
		"log_dest stderr",
	}
	conf = append(conf, extra...)
	if os.Geteuid() == 0 {
		conf = append(conf, "user root") // else it drops to user mosquitto
	}
	path := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(path, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		return nil, "", fmt.Errorf("load: mosquitto config: %w", err)
	}
	c, err := startChild("mosquitto", filepath.Join(dir, "mosquitto.log"), bin, "-c", path)
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	err = waitFor(ctx, 10*time.Second, "mosquitto to listen", func() bool {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
		}
		return err == nil || c.exited() != nil
	})
	if err == nil {
		err = c.exited()
	}
	if err != nil {
		c.stop(5 * time.Second)
		return nil, "", err
	}
	return c, "tcp://" + addr, nil
}

// buildEddy builds cmd/eddy into dir with the go command, as `make build`
// does.
func buildEddy(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "eddy")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, "github.com/eddy-iot/eddy/cmd/eddy")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("load: build eddy: %w\n%s", err, b)
	}
	return out, nil
}

// loadToken is the bearer token the tool configures eddy with.
const loadToken = "eddy-load-token-0123456789abcdef"

// server is a server under test (eddy or the baseline) running as a child.
type server struct {
	*child
	base   string // https://127.0.0.1:port
	caFile string
}

// eddySpec is what the tool configures in an eddy under test; everything
// else keeps eddy's defaults.
type eddySpec struct {
	broker     string   // MQTT broker URL
	filter     string   // the one MQTT subscription
	qos        int      // its QoS
	maxStreams int      // server.max_streams_per_host: every client comes from 127.0.0.1
	debug      string   // eddy run --debug-listen, for profiling it during a run; "": none
	wrap       []string // command prefix eddy runs under (a cgroup), or nil
}

// eddyConfig is the config of an eddy under test.
func eddyConfig(port int, dataDir string, s eddySpec) string {
	return fmt.Sprintf(`[server]
listen = "127.0.0.1:%d"
http3 = true
max_streams_per_host = %d

[storage]
dir = %q

[auth]
tokens = [%q]

[[mqtt]]
broker = %q
topics = [%q]
qos = %d
client_id = "eddy-load"
`, port, s.maxStreams, dataDir, loadToken, s.broker, s.filter, s.qos)
}

// startEddy writes a config under dir and runs `eddy run` on it. NOFILE
// is inherited: run raised it.
func startEddy(ctx context.Context, bin, dir string, spec eddySpec) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dataDir := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "eddy.toml")
	if err := os.WriteFile(cfg, []byte(eddyConfig(port, dataDir, spec)), 0o600); err != nil {
		return nil, fmt.Errorf("load: eddy config: %w", err)
	}
	args := []string{"run", "--config", cfg}
	if spec.debug != "" {
		args = append(args, "--debug-listen", spec.debug)
	}
	c, err := startChild("eddy", filepath.Join(dir, "eddy.log"), append(append(slices.Clone(spec.wrap), bin), args...)...)
	if err != nil {
		return nil, err
	}
	s := &server{child: c, base: fmt.Sprintf("https://127.0.0.1:%d", port), caFile: filepath.Join(dataDir, "tls", "ca.pem")}
	if err := s.waitHealthy(ctx); err != nil {
		c.stop(5 * time.Second)
		return nil, err
	}
	return s, nil
}

// waitHealthy polls /healthz until it answers 200.
func (s *server) waitHealthy(ctx context.Context) error {
	err := waitFor(ctx, 30*time.Second, s.name+" /healthz", func() bool {
		if s.exited() != nil {
			return true
		}
		if _, err := os.Stat(s.caFile); err != nil {
			return false
		}
		c, err := s.httpClient()
		if err != nil {
			return false
		}
		defer c.CloseIdleConnections()
		resp, err := c.Get(s.base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if e := s.exited(); e != nil {
		return e
	}
	return err
}

// httpClient is a short-lived HTTP/2 client trusting the server's CA.
func (s *server) httpClient() (*http.Client, error) {
	tc, err := devtls.ClientConfig(devtls.ClientOptions{CAFile: s.caFile})
	if err != nil {
		return nil, fmt.Errorf("load: client TLS for %s: %w", s.name, err)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}}, nil
}

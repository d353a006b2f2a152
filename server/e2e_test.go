package server

import (
	"bufio"
	"context"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/ringlog"
)

// need returns the path of an external program a test requires, failing
// (not skipping) with how to install it.
func need(t *testing.T, prog string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		t.Fatalf("%s not found: run `make deps` (Debian: apt-get install -y %s)", prog, installHint[prog])
	}
	return p
}

var installHint = map[string]string{"curl": "curl", "node": "nodejs", "npm": "npm"}

func appendN(t *testing.T, l *ringlog.Log, n int) {
	t.Helper()
	for i := range n {
		appendRec(t, l, "e2e/"+strconv.Itoa(i%2), ringlog.KindJSON, strconv.Itoa(i), "V", time.Time{})
	}
}

// TestCurlHTTP2 reads the stream as a new user would: curl -N --http2,
// trusting the device CA, resuming from id 0, then a live record.
func TestCurlHTTP2(t *testing.T) {
	curl := need(t, "curl")
	e := startHubServer(t)
	appendN(t, e.log, 5)
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	cmd := exec.CommandContext(ctx, curl, "-sS", "-N", "--http2", "--include",
		"--cacert", e.dev.CAFile(),
		"-H", "Authorization: Bearer "+testToken,
		"-H", "Last-Event-ID: 0",
		e.url("/events?topic=e2e/%23"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); cmd.Wait() }()
	br := bufio.NewReader(out)
	status, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/2 200") {
		t.Fatalf("curl status line %q (%v); stderr: %s", status, err, stderr.String())
	}
	for { // the rest of the headers
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("curl headers: %v", err)
		}
		if strings.TrimSpace(line) == "" {
			break
		}
	}
	sr := &sseReader{br: br}
	for want := uint64(1); want <= 6; want++ {
		if want == 6 {
			appendN(t, e.log, 1) // live, after the replay
		}
		ev, err := sr.next()
		if err != nil {
			t.Fatalf("curl stream at id %d: %v; stderr: %s", want, err, stderr.String())
		}
		var r reading
		if ev.event != "reading" || ev.id != strconv.FormatUint(want, 10) || json.Unmarshal([]byte(ev.data), &r) != nil || r.Seq != want || r.Unit != "V" {
			t.Fatalf("event %d: %+v", want, ev)
		}
	}
}

// TestNodeEventSource reads the stream with the eventsource npm package,
// token in the query as a browser must, trusting the CA through
// NODE_EXTRA_CA_CERTS. `make deps` installs the package (npm ci): no test
// reaches a registry.
func TestNodeEventSource(t *testing.T) {
	node := need(t, "node")
	dir, _ := filepath.Abs(filepath.Join("testdata", "node"))
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "eventsource")); err != nil {
		t.Fatalf("the eventsource npm package is not installed in %s: run `make deps` (it runs npm ci there)", dir)
	}
	e := startHubServer(t)
	appendN(t, e.log, 4)
	run := func(query string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), guard)
		defer cancel()
		cmd := exec.CommandContext(ctx, node, "read-events.mjs", e.url("/events?"+query), "3")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "NODE_EXTRA_CA_CERTS="+e.dev.CAFile())
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return string(out), &exec.ExitError{Stderr: []byte(stderr.String())}
		}
		return string(out), nil
	}

	out, err := run("access_token=" + url.QueryEscape(testToken) + "&lastEventID=0")
	if err != nil {
		t.Fatalf("node eventsource: %v: %s\n%s", err, err.(*exec.ExitError).Stderr, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("node printed %d events, want 3:\n%s", len(lines), out)
	}
	for i, line := range lines {
		var ev struct {
			ID   string  `json:"id"`
			Data reading `json:"data"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("node line %q: %v", line, err)
		}
		want := uint64(i + 1)
		if ev.ID != strconv.FormatUint(want, 10) || ev.Data.Seq != want || !strings.HasPrefix(ev.Data.Topic, "e2e/") {
			t.Errorf("event %d: %+v", i, ev)
		}
	}
	if _, err := run("access_token=wrong&lastEventID=0"); err == nil {
		t.Fatal("node eventsource read events with a wrong token")
	} else if msg := string(err.(*exec.ExitError).Stderr); !strings.Contains(msg, "401") {
		t.Fatalf("wrong token: node said %q, want a 401", msg)
	}
}

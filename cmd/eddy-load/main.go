// Command eddy-load measures eddy end to end on one machine, loopback
// only: it starts the real eddy binary and Debian's mosquitto as child
// processes, drives them with MQTT publishers and SSE clients over HTTP/2
// and HTTP/3, reads the server's CPU and memory from /proc, and prints
// medians over several runs beside a baseline measured in the same run.
//
// Scenarios (-scenario):
//
//   - stream: 1,000 SSE clients following 100 topics at 100 and 1,000
//     records/s; deliveries/s, append-to-receive latency, drops, RSS per
//     client, server CPU per delivery; idle RSS per client at 5,000
//     clients. Baseline: a minimal net/http HTTP/2 SSE server writing
//     events it generates itself (this binary with -serve-baseline).
//   - ingest: MQTT -> eddy -> ring log -> one SSE client, at 1,000 msgs/s
//     and as fast as the broker goes. Baseline: a plain paho subscriber.
//   - upstream: push and pull into a 3-node JetStream cluster (upstream.go).
//     Baseline: raw async JetStream publishing from one Go client.
//
// Every wait has a deadline and every run is bounded in count and time.
// It is a measurement tool, not a test: run it with go run.
//
//   - hostile: issue 12's attack classes in turn (half-open TLS, QUIC
//     Initials, HTTP/2 rapid reset and CONTINUATION flood, HTTP/3 resets,
//     topic filters, full history scans, an MQTT burst) beside a legitimate HTTP/2 and HTTP/3
//     stream; per class eddy's peak and settled RSS, CPU, the legitimate
//     clients' p99 and longest gap, and what eddy refused. Baseline: the
//     "quiet" class of the same run. -memcap runs eddy in a memory cgroup.
//
//     go run ./cmd/eddy-load -scenario stream
//     go run ./cmd/eddy-load -scenario ingest
//     go run ./cmd/eddy-load -scenario hostile [-memcap 256] [-eddy OLD_BINARY]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// flags are the tool's command line.
type flags struct {
	scenario string
	eddy     string // eddy binary; empty: build cmd/eddy
	dir      string // work dir; empty: a temporary one, removed after
	runs     int
	cpuprof  string // write the tool's own CPU profile here
	out      io.Writer

	// stream scenario
	clients  int
	perConn  int
	topics   int
	rates    []int
	warmup   time.Duration
	window   time.Duration
	idle     int // idle clients for the memory figure; 0: skip
	baseline bool
	protos   []proto // eddy's client protocols, connection by connection
	inflight int     // mosquitto max_inflight_messages; 0: its default
	maxDrain time.Duration

	// ingest scenario
	ingestN     int // messages per run at the maximum rate
	ingestPaced int // messages per run at ingestRate
	ingestRate  int
	// mosquitto max_inflight_messages values to measure; 0: its default
	ingestInflight []int
	ingestQoS      int // eddy's subscription QoS

	// hostile scenario
	hostileFor time.Duration
	memcap     int64    // bytes; 0: no cgroup
	classes    []string // empty: all

	debugListen string // eddy run --debug-listen

	serveBaseline bool
	bl            baselineFlags
}

func parseFlags(args []string, stderr io.Writer) (flags, error) {
	f := flags{out: os.Stdout}
	fs := flag.NewFlagSet("eddy-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.scenario, "scenario", "stream", "stream, ingest, hostile, upstream or all (all: stream, ingest and upstream)")
	fs.DurationVar(&f.hostileFor, "hostile-for", 10*time.Second, "hostile: how long each attack class runs")
	memcap := fs.Int64("memcap", 0, "hostile: run eddy in a memory cgroup of this many MiB (0: none)")
	classes := fs.String("classes", "", "hostile: comma-separated classes to run (default: all)")
	fs.StringVar(&f.eddy, "eddy", "", "eddy binary to run (default: go build ./cmd/eddy)")
	fs.StringVar(&f.dir, "dir", "", "work directory, kept (default: a temporary one, removed)")
	fs.StringVar(&f.cpuprof, "cpuprofile", "", "write the load tool's own CPU profile to this file")
	fs.StringVar(&f.debugListen, "eddy-debug-listen", "", "run eddy with --debug-listen on this loopback address (pprof during a run)")
	fs.IntVar(&f.runs, "runs", 3, "measurement runs per figure (medians are reported)")
	fs.IntVar(&f.clients, "clients", 1000, "stream: SSE clients, half HTTP/2, half HTTP/3")
	fs.IntVar(&f.perConn, "per-conn", 50, "stream: SSE streams per connection")
	fs.IntVar(&f.topics, "topics", 100, "stream: topics published in turn")
	rates := fs.String("rates", "100,1000", "stream: records/s to publish, comma-separated")
	fs.DurationVar(&f.warmup, "warmup", 2*time.Second, "stream: publishing before each measured window")
	fs.DurationVar(&f.window, "window", 10*time.Second, "stream: measured window per run and rate")
	fs.IntVar(&f.idle, "idle-clients", 5000, "stream: idle clients for RSS per idle client (0: skip)")
	protos := fs.String("protos", "h2,h3", "stream: protocols of eddy's client connections, in turn (h2, h3)")
	fs.IntVar(&f.inflight, "stream-inflight", 0, "stream: mosquitto max_inflight_messages (0: mosquitto's default, 20)")
	fs.BoolVar(&f.baseline, "baseline", true, "stream: also measure the plain HTTP/2 SSE baseline")
	fs.DurationVar(&f.maxDrain, "max-drain", 30*time.Second, "stream: longest wait for clients to catch up after a window")
	fs.IntVar(&f.ingestN, "ingest-n", 20000, "ingest: messages per run at the maximum rate")
	fs.IntVar(&f.ingestPaced, "ingest-paced-n", 5000, "ingest: messages per run at -ingest-rate")
	fs.IntVar(&f.ingestRate, "ingest-rate", 1000, "ingest: paced rate, messages/s")
	inflight := fs.String("ingest-inflight", "0,1000", "ingest: mosquitto max_inflight_messages values, comma-separated (0: mosquitto's default, 20)")
	fs.IntVar(&f.ingestQoS, "ingest-qos", 1, "ingest: QoS of eddy's subscription (0, 1 or 2)")
	fs.BoolVar(&f.serveBaseline, "serve-baseline", false, "internal: run as the baseline server")
	fs.StringVar(&f.bl.listen, "listen", "", "internal (-serve-baseline): address")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	f.memcap = *memcap << 20
	if *classes != "" {
		f.classes = strings.Split(*classes, ",")
	}
	var err error
	if f.rates, err = intList("-rates", *rates, 1); err != nil {
		return f, err
	}
	for _, p := range strings.Split(*protos, ",") {
		if p != string(protoH2) && p != string(protoH3) {
			return f, fmt.Errorf("-protos: %q: want h2 or h3", p)
		}
		f.protos = append(f.protos, proto(p))
	}
	if f.ingestInflight, err = intList("-ingest-inflight", *inflight, 0); err != nil {
		return f, err
	}
	switch {
	case f.runs < 1 || f.runs > 20:
		return f, errors.New("-runs: want 1 to 20")
	case f.clients < 1 || f.perConn < 1 || f.topics < 1:
		return f, errors.New("-clients, -per-conn and -topics must be positive")
	case f.window < time.Second || f.window > 5*time.Minute:
		return f, errors.New("-window: want 1s to 5m")
	case f.ingestQoS < 0 || f.ingestQoS > 2:
		return f, errors.New("-ingest-qos: want 0, 1 or 2")
	case f.scenario != "stream" && f.scenario != "ingest" && f.scenario != "hostile" && f.scenario != "upstream" && f.scenario != "all":
		return f, fmt.Errorf("-scenario %q: want stream, ingest, hostile, upstream or all", f.scenario)
	case f.hostileFor < time.Second || f.hostileFor > time.Minute:
		return f, errors.New("-hostile-for: want 1s to 1m")
	}
	return f, nil
}

// wantClass reports whether the hostile class name was asked for.
func (f flags) wantClass(name string) bool {
	return len(f.classes) == 0 || name == "quiet" || slices.Contains(f.classes, name)
}

// intList parses comma-separated integers of at least least.
func intList(name, s string, least int) ([]int, error) {
	var out []int
	for _, r := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil || n < least {
			return nil, fmt.Errorf("%s: %q is not a number of at least %d", name, r, least)
		}
		out = append(out, n)
	}
	return out, nil
}

func main() {
	f, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if f.serveBaseline {
		f.bl.dir = f.dir
		err = serveBaseline(ctx, f.bl, logger)
	} else {
		err = run(ctx, f, logger)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "eddy-load:", err)
		os.Exit(1)
	}
}

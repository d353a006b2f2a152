package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/eddy-iot/eddy/config"
	devtls "github.com/eddy-iot/eddy/tls"
	"github.com/eddy-iot/eddy/upstream"
)

const collectNotes = `
Follows every [[device]] of FILE (a collect.toml: see docs/upstream.md)
over HTTP/3, HTTP/2 when QUIC does not get through, and publishes its
records into NATS JetStream, each exactly once. Several collectors with
the same FILE share the devices through leases. SIGHUP re-reads the
device list; /metrics and /healthz are served on [collector] listen.`

// collectCmd is `eddy collect --config FILE`: the fleet collector.
func collectCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("collect", stderr)
	path := fs.String("config", "/etc/eddy/collect.toml", "collect.toml")
	debug := fs.String("debug-listen", "", "serve Go's pprof profiles on this `ADDR` (plain HTTP, no auth: use loopback)")
	pos, err := parseFlags(fs, "collect", collectNotes, args, stdout, stderr)
	if err != nil {
		return flagsExit(err)
	}
	if len(pos) > 0 {
		return usageError(stderr, "collect", fmt.Sprintf("unexpected argument %q", pos[0]))
	}
	cfg, devices, err := loadCollect(*path)
	if err != nil {
		fmt.Fprintln(stderr, "eddy:", err)
		return exitConfig
	}
	logger := newLogger(stderr)
	if *debug != "" {
		stopDebug, err := serveDebug(*debug, logger)
		if err != nil {
			fmt.Fprintln(stderr, "eddy:", err)
			return exitConfig
		}
		defer stopDebug()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if err := collect(ctx, cfg, devices, logger, hup, func() ([]upstream.Device, error) {
		_, d, err := loadCollect(*path)
		return d, err
	}); err != nil {
		logger.Error("eddy collect stopped", "err", err)
		if errors.As(err, new(configError)) {
			return exitConfig
		}
		return exitFail
	}
	return exitOK
}

// loadCollect reads collect.toml and builds each device's trust.
func loadCollect(path string) (*config.Collect, []upstream.Device, error) {
	cfg, err := config.LoadCollect(path)
	if err != nil {
		return nil, nil, err
	}
	devices := make([]upstream.Device, 0, len(cfg.Devices))
	for i, d := range cfg.Devices {
		tc, err := devtls.ClientConfig(devtls.ClientOptions{CAFile: d.CAFile, Fingerprint: d.Fingerprint})
		if err != nil {
			return nil, nil, &config.Error{File: path, Key: fmt.Sprintf("device[%d]", i), Msg: err.Error()}
		}
		devices = append(devices, upstream.Device{Name: d.Name, URL: d.URL, Token: d.Token, TLS: tc,
			TrustKey: d.CAFile + "|" + d.Fingerprint, Topics: d.Topics})
	}
	return cfg, devices, nil
}

// collect runs the collector and its HTTP endpoint until ctx ends;
// SIGHUP re-reads the device list.
func collect(ctx context.Context, cfg *config.Collect, devices []upstream.Device, logger *slog.Logger,
	hup <-chan os.Signal, reload func() ([]upstream.Device, error)) error {
	ln, err := net.Listen("tcp", cfg.Collector.Listen)
	if err != nil {
		return configError{fmt.Errorf("collector.listen: %w", err)}
	}
	conn, err := upstream.Connect(natsOptions(cfg.NATS, "eddy collect "+cfg.Collector.ID, logger.With("component", "upstream")))
	if err != nil {
		ln.Close()
		return err
	}
	defer conn.Close()
	var m *upstream.Metrics
	col, err := upstream.NewCollector(conn, devices, upstream.CollectorOptions{
		ID: cfg.Collector.ID, Bucket: cfg.Collector.LeaseBucket, LeaseTTL: cfg.Collector.LeaseTTL.Duration,
		Idle: cfg.Collector.Idle.Duration, ParkAfter: parkAfter(cfg.Collector.ParkAfter.Duration), Logger: logger.With("component", "collect"),
		OnAck: func(_ string, seq uint64, ts time.Time, d time.Duration) { m.Observe(seq, ts, d) },
	})
	if err != nil {
		ln.Close()
		return configError{err}
	}
	m = upstream.NewMetrics(conn, col.Status, col.LeasesHeld)
	reg := prometheus.NewRegistry()
	reg.MustRegister(m, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := col.Healthy(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Serve(ln) }()
	logger.Info("eddy collect listening", "addr", ln.Addr().String(), "devices", len(devices), "id", cfg.Collector.ID,
		"nats", cfg.NATS.Servers, "stream", cfg.NATS.Stream)

	colCtx, stopCol := context.WithCancel(context.Background())
	colDone := make(chan error, 1)
	go func() { colDone <- col.Run(colCtx) }()
	notifyReady(logger)
	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-hup:
			d, err := reload()
			if err != nil {
				logger.Error("reload refused; keeping the running device list", "err", err)
				continue
			}
			if err := col.SetDevices(d); err != nil {
				logger.Error("reload refused; keeping the running device list", "err", err)
				continue
			}
			logger.Info("device list reloaded (nats and collector settings need a restart)", "devices", len(d))
		case err := <-colDone:
			runErr = err
			colDone <- err
			break loop
		case err := <-srvDone:
			runErr = fmt.Errorf("collector endpoint: %w", err)
			break loop
		}
	}
	notifyStopping()
	stopCol() // releases the leases: another collector takes the devices at once
	if err := <-colDone; err != nil && runErr == nil {
		runErr = err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return runErr
}

// parkAfter maps park_after's "0s: never" onto the collector's negative.
func parkAfter(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/quic-go/quic-go"

	"github.com/eddy-iot/eddy/config"
	"github.com/eddy-iot/eddy/metrics"
	"github.com/eddy-iot/eddy/ringlog"
	"github.com/eddy-iot/eddy/server"
	"github.com/eddy-iot/eddy/sse"
	devtls "github.com/eddy-iot/eddy/tls"
)

// shutdownGrace bounds a graceful stop: DESIGN.md promises exit within 5 s.
const shutdownGrace = 4 * time.Second

func runCmd(args []string, stdout, stderr io.Writer) int {
	f, err := parseRunFlags(args, stdout, stderr)
	if err != nil {
		return flagsExit(err)
	}
	cfg, path, err := loadConfig(f)
	if err != nil {
		printConfigError(stderr, "run", err)
		return exitConfig
	}
	logger := newLogger(stderr)
	if path == "" {
		logger.Info("no config file; running on embedded defaults", "default_path", config.DefaultPath)
	} else {
		logger.Info("config loaded", "path", path)
	}
	warnNothingRecorded(cfg, path, logger)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := func() (*config.Config, error) { c, _, err := loadConfig(f); return c, err }
	if f.debug != "" {
		stopDebug, err := serveDebug(f.debug, logger)
		if err != nil {
			fmt.Fprintln(stderr, "eddy:", err)
			return exitConfig
		}
		defer stopDebug()
	}
	if err := run(ctx, cfg, logger, hup, reload); err != nil {
		logger.Error("eddy stopped", "err", err)
		if errors.As(err, new(configError)) {
			return exitConfig
		}
		return exitFail
	}
	return exitOK
}

// warnNothingRecorded warns when the config has neither sensors nor MQTT:
// legal (a device may only serve what its log holds), but more often a
// config that forgot its [[sensor]] or [[mqtt]] blocks.
func warnNothingRecorded(cfg *config.Config, path string, logger *slog.Logger) {
	if len(cfg.Sensors) > 0 || len(cfg.MQTT) > 0 {
		return
	}
	logger.Warn("the config has no [[sensor]] and no [[mqtt]] block: nothing will be recorded; "+
		"add `[[sensor]] kind = \"system\"` or an [[mqtt]] block (see docs/config.md)", "path", path)
}

// configError marks a start-up failure caused by the configuration.
type configError struct{ error }

func (e configError) Unwrap() error { return e.error }

// newLogger logs text on a terminal and JSON otherwise (journald, files).
func newLogger(w io.Writer) *slog.Logger {
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			return slog.New(slog.NewTextHandler(w, nil))
		}
	}
	return slog.New(slog.NewJSONHandler(w, nil))
}

// daemon is the running parts of eddy, built in order by run and shut
// down in reverse.
type daemon struct {
	cfg    *config.Config
	logger *slog.Logger
	log    *ringlog.Log
	hub    *sse.Hub
	srv    *server.Server
	ingest *ingestGroup
	dev    *devtls.Device
	health *healthCheck
	push   *pushRunner // nil without [upstream]
}

// run builds the parts, serves until ctx ends, and shuts down in reverse
// order: stop accepting, end streams with a jittered retry, stop ingest,
// flush the ring log.
func run(ctx context.Context, cfg *config.Config, logger *slog.Logger, hup <-chan os.Signal, reload func() (*config.Config, error)) error {
	d := &daemon{cfg: cfg, logger: logger}
	if os.Getenv("GOMEMLIMIT") == "" { // an operator's GOMEMLIMIT wins
		debug.SetMemoryLimit(int64(cfg.Server.MemoryLimit))
	}
	reg := metrics.Registry()
	var err error
	d.log, err = ringlog.Open(cfg.Storage.Dir, &ringlog.Options{
		MaxBytes:     int64(cfg.Storage.MaxBytes),
		MaxAge:       cfg.Storage.MaxAge.Duration,
		SyncInterval: cfg.Storage.SyncInterval.Duration,
		Logger:       logger.With("component", "ringlog"),
		OnCommit:     metrics.CommitObserver(reg),
	})
	if err != nil {
		return err
	}
	defer d.closeLog()
	metrics.RegisterLog(reg, d.log)
	logger.Info("ring log open", "path", d.log.Path(), "last_seq", d.log.LastSeq(), "records", d.log.Stats().Records)

	dev, err := devtls.Load(devtls.Options{Dir: cfg.Storage.Dir, CertFile: cfg.TLS.Cert, KeyFile: cfg.TLS.Key,
		ClientCAFile: cfg.TLS.ClientCA, Logger: logger.With("component", "tls")})
	if err != nil {
		return err
	}
	d.dev = dev
	tokens, err := accessTokens(cfg, logger)
	if err != nil {
		return err
	}

	hubMetrics := &sse.Metrics{}
	d.hub = sse.NewHub(d.log, sse.Options{
		ClientBuffer: cfg.Stream.ClientBuffer,
		Heartbeat:    cfg.Stream.Heartbeat.Duration,
		WriteTimeout: cfg.Stream.WriteTimeout.Duration,
		Logger:       logger.With("component", "sse"),
		Metrics:      hubMetrics,
		ObserveLag:   metrics.LagObserver(reg),
	})
	metrics.RegisterHub(reg, d.hub, hubMetrics)
	hubCtx, stopHub := context.WithCancel(context.Background())
	hubDone := make(chan struct{})
	var hubErr error // set before hubDone closes
	go func() { defer close(hubDone); hubErr = d.hub.Run(hubCtx) }()
	defer func() { stopHub(); <-hubDone }()
	d.health = &healthCheck{
		writer:  d.log,
		hub:     d.hub,
		hubDone: hubDone,
		hubErr: func() error {
			if hubErr == nil {
				return errHubEnded
			}
			return hubErr
		},
		logErr: d.log.Err,
		now:    time.Now,
	}

	resetKey, sessionKey, err := deviceSecrets(dev)
	if err != nil {
		return err
	}
	d.srv, err = server.New(server.Options{
		Listen:            cfg.Server.Listen,
		HTTP3:             cfg.Server.HTTP3,
		TLS:               dev.ServerConfig(),
		Log:               d.log,
		Events:            withEpoch(d.log, d.hub),
		Tokens:            tokens,
		StatelessResetKey: resetKey,
		SessionKey:        sessionKey,
		MaxStreamsPerHost: cfg.Server.MaxStreamsPerHost,
		MemoryLimit:       int64(cfg.Server.MemoryLimit),
		Health:            d.health.ready,
		Version:           readBuildInfo().Version,
		Logger:            logger.With("component", "server"),
	})
	if err != nil {
		return err
	}
	metrics.RegisterQUIC(reg, d.srv.QUICStats)
	metrics.RegisterDefense(reg, d.srv.DefenseStats)
	d.srv.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	if err := d.srv.Start(); err != nil {
		return err
	}
	logger.Info("listening", "addr", d.srv.Addr().String(), "http3", cfg.Server.HTTP3,
		"url", "https://"+displayAddr(d.srv.Addr().String())+"/",
		"fingerprint", dev.Fingerprint(), "ca", dev.CAFile(), "token_file", tokenFile(cfg))

	if d.ingest, err = startIngest(cfg, d.log, reg, logger); err != nil {
		d.shutdown()
		return configError{err}
	}
	if cfg.Upstream.Enabled() {
		if d.push, err = startPush(cfg, d.log, reg, logger.With("component", "upstream")); err != nil {
			d.shutdown()
			return configError{err}
		}
	}
	addStatus(d.srv, hubMetrics, d.ingest)
	if d.push != nil {
		d.srv.AddStatus("upstream", func() any { return d.push.pusher.Status() })
	}
	notifyReady(logger)
	watchdogDone := startWatchdog(ctx, d.health.progress, logger)

	err = d.serve(ctx, hup, reload)
	notifyStopping()
	<-watchdogDone
	d.shutdown()
	return err
}

// serve waits for the end, handling SIGHUP reloads meanwhile.
func (d *daemon) serve(ctx context.Context, hup <-chan os.Signal, reload func() (*config.Config, error)) error {
	certTick := time.NewTicker(12 * time.Hour)
	defer certTick.Stop()
	for {
		select {
		case <-ctx.Done():
			d.logger.Info("shutting down")
			return nil
		case <-d.srv.Done():
			return fmt.Errorf("server stopped: %w", d.srv.Err())
		case <-hup:
			d.reload(reload)
			d.refreshCert()
		case <-certTick.C:
			d.refreshCert()
		}
	}
}

// deviceSecrets derives from the device key the secrets that must survive
// a restart: the QUIC stateless-reset key (so HTTP/3 clients of the
// previous run reconnect at once) and the session-cookie key (so a
// restart does not log dashboards out).
func deviceSecrets(dev *devtls.Device) (*quic.StatelessResetKey, []byte, error) {
	rk, err := dev.Secret("quic stateless reset", len(quic.StatelessResetKey{}))
	if err != nil {
		return nil, nil, err
	}
	sk, err := dev.Secret("session cookie", 32)
	if err != nil {
		return nil, nil, err
	}
	key := quic.StatelessResetKey(rk)
	return &key, sk, nil
}

// refreshCert renews the generated leaf certificate when the addresses
// changed or it nears expiry; running servers pick it up at once.
func (d *daemon) refreshCert() {
	renewed, err := d.dev.Refresh()
	if err != nil {
		d.logger.Error("renewing the device certificate", "err", err)
	} else if renewed {
		d.logger.Info("device certificate renewed", "fingerprint", d.dev.Fingerprint())
	}
}

// shutdown stops accepting, ends streams with a jittered retry hint, stops
// ingest, and leaves the log to be flushed by the deferred close.
func (d *daemon) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := d.hub.Shutdown(ctx); err != nil {
			d.logger.Warn("ending streams", "err", err)
		}
	}()
	if err := d.srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		d.logger.Warn("stopping server", "err", err)
	}
	<-done
	if d.ingest != nil {
		d.ingest.stop()
	}
	d.push.stop()
}

func (d *daemon) closeLog() {
	if err := d.log.Close(); err != nil {
		d.logger.Error("closing ring log", "err", err)
		return
	}
	d.logger.Info("ring log flushed", "durable_seq", d.log.Stats().DurableSeq)
}

// accessTokens are the configured tokens, or the generated one when
// neither tokens nor a client CA are configured.
func accessTokens(cfg *config.Config, logger *slog.Logger) ([]string, error) {
	if len(cfg.Auth.Tokens) > 0 || cfg.TLS.ClientCA != "" {
		return cfg.Auth.Tokens, nil
	}
	tok, err := server.LoadOrCreateToken(cfg.Storage.Dir)
	if err != nil {
		return nil, err
	}
	logger.Info("access token generated or loaded; print it with `eddy token`", "file", tokenFile(cfg))
	return []string{tok}, nil
}

func tokenFile(cfg *config.Config) string {
	if len(cfg.Auth.Tokens) > 0 {
		return ""
	}
	return filepath.Join(cfg.Storage.Dir, server.TokenFileName)
}

// displayAddr turns ":8443" or "[::]:8443" into "localhost:8443" for the
// log line a person copies into a browser.
func displayAddr(addr string) string {
	for _, p := range []string{"[::]:", "0.0.0.0:", ":"} {
		if len(addr) > len(p) && addr[:len(p)] == p {
			return "localhost:" + addr[len(p):]
		}
	}
	return addr
}

var _ http.Handler = (*sse.Hub)(nil)

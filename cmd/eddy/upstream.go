package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/config"
	"github.com/eddy-iot/eddy/ringlog"
	"github.com/eddy-iot/eddy/upstream"
)

// The ring log is push's source: it has the epoch a collector or the
// stream tells one ring.db's numbering by.
var _ upstream.Source = (*ringlog.Log)(nil)

// withEpoch names the serving log's epoch on every /events response, so a
// collector ties each stream to one epoch (upstream.EpochHeader).
func withEpoch(src upstream.Source, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(upstream.EpochHeader, src.Epoch())
		h.ServeHTTP(w, r)
	})
}

func natsOptions(n config.NATS, name string, logger *slog.Logger) upstream.Options {
	return upstream.Options{
		Servers: n.Servers, Stream: n.Stream, Replicas: n.Replicas, Name: name,
		CredsFile: n.CredsFile, CAFile: n.CAFile, CertFile: n.CertFile, KeyFile: n.KeyFile,
		Username: n.Username, Password: n.Password,
		Window: n.Window, AckTimeout: n.AckTimeout.Duration, Logger: logger,
	}
}

// pushRunner is eddy run's push: it owns the pusher's goroutine.
type pushRunner struct {
	conn   *upstream.Conn
	pusher *upstream.Pusher
	cancel context.CancelFunc
	done   chan struct{}
}

// startPush forwards the ring log upstream when [upstream] is set.
func startPush(cfg *config.Config, src upstream.Source, reg prometheus.Registerer, logger *slog.Logger) (*pushRunner, error) {
	u := cfg.Upstream
	conn, err := upstream.Connect(natsOptions(u.NATS, "eddy "+u.Device, logger))
	if err != nil {
		return nil, err
	}
	stats := &upstream.Stats{}
	p, err := upstream.NewPusher(conn, src, upstream.PushOptions{Device: u.Device, Logger: logger, Stats: stats})
	if err != nil {
		conn.Close()
		return nil, err
	}
	m := upstream.NewMetrics(conn, func() []upstream.DeviceView { return []upstream.DeviceView{p.Status()} }, nil)
	stats.OnAck = m.Observe
	if err := reg.Register(m); err != nil {
		conn.Close()
		return nil, fmt.Errorf("upstream: metrics: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &pushRunner{conn: conn, pusher: p, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		if err := p.Run(ctx); err != nil {
			logger.Error("upstream push stopped", "err", err)
		}
	}()
	logger.Info("pushing upstream", "servers", u.Servers, "stream", u.Stream, "device", u.Device, "epoch", src.Epoch())
	return r, nil
}

// stop ends the pusher: acknowledgements still outstanding are left to the
// next run, which resumes from the stream.
func (r *pushRunner) stop() {
	if r == nil {
		return
	}
	r.cancel()
	<-r.done
	r.conn.Close()
}

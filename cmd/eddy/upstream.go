package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/eddy-iot/eddy/config"
	"github.com/eddy-iot/eddy/ringlog"
	"github.com/eddy-iot/eddy/upstream"
)

// epochLog gives push the ring log's epoch. When *ringlog.Log has its own
// Epoch (the ring log's reliability work adds it), that is used; until
// then the epoch is a random id kept in <dir>/ring.epoch beside the file
// identity (inode and birth time) of the ring.db it belongs to, so a
// replaced or recreated ring.db gets a new one.
type epochLog struct {
	*ringlog.Log
	epoch string
}

func (l *epochLog) Epoch() string { return l.epoch }

var _ upstream.Source = (*epochLog)(nil)

func newEpochLog(log *ringlog.Log) (upstream.Source, error) {
	if s, ok := any(log).(upstream.Source); ok {
		return s, nil
	}
	e, err := fileEpoch(log.Path())
	if err != nil {
		return nil, err
	}
	return &epochLog{Log: log, epoch: e}, nil
}

// fileEpoch reads or creates the epoch of the ring.db at path.
func fileEpoch(path string) (string, error) {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, 0, unix.STATX_INO|unix.STATX_BTIME, &st); err != nil {
		return "", fmt.Errorf("upstream: epoch: stat %s: %w", path, err)
	}
	ident := strconv.FormatUint(st.Ino, 10) + "." + strconv.FormatInt(st.Btime.Sec, 10) + "." + strconv.FormatUint(uint64(st.Btime.Nsec), 10)
	file := filepath.Join(filepath.Dir(path), "ring.epoch")
	if b, err := os.ReadFile(file); err == nil {
		if epoch, id, ok := strings.Cut(strings.TrimSpace(string(b)), " "); ok && id == ident && epoch != "" {
			return epoch, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("upstream: epoch: %w", err)
	}
	r := make([]byte, 8)
	rand.Read(r)
	epoch := hex.EncodeToString(r)
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, []byte(epoch+" "+ident+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("upstream: epoch: %w", err)
	}
	if err := os.Rename(tmp, file); err != nil {
		return "", fmt.Errorf("upstream: epoch: %w", err)
	}
	return epoch, nil
}

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

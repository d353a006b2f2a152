package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/eddy-iot/eddy/config"
	"github.com/eddy-iot/eddy/ringlog"
)

// shutdownGrace bounds a graceful stop: DESIGN.md promises exit within 5 s.
const shutdownGrace = 4 * time.Second

func runCmd(args []string, stderr io.Writer) int {
	f, err := parseRunFlags(args, stderr)
	if err != nil {
		return exitConfig
	}
	cfg, path, err := loadConfig(f)
	if err != nil {
		fmt.Fprintln(stderr, "eddy:", err)
		return exitConfig
	}
	logger := newLogger(stderr)
	if path == "" {
		logger.Info("no config file; running on embedded defaults", "default_path", config.DefaultPath)
	} else {
		logger.Info("config loaded", "path", path)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, logger); err != nil {
		logger.Error("eddy stopped", "err", err)
		return exitFail
	}
	return exitOK
}

// newLogger logs text on a terminal and JSON otherwise (journald, files).
func newLogger(w io.Writer) *slog.Logger {
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			return slog.New(slog.NewTextHandler(w, nil))
		}
	}
	return slog.New(slog.NewJSONHandler(w, nil))
}

// run builds the parts, runs until ctx ends, and shuts down in reverse order.
func run(ctx context.Context, cfg *config.Config, logger *slog.Logger) error {
	log, err := ringlog.Open(cfg.Storage.Dir, &ringlog.Options{
		MaxBytes:     int64(cfg.Storage.MaxBytes),
		MaxAge:       cfg.Storage.MaxAge.Duration,
		SyncInterval: cfg.Storage.SyncInterval.Duration,
		Logger:       logger.With("component", "ringlog"),
	})
	if err != nil {
		return err
	}
	defer func() {
		if err := log.Close(); err != nil {
			logger.Error("closing ring log", "err", err)
		}
	}()
	logger.Info("ring log open", "path", log.Path(), "last_seq", log.LastSeq())
	<-ctx.Done()
	logger.Info("shutting down")
	return nil
}

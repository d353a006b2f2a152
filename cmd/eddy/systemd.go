package main

import (
	"context"
	"log/slog"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
)

// notifyReady tells systemd (Type=notify) that eddy listens; a no-op off
// systemd.
func notifyReady(logger *slog.Logger) {
	if ok, err := sd.SdNotify(false, sd.SdNotifyReady); err != nil {
		logger.Warn("sd_notify READY failed", "err", err)
	} else if ok {
		logger.Info("told systemd we are ready")
	}
}

func notifyStopping() { _, _ = sd.SdNotify(false, sd.SdNotifyStopping) }

// startWatchdog feeds systemd's watchdog at half its interval while the
// hub and the ring log's writer make progress (see healthCheck.progress);
// when one stops or hangs, it stops feeding and systemd restarts eddy. The
// returned channel closes when it has ended (with ctx).
func startWatchdog(ctx context.Context, check func() error, logger *slog.Logger) <-chan struct{} {
	done := make(chan struct{})
	interval, err := sd.SdWatchdogEnabled(false)
	if err != nil || interval == 0 {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		t := time.NewTicker(interval / 2)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := check(); err != nil {
				logger.Error("not feeding the watchdog", "err", err)
				continue
			}
			_, _ = sd.SdNotify(false, sd.SdNotifyWatchdog)
		}
	}()
	return done
}

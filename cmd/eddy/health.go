package main

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// stallAfter is how long the ring log's writer or the hub's loop may go
// without turning before eddy counts as hung. Both turn at least every
// second (the writer every sync_interval) while healthy; a slow SD card
// can hold one commit for seconds, so the margin is wide.
const stallAfter = 20 * time.Second

// beater is a part whose loop reports when it last turned.
type beater interface{ Beat() time.Time }

// healthCheck is the one health function behind the systemd watchdog and
// /healthz. The watchdog is fed on progress: the hub runs and its loop
// turns, and the ring log's writer turns. A disk that stays full stops
// neither (live delivery goes on), so it is not a reason to restart;
// /healthz also reports the log not writable.
type healthCheck struct {
	writer  beater
	hub     beater
	hubDone <-chan struct{} // closed when the hub's Run returned
	hubErr  func() error    // why, once hubDone is closed
	logErr  func() error    // the last commit's error
	now     func() time.Time
}

// progress is the watchdog's check.
func (h *healthCheck) progress() error {
	select {
	case <-h.hubDone:
		return fmt.Errorf("stream hub stopped: %v", h.hubErr())
	default:
	}
	now := h.now()
	if d := now.Sub(h.hub.Beat()); d > stallAfter {
		return fmt.Errorf("stream hub stalled: its loop has not turned for %v", d.Round(time.Second))
	}
	if d := now.Sub(h.writer.Beat()); d > stallAfter {
		return fmt.Errorf("ring log writer stalled: it has not turned for %v", d.Round(time.Second))
	}
	return nil
}

// ready is /healthz's check: progress, and the log accepts writes.
func (h *healthCheck) ready(context.Context) error {
	if err := h.progress(); err != nil {
		return err
	}
	if err := h.logErr(); err != nil {
		return fmt.Errorf("ring log not writable: %w", err)
	}
	return nil
}

var errHubEnded = errors.New("it returned without an error")

// Package ratelog owns eddy's rate-limited logging: for each reason (a
// small fixed set chosen by the caller, such as "unauthorized" or
// "oversized"), at most one line per period, and a count of the lines it
// held back.
//
// Guarantees:
//
//   - The first event of a reason is logged at once. Further events of
//     that reason within the period are counted, not logged; when the
//     period ends with events held back, one line reports the latest of
//     them. A line that stands for more than its own event says so with
//     "suppressed": N, the events it stands for beside its own. So a
//     flood writes at most one line per reason per period, and its size
//     is never lost: it is the number of lines plus their suppressed
//     counts.
//   - Memory is bounded: at most MaxReasons reasons are tracked; events of
//     further reasons share the reason "other".
//   - Stop cancels the pending summary lines; after Stop, events are
//     still logged at the same bounded rate, without trailing summaries.
//
// A Logger is safe for concurrent use. Its zero value is not usable; use
// New.
package ratelog

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// MaxReasons bounds the reasons one Logger tracks.
const MaxReasons = 64

// Logger logs at most one line per reason per period.
type Logger struct {
	logger *slog.Logger
	every  time.Duration

	mu      sync.Mutex // protects reasons and stopped
	reasons map[string]*reason
	stopped bool
}

// reason is the state of one reason's current period.
type reason struct {
	last   time.Time // when the last line was written
	missed int       // events held back since then
	level  slog.Level
	msg    string // the latest held-back event, for the summary
	args   []any
	timer  *time.Timer // pending summary; nil when none
}

// New returns a Logger that writes to logger (nil: discard) at most once
// per every for each reason.
func New(logger *slog.Logger, every time.Duration) *Logger {
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Logger{logger: logger, every: every, reasons: map[string]*reason{}}
}

// Warn logs at warning level, rate-limited by reason; it reports whether
// the line was written now.
func (l *Logger) Warn(why, msg string, args ...any) bool {
	return l.Log(slog.LevelWarn, why, msg, args...)
}

// Info logs at info level, rate-limited by reason.
func (l *Logger) Info(why, msg string, args ...any) bool {
	return l.Log(slog.LevelInfo, why, msg, args...)
}

// Log logs msg at level unless a line of reason why was written less
// than a period ago; then it counts the event for the period's summary.
// It reports whether it wrote the line now.
func (l *Logger) Log(level slog.Level, why, msg string, args ...any) bool {
	l.mu.Lock()
	r := l.reason(why)
	now := time.Now()
	if !r.last.IsZero() && now.Sub(r.last) < l.every {
		r.missed++
		r.level, r.msg, r.args = level, msg, args
		if r.timer == nil && !l.stopped {
			r.timer = time.AfterFunc(r.last.Add(l.every).Sub(now), func() { l.summarize(r) })
		}
		l.mu.Unlock()
		return false
	}
	n := r.missed
	r.last, r.missed, r.args = now, 0, nil
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	l.mu.Unlock()
	if n > 0 {
		args = append(args[:len(args):len(args)], "suppressed", n)
	}
	l.logger.Log(context.Background(), level, msg, args...)
	return true
}

// reason returns why's state, creating it; beyond MaxReasons, "other".
// l.mu is held.
func (l *Logger) reason(why string) *reason {
	r, ok := l.reasons[why]
	if !ok {
		if len(l.reasons) >= MaxReasons {
			why = "other"
			if r, ok = l.reasons[why]; ok {
				return r
			}
		}
		r = &reason{}
		l.reasons[why] = r
	}
	return r
}

// summarize writes the line for events held back during r's period.
func (l *Logger) summarize(r *reason) {
	l.mu.Lock()
	r.timer = nil
	n, level, msg, args := r.missed, r.level, r.msg, r.args
	if n == 0 || l.stopped {
		l.mu.Unlock()
		return
	}
	r.last, r.missed, r.args = time.Now(), 0, nil
	l.mu.Unlock()
	if n > 1 {
		args = append(args[:len(args):len(args)], "suppressed", n-1)
	}
	l.logger.Log(context.Background(), level, msg, args...)
}

// Stop cancels pending summaries (call it when the owner shuts down).
func (l *Logger) Stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
	for _, r := range l.reasons {
		if r.timer != nil {
			r.timer.Stop()
			r.timer = nil
		}
	}
}

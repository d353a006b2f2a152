package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/eddy-iot/eddy/config"
	"github.com/eddy-iot/eddy/ratelog"
	"github.com/eddy-iot/eddy/ringlog"
	"github.com/eddy-iot/eddy/sensors"
	"github.com/eddy-iot/eddy/topic"
)

// Sensor polling: one loop per [[sensor]] block, each on its own interval.
// Every reading becomes a record <name>/<quantity> (KindJSON, the number
// as JSON, the reading's unit, stamped when taken). Each sensor's state is
// published as <name>/status (KindText: "ok" or the error), only when it
// changes, and kept for /metrics in Health. A read that yields nothing and
// fails is retried after interval*2^n, capped at SensorMaxBackoff (or the
// interval when that is longer).

// SensorMaxBackoff is the default cap on the delay between attempts to read
// a failing sensor.
const SensorMaxBackoff = time.Minute

// sensorLogEvery bounds how often a sensor that keeps failing the same way
// is logged again.
const sensorLogEvery = time.Minute

// sensorMaxStatusLen caps the error text stored in a <name>/status record.
const sensorMaxStatusLen = 1024

// SensorHealth is one sensor's state, for /metrics and the status page.
type SensorHealth struct {
	Name string
	Kind string
	Up   bool // the last read succeeded completely

	Reads        uint64 // reads attempted
	Errors       uint64 // reads that returned an error (partial or total)
	Records      uint64 // readings appended to the log
	Bytes        uint64 // bytes of topic and value those readings hold
	Skipped      uint64 // readings not stored: NaN or ±Inf (not JSON), or an unusable name
	AppendErrors uint64 // appends the ring log refused or could not make durable

	LastError     string        // "" while up
	LastErrorTime time.Time     // zero if it never failed
	LastOK        time.Time     // last read without error; zero if none yet
	Retry         time.Duration // delay before the next read
	LastDuration  time.Duration // how long the last read took
}

// SensorOption tunes NewSensors.
type SensorOption func(*sensorOptions)

type sensorOptions struct {
	env        sensors.Env
	maxBackoff time.Duration
}

// WithSensorEnv sets how sensors reach hardware (periph.io buses and pins,
// the clock); the default is the real machine. An empty DataDir is filled
// with the ring log's directory.
func WithSensorEnv(env sensors.Env) SensorOption {
	return func(o *sensorOptions) { o.env = env }
}

// WithSensorMaxBackoff caps the retry delay of a failing sensor (default
// SensorMaxBackoff).
func WithSensorMaxBackoff(d time.Duration) SensorOption {
	return func(o *sensorOptions) { o.maxBackoff = d }
}

// Sensors polls every configured sensor into the ring log.
type Sensors struct {
	log    *ringlog.Log
	logger *slog.Logger
	loops  []*sensorLoop

	mu  sync.Mutex // protects ran
	ran bool
}

// sensorLoop is one sensor and its state; its run goroutine is the only
// writer of everything but health.
type sensorLoop struct {
	cfg        config.Sensor
	sensor     sensors.Sensor
	log        *ringlog.Log
	logger     *slog.Logger
	now        func() time.Time
	maxBackoff time.Duration

	failures int             // consecutive total failures
	status   string          // value of the last <name>/status record
	warnings *ratelog.Logger // one budget for every warning about this sensor
	// failLogged: a failure was logged and its recovery not yet; a
	// recovery is logged only then, so a flapping sensor logs at most
	// two lines per sensorLogEvery.
	failLogged bool

	mu     sync.Mutex // protects health
	health SensorHealth
}

// NewSensors builds every sensor of cfgs (validated by package config). A
// device that is missing is not an error here: it is reported and retried
// by Run. A configuration the sensors cannot use is an error. logger may be
// nil (discard).
func NewSensors(cfgs []config.Sensor, log *ringlog.Log, logger *slog.Logger, opts ...SensorOption) (*Sensors, error) {
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	o := sensorOptions{maxBackoff: SensorMaxBackoff}
	for _, f := range opts {
		f(&o)
	}
	if o.env.DataDir == "" {
		o.env.DataDir = filepath.Dir(log.Path())
	}
	if o.env.Logger == nil {
		o.env.Logger = logger
	}
	if o.env.Now == nil {
		o.env.Now = time.Now
	}
	s := &Sensors{log: log, logger: logger}
	names := map[string]bool{}
	for i, c := range cfgs {
		loop, err := s.newLoop(c, &o)
		if err == nil && names[loop.cfg.Name] {
			err = fmt.Errorf("name %q is used twice", loop.cfg.Name)
		}
		if err != nil {
			s.closeSensors()
			return nil, fmt.Errorf("ingest: sensor[%d] (%s): %w", i, c.Kind, err)
		}
		names[loop.cfg.Name] = true
		s.loops = append(s.loops, loop)
	}
	return s, nil
}

func (s *Sensors) newLoop(c config.Sensor, o *sensorOptions) (*sensorLoop, error) {
	if c.Name == "" {
		c.Name = c.Kind
	}
	if err := topic.ValidName(c.Name + "/status"); err != nil {
		return nil, fmt.Errorf("name: %w", err)
	}
	if c.Interval.Duration <= 0 {
		c.Interval.Duration = time.Second
	}
	sn, err := sensors.New(c, &o.env)
	if err != nil {
		return nil, err
	}
	logger := s.logger.With("sensor", c.Name, "kind", c.Kind)
	return &sensorLoop{
		cfg: c, sensor: sn, log: s.log, now: o.env.Now, maxBackoff: o.maxBackoff,
		logger: logger, warnings: ratelog.New(logger, sensorLogEvery),
		health: SensorHealth{Name: c.Name, Kind: c.Kind},
	}, nil
}

// Run polls every sensor, each in its own goroutine, until ctx ends; then
// it waits for them and closes the sensors. It returns nil after a clean
// shutdown (with no sensors configured, when ctx ends). A read in progress
// is not interrupted (a sysfs read cannot be), so shutdown waits for it.
// Run may be called once, and must return before the ring log is closed.
func (s *Sensors) Run(ctx context.Context) error {
	s.mu.Lock()
	ran := s.ran
	s.ran = true
	s.mu.Unlock()
	if ran {
		return errors.New("ingest: sensors: Run called twice")
	}
	var wg sync.WaitGroup
	for _, l := range s.loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.run(ctx)
		}()
	}
	<-ctx.Done()
	wg.Wait()
	s.closeSensors()
	return nil
}

func (s *Sensors) closeSensors() {
	for _, l := range s.loops {
		if err := l.sensor.Close(); err != nil {
			l.logger.Warn("sensor close", "err", err)
		}
	}
}

// Health returns every sensor's state, in configuration order.
func (s *Sensors) Health() []SensorHealth {
	out := make([]SensorHealth, len(s.loops))
	for i, l := range s.loops {
		l.mu.Lock()
		out[i] = l.health
		l.mu.Unlock()
	}
	return out
}

func (l *sensorLoop) run(ctx context.Context) {
	defer l.warnings.Stop()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		delay := l.poll(ctx)
		if ctx.Err() != nil {
			return
		}
		if l.failures == 0 {
			// Keep the period: the read's own duration counts.
			delay = max(delay-time.Since(start), 0)
		}
		t.Reset(delay)
	}
}

// poll reads once, stores the readings and the status, and returns the
// delay before the next read.
func (l *sensorLoop) poll(ctx context.Context) time.Duration {
	start := time.Now()
	rs, err := l.sensor.Read(ctx)
	took := time.Since(start)
	if err != nil && ctx.Err() != nil {
		return 0 // shutting down: not a sensor failure
	}
	stored, skipped, appendErrs, bytes := l.store(rs)
	if err != nil && len(rs) == 0 {
		l.failures++
	} else {
		l.failures = 0
	}
	delay := l.retryDelay()

	l.mu.Lock()
	h := &l.health
	h.Reads++
	h.Records += uint64(stored)
	h.Bytes += uint64(bytes)
	h.Skipped += uint64(skipped)
	h.AppendErrors += uint64(appendErrs)
	h.Up = err == nil
	h.Retry = delay
	h.LastDuration = took
	if err != nil {
		h.Errors++
		h.LastError = err.Error()
		h.LastErrorTime = l.now()
	} else {
		h.LastError = ""
		h.LastOK = l.now()
	}
	l.mu.Unlock()

	l.report(err, delay)
	return delay
}

// retryDelay is the interval, or after n consecutive total failures
// interval*2^n capped at maxBackoff (never below the interval).
func (l *sensorLoop) retryDelay() time.Duration {
	iv := l.cfg.Interval.Duration
	if l.failures == 0 {
		return iv
	}
	limit := max(l.maxBackoff, iv)
	d := iv
	for range min(l.failures, 62) {
		d *= 2
		if d >= limit || d <= 0 {
			return limit
		}
	}
	return d
}

// store appends each reading; it returns how many were stored, skipped
// (not representable) and refused by the log, and the bytes stored
// (topic and value).
func (l *sensorLoop) store(rs []sensors.Reading) (stored, skipped, appendErrs, bytes int) {
	for _, r := range rs {
		name := l.cfg.Name + "/" + r.Quantity
		if math.IsNaN(r.Value) || math.IsInf(r.Value, 0) || topic.ValidName(name) != nil || len(r.Unit) > ringlog.MaxUnitLen {
			skipped++
			continue
		}
		ts := r.Time
		if ts.IsZero() {
			ts = l.now()
		}
		rec := ringlog.Record{Time: ts, Topic: name, Kind: ringlog.KindJSON, Unit: r.Unit,
			Value: strconv.AppendFloat(nil, r.Value, 'g', -1, 64)}
		if l.appendRecord(rec) {
			stored++
			bytes += len(rec.Topic) + len(rec.Value)
		} else {
			appendErrs++
		}
	}
	return stored, skipped, appendErrs, bytes
}

// appendRecord stores rec and reports whether it was accepted. A record that is
// live but not yet durable (disk failing) counts as accepted and is
// logged: the ring log retries its commit.
func (l *sensorLoop) appendRecord(rec ringlog.Record) bool {
	seq, err := l.log.Append(rec)
	if err != nil {
		l.warnRateLimited("sensor record not stored", "topic", rec.Topic, "err", err)
	}
	return seq != 0
}

// report writes a <name>/status record when the state changed, and logs
// failures at most once per sensorLogEvery (the first one at once).
func (l *sensorLoop) report(err error, retry time.Duration) {
	status := "ok"
	if err != nil {
		status = sensorTruncate(err.Error(), sensorMaxStatusLen)
	}
	changed := status != l.status
	if changed {
		rec := ringlog.Record{Time: l.now(), Topic: l.cfg.Name + "/status", Kind: ringlog.KindText, Value: []byte(status)}
		if _, aerr := l.log.Append(rec); aerr != nil && !errors.Is(aerr, ringlog.ErrNotDurable) {
			l.warnRateLimited("sensor status not stored", "err", aerr)
		}
	}
	wasFailing := l.status != "" && l.status != "ok"
	l.status = status
	switch {
	case err == nil && changed && wasFailing && l.failLogged:
		l.logger.Info("sensor recovered")
		l.failLogged = false
	case err != nil && changed:
		l.failLogged = l.warnRateLimited("sensor failing", "err", err, "no_device", errors.Is(err, sensors.ErrNoDevice), "retry_in", retry) || l.failLogged
	case err != nil:
		l.failLogged = l.warnRateLimited("sensor still failing", "err", err, "retry_in", retry) || l.failLogged
	}
}

// warnRateLimited logs at most once per sensorLogEvery for this sensor,
// counting what it suppressed; it reports whether it logged.
func (l *sensorLoop) warnRateLimited(msg string, args ...any) bool {
	return l.warnings.Warn("sensor", msg, args...)
}

// sensorTruncate cuts s to at most n bytes without splitting a character.
func sensorTruncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

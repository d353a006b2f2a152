package upstream

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/eddy-iot/eddy/backoff"
	"github.com/eddy-iot/eddy/sse"
)

// EpochHeader is the /events response header that names the epoch of the
// ring log serving the stream (see cmd/eddy). Reading it from the stream's
// own response ties every event of the stream to one epoch.
const EpochHeader = "Eddy-Epoch"

// Device is one device a collector follows.
type Device struct {
	Name  string // subject token
	URL   string // https://host:port
	Token string
	TLS   *tls.Config // trust: the device's CA or its pinned fingerprint
	// TrustKey identifies what TLS was built from (CA file, fingerprint),
	// so that a reload with the same trust leaves the device alone.
	TrustKey string
	Topics   []string // filters; default #
}

// same reports whether two configurations of a device are the same.
func (d Device) same(o Device) bool {
	return d.Name == o.Name && d.URL == o.URL && d.Token == o.Token && d.TrustKey == o.TrustKey && slices.Equal(d.Topics, o.Topics)
}

// CollectorOptions configure a Collector. Zero values take the defaults.
type CollectorOptions struct {
	ID       string        // this collector's id in the lease bucket; default random
	Bucket   string        // lease bucket; default "eddy_leases"
	LeaseTTL time.Duration // for a bucket eddy creates; default 6s
	// MaxEvent bounds one event line from a device (bytes); default 2 MiB.
	MaxEvent int
	// Dial bounds connecting and getting response headers; default 5s.
	Dial time.Duration
	// Idle drops a stream on which nothing arrived for this long (the
	// device sends heartbeats); default 45s.
	Idle time.Duration
	// ParkAfter parks a device whose HTTP/3 (or HTTP/2) stream carried
	// no record for this long: it is followed over HTTP/1.1, which holds
	// a third of a QUIC connection's memory, until its next record. Every
	// session starts parked (see park.go). Default 1m; negative: never
	// park, every session on HTTP/3.
	ParkAfter time.Duration
	// LogEvery is how often one device's failures are logged; default 1m.
	LogEvery time.Duration
	// QUICAddr is the local UDP address all HTTP/3 connections share (one
	// socket for every device); default ":0".
	QUICAddr string
	Logger   *slog.Logger
	// OnAck observes each stored record (benchmarks); may be nil.
	OnAck func(device string, seq uint64, ts time.Time, publishToAck time.Duration)
}

// DeviceState is what a collector knows of one device, for /metrics.
type DeviceState struct {
	Stats      *Stats
	Connected  atomic.Bool
	Held       atomic.Bool   // this collector holds its lease
	Protocol   atomic.Value  // string: "h3", "h2", "h1" (parked) or ""
	Received   atomic.Uint64 // seq of the last event received
	Reconnects atomic.Uint64
	Errors     atomic.Uint64 // sessions that ended in an error
	Malformed  atomic.Uint64 // events that were not valid readings
	Parks      atomic.Uint64 // times the device was parked on HTTP/1.1
}

// devRun is one device's runtime state; the collector's lease loop owns it.
type devRun struct {
	cfg      Device
	state    *DeviceState
	rev      uint64       // lease revision we wrote last; 0: not held
	deadline atomic.Int64 // unix nanos until which our lease is surely ours
	cancel   context.CancelFunc
	done     chan struct{}
	lastLog  time.Time // guarded by logMu
	logMu    sync.Mutex
	preferH2 time.Time // HTTP/3 failed: use HTTP/2 until then (follower-owned)
	noPark   time.Time // HTTP/1.1 failed where HTTP/3 or HTTP/2 worked: do not park until then (follower-owned)
}

// Collector follows devices' /events?mode=exact and publishes them, each
// device from at most one collector at a time (see Leases).
type Collector struct {
	conn *Conn
	opt  CollectorOptions
	log  *slog.Logger

	update chan []Device // SetDevices -> Run
	leases *Leases       // set by Run before it applies updates

	mu   sync.Mutex // protects the map devs for readers; only Run's goroutine changes it and the devRuns
	devs map[string]*devRun
	held atomic.Int64

	wg sync.WaitGroup // followers

	qt *quic.Transport // every device's QUIC connections; set by Run
}

// NewCollector returns a collector of devices; Run starts it.
func NewCollector(conn *Conn, devices []Device, o CollectorOptions) (*Collector, error) {
	if o.ID == "" {
		o.ID = fmt.Sprintf("c%08x", rand.Uint32())
	}
	if o.Bucket == "" {
		o.Bucket = "eddy_leases"
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 6 * time.Second
	}
	if o.MaxEvent <= 0 {
		o.MaxEvent = 2 << 20
	}
	if o.Dial <= 0 {
		o.Dial = 5 * time.Second
	}
	if o.Idle <= 0 {
		o.Idle = 45 * time.Second
	}
	if o.ParkAfter == 0 {
		o.ParkAfter = time.Minute
	}
	if o.LogEvery <= 0 {
		o.LogEvery = time.Minute
	}
	if o.QUICAddr == "" {
		o.QUICAddr = ":0"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Collector{conn: conn, opt: o, log: o.Logger, update: make(chan []Device, 1), devs: map[string]*devRun{}}
	if err := c.apply(devices); err != nil {
		return nil, err
	}
	return c, nil
}

// apply replaces the device list: new devices are added, removed ones
// stopped and released, changed ones restarted; the others are untouched.
// It runs before Run or inside it.
func (c *Collector) apply(devices []Device) error {
	seen := map[string]bool{}
	for _, d := range devices {
		if err := ValidDevice(d.Name); err != nil {
			return err
		}
		if seen[d.Name] {
			return fmt.Errorf("upstream: device %q is listed twice", d.Name)
		}
		seen[d.Name] = true
	}
	// Only Run's goroutine (or NewCollector) gets here: c.mu guards the
	// map for readers, and is not held while followers stop or leases go.
	c.mu.Lock()
	current := maps.Clone(c.devs)
	c.mu.Unlock()
	for name, r := range current {
		if !seen[name] {
			c.stopFollower(r)
			c.release(name, r)
			c.mu.Lock()
			delete(c.devs, name)
			c.mu.Unlock()
			c.log.Info("collect: device removed", "device", name)
		}
	}
	for _, d := range devices {
		old, ok := current[d.Name]
		if ok && old.cfg.same(d) {
			continue
		}
		r := &devRun{cfg: d, state: &DeviceState{Stats: &Stats{}}}
		if ok {
			c.stopFollower(old)
			r.state = old.state
			r.rev = old.rev // the lease stays ours
			r.deadline.Store(old.deadline.Load())
			c.log.Info("collect: device changed", "device", d.Name)
		} else if c.leases != nil {
			c.log.Info("collect: device added", "device", d.Name)
		}
		if c.opt.OnAck != nil {
			name := d.Name
			r.state.Stats.OnAck = func(seq uint64, ts time.Time, took time.Duration) { c.opt.OnAck(name, seq, ts, took) }
		}
		c.mu.Lock()
		c.devs[d.Name] = r
		c.mu.Unlock()
		if r.rev != 0 {
			c.startFollower(r)
		}
	}
	return nil
}

// release gives up the device's lease if we hold it.
func (c *Collector) release(name string, r *devRun) {
	if r.rev == 0 || c.leases == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.leases.Release(ctx, name, r.rev); err != nil {
		c.log.Debug("collect: release", "device", name, "err", err)
	}
	r.rev = 0
}

// SetDevices hands a new device list to Run (SIGHUP).
func (c *Collector) SetDevices(devices []Device) error {
	for _, d := range devices {
		if err := ValidDevice(d.Name); err != nil {
			return err
		}
	}
	select {
	case <-c.update:
	default:
	}
	c.update <- devices
	return nil
}

// Devices returns the state of every configured device, by name.
func (c *Collector) Devices() map[string]*DeviceState {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]*DeviceState, len(c.devs))
	for n, r := range c.devs {
		out[n] = r.state
	}
	return out
}

// LeasesHeld is the number of device leases this collector holds.
func (c *Collector) LeasesHeld() int { return int(c.held.Load()) }

// Healthy reports whether NATS is reachable.
func (c *Collector) Healthy() error {
	if !c.conn.Connected() {
		return errors.New("NATS unreachable")
	}
	return nil
}

// Run holds leases and follows the devices it holds until ctx ends. It
// releases its leases on the way out.
func (c *Collector) Run(ctx context.Context) error {
	if err := c.conn.EnsureStream(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	leases, err := OpenLeases(ctx, c.conn, c.opt.Bucket, c.opt.ID, c.opt.LeaseTTL)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	udp, err := net.ListenPacket("udp", c.opt.QUICAddr)
	if err != nil {
		return fmt.Errorf("collect: QUIC socket: %w", err)
	}
	c.qt = &quic.Transport{Conn: udp}
	defer udp.Close()
	defer c.qt.Close()
	c.log.Info("collect: running", "id", leases.ID(), "lease_ttl", leases.TTL(), "quic", udp.LocalAddr().String())
	c.mu.Lock()
	c.leases = leases
	c.mu.Unlock()
	defer c.stopAll(leases)
	tick := time.NewTicker(leases.TTL() / 4)
	defer tick.Stop()
	for {
		c.balance(ctx, leases)
		select {
		case <-ctx.Done():
			return nil
		case devs := <-c.update:
			if err := c.apply(devs); err != nil {
				c.log.Error("collect: new device list refused", "err", err)
			}
		case <-tick.C:
		}
	}
}

// leaseWorkers bounds the lease requests in flight at once, so that
// thousands of leases are renewed within a fraction of the TTL.
const leaseWorkers = 32

// parallel runs fn(0..n-1), at most leaseWorkers at a time.
func parallel(n int, fn func(i int)) {
	sem := make(chan struct{}, leaseWorkers)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(i)
		}()
	}
	wg.Wait()
}

// balance renews the leases held, gives up any beyond this collector's
// fair share, and takes free ones up to it. Only Run's goroutine changes
// the device map and the devRuns, so balance reads them without c.mu and
// never holds it across a request.
func (c *Collector) balance(ctx context.Context, l *Leases) {
	alive, err := l.Announce(ctx)
	if err != nil {
		alive = 1
		c.log.Debug("collect: announce", "err", err)
	}
	c.mu.Lock()
	names := make([]string, 0, len(c.devs))
	runs := make(map[string]*devRun, len(c.devs))
	for n, r := range c.devs {
		names = append(names, n)
		runs[n] = r
	}
	c.mu.Unlock()
	slices.Sort(names)
	share := (len(names) + alive - 1) / alive

	// Renew every lease held, in parallel.
	var mine []string
	for _, n := range names {
		if runs[n].rev != 0 {
			mine = append(mine, n)
		}
	}
	type renewal struct {
		rev uint64
		err error
		at  time.Time
	}
	got := make([]renewal, len(mine))
	parallel(len(mine), func(i int) {
		at := time.Now()
		rev, err := l.Renew(ctx, mine[i], runs[mine[i]].rev)
		got[i] = renewal{rev, err, at}
	})
	held := 0
	for i, n := range mine {
		r, g := runs[n], got[i]
		if g.err != nil {
			if errors.Is(g.err, ErrLeaseLost) || time.Now().UnixNano() > r.deadline.Load() {
				c.log.Warn("collect: lease lost", "device", n, "err", g.err)
				c.stopFollower(r)
				r.rev = 0
				continue
			}
			held++ // not renewed this time; still ours until its deadline
			continue
		}
		r.rev = g.rev
		r.deadline.Store(g.at.Add(l.TTL() * 2 / 3).UnixNano())
		held++
	}
	// Too many: give some back (another collector takes them).
	for i := len(names) - 1; i >= 0 && held > share; i-- {
		if r := runs[names[i]]; r.rev != 0 {
			c.stopFollower(r)
			c.release(names[i], r)
			held--
			c.log.Info("collect: lease handed over", "device", names[i], "share", share)
		}
	}
	// Take free ones, starting at a random place so that collectors
	// spread over the list; in parallel, never more than the share.
	var free []string
	off := rand.IntN(max(len(names), 1))
	for i := range names {
		if n := names[(i+off)%len(names)]; runs[n].rev == 0 {
			free = append(free, n)
		}
	}
	for len(free) > 0 && held < share {
		try := free[:min(len(free), share-held, leaseWorkers)]
		free = free[len(try):]
		revs := make([]uint64, len(try))
		ats := make([]time.Time, len(try))
		parallel(len(try), func(i int) {
			ats[i] = time.Now()
			if rev, ok, err := l.Acquire(ctx, try[i]); err == nil && ok {
				revs[i] = rev
			}
		})
		for i, n := range try {
			if revs[i] == 0 {
				continue
			}
			r := runs[n]
			r.rev = revs[i]
			r.deadline.Store(ats[i].Add(l.TTL() * 2 / 3).UnixNano())
			held++
			c.log.Info("collect: lease taken", "device", n)
			c.startFollower(r)
		}
	}
	c.held.Store(int64(held))
	for _, r := range runs {
		r.state.Held.Store(r.rev != 0)
	}
}

func (c *Collector) startFollower(r *devRun) {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(r.done)
		c.follow(ctx, r)
	}()
}

// stopFollower ends the device's follower and waits for it.
func (c *Collector) stopFollower(r *devRun) {
	if r.cancel != nil {
		r.cancel()
		<-r.done
		r.cancel, r.done = nil, nil
	}
	r.state.Connected.Store(false)
}

func (c *Collector) stopAll(l *Leases) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c.mu.Lock()
	current := maps.Clone(c.devs)
	c.mu.Unlock()
	for n, r := range current {
		c.stopFollower(r)
		c.release(n, r)
	}
	c.wg.Wait()
	l.Withdraw(ctx)
	c.held.Store(0)
}

// logFailure logs a device's failure at most once per LogEvery.
func (c *Collector) logFailure(r *devRun, err error) {
	r.state.Errors.Add(1)
	r.logMu.Lock()
	defer r.logMu.Unlock()
	if time.Since(r.lastLog) < c.opt.LogEvery {
		return
	}
	r.lastLog = time.Now()
	c.log.Warn("collect: device stream failed", "device", r.cfg.Name, "err", err, "errors", r.state.Errors.Load())
}

// errStatus is a non-200 answer; errFatalStatus ones get the longest backoff.
type errStatus struct {
	code int
	msg  string
}

func (e *errStatus) Error() string { return fmt.Sprintf("HTTP %d: %s", e.code, e.msg) }

// errLeaseLost ends a session whose lease may have passed on.
var errLeaseEnded = errors.New("collect: lease not renewed in time")

// transports are one device's HTTP clients (a parked stream uses none).
type transports struct {
	h3 *http3.Transport
	h2 *http.Transport // HTTP/2 when QUIC does not get through
}

func (c *Collector) newTransports(d Device) *transports {
	return &transports{
		h3: &http3.Transport{TLSClientConfig: d.TLS, Dial: c.dialQUIC, QUICConfig: &quic.Config{
			MaxIdleTimeout: 10 * time.Second, KeepAlivePeriod: 3 * time.Second,
			InitialStreamReceiveWindow: 64 << 10, InitialConnectionReceiveWindow: 128 << 10,
		}},
		h2: &http.Transport{TLSClientConfig: d.TLS, ForceAttemptHTTP2: true, ResponseHeaderTimeout: c.opt.Dial,
			ReadBufferSize: 4 << 10, WriteBufferSize: 4 << 10},
	}
}

// closeIdle closes the connections no stream uses: after a session, so
// that a parked device holds no QUIC connection.
func (t *transports) closeIdle() {
	t.h3.CloseIdleConnections()
	t.h2.CloseIdleConnections()
}

// follow runs sessions with one device until ctx ends.
func (c *Collector) follow(ctx context.Context, r *devRun) {
	t := c.newTransports(r.cfg)
	defer t.h3.Close()
	defer t.closeIdle()
	bo := backoff.Backoff{First: 250 * time.Millisecond, Max: 15 * time.Second}
	// A session starts parked: an idle device never costs a QUIC
	// connection, and one with records to send leaves at its first.
	canPark := c.opt.ParkAfter > 0
	park := canPark
	for ctx.Err() == nil {
		progressed, err := c.session(ctx, r, t, park)
		r.state.Connected.Store(false)
		t.closeIdle()
		if ctx.Err() != nil {
			return
		}
		if progressed {
			bo.Reset()
		}
		park = canPark && !errors.Is(err, errUnpark)
		if errors.Is(err, errPark) {
			r.state.Parks.Add(1)
		}
		if errors.Is(err, errPark) || errors.Is(err, errUnpark) {
			c.log.Debug("collect: switching transport", "device", r.cfg.Name, "why", err)
			continue
		}
		r.state.Reconnects.Add(1)
		c.logFailure(r, err)
		wait := bo.Next()
		var se *errStatus
		if errors.As(err, &se) && (se.code == http.StatusUnauthorized || se.code == http.StatusForbidden) {
			wait = backoff.Jitter(30 * time.Second)
		}
		if !backoff.SleepFor(ctx, wait) {
			return
		}
	}
}

// dialQUIC dials over the collector's one UDP socket.
func (c *Collector) dialQUIC(ctx context.Context, addr string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	return c.qt.DialEarly(ctx, ua, tlsCfg, cfg)
}

// session resumes from the stream, follows the device's events and
// publishes them until something fails. It reports whether any record
// was stored.
func (c *Collector) session(ctx context.Context, r *devRun, t *transports, park bool) (bool, error) {
	name := r.cfg.Name
	pos, err := c.conn.LastPosition(ctx, name)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return false, err
	}
	after := pos.Seq
	for attempt := 0; attempt < 2; attempt++ {
		resp, proto, err := c.open(ctx, r, t, park, after)
		var se *errStatus
		if attempt == 0 && after > 0 && errors.As(err, &se) && se.code == http.StatusBadRequest {
			// The device never issued that id: a new log whose numbering
			// starts below ours. Take it from its start (if its epoch is
			// indeed new, checked below).
			after = 0
			resp, proto, err = c.open(ctx, r, t, park, after)
			if err == nil && resp.Header.Get(EpochHeader) == pos.Epoch {
				resp.Body.Close()
				return false, fmt.Errorf("collect: the device refuses to resume after %d in the same epoch %s: %w", pos.Seq, pos.Epoch, se)
			}
		}
		if err != nil {
			return false, err
		}
		epoch := resp.Header.Get(EpochHeader)
		if attempt == 0 && after > 0 && epoch != pos.Epoch {
			// A new log on the device: take it from its start.
			resp.Body.Close()
			c.log.Info("collect: device has a new epoch; reading its log from the start", "device", name, "epoch", epoch, "stored_epoch", pos.Epoch)
			after = 0
			continue
		}
		defer resp.Body.Close()
		r.state.Connected.Store(true)
		r.state.Protocol.Store(proto)
		s := c.conn.NewSender(name, epoch, r.state.Stats)
		defer s.Close()
		s.resumeAt(pos)
		r.state.Stats.AckedSeq.Store(s.acked)
		// In a new epoch, ids up to the previous epoch's last were that
		// epoch's: a gap the device announces below it is no loss.
		var floor uint64
		if epoch != pos.Epoch {
			floor = pos.Seq
		}
		if proto == "h1" {
			err = c.readParked(ctx, r, s, floor, resp.Body)
		} else {
			err = c.read(ctx, r, s, floor, resp.Body)
		}
		if ferr := s.Flush(ctx); ferr != nil && err == nil {
			err = ferr
		}
		return r.state.Stats.AckedSeq.Load() > after, err
	}
	return false, errors.New("collect: the device's epoch keeps changing")
}

// open connects to /events over HTTP/1.1 when park (parked), else or
// when that does not get through over HTTP/3, or HTTP/2 when QUIC does
// not get through, resuming after after.
func (c *Collector) open(ctx context.Context, r *devRun, t *transports, park bool, after uint64) (*http.Response, string, error) {
	u, err := eventsURL(r.cfg.URL, r.cfg.Topics)
	if err != nil {
		return nil, "", err
	}
	var h1Err error
	if park && time.Now().After(r.noPark) {
		resp, err := c.getParked(ctx, r.cfg, u, after)
		var se *errStatus
		if err == nil || errors.As(err, &se) || ctx.Err() != nil {
			return resp, "h1", err
		}
		h1Err = err
	}
	clients := [2]*http.Client{{Transport: t.h3}, {Transport: t.h2}}
	var firstErr error
	for i, proto := range []string{"h3", "h2"} {
		if i == 0 && time.Now().Before(r.preferH2) {
			continue
		}
		resp, err := c.get(ctx, clients[i], u, r.cfg.Token, after)
		if err == nil {
			if i == 1 && firstErr != nil {
				r.preferH2 = time.Now().Add(5 * time.Minute)
			}
			if h1Err != nil {
				c.log.Info("collect: HTTP/1.1 does not get through; not parking for 5m", "device", r.cfg.Name, "err", h1Err)
				r.noPark = time.Now().Add(5 * time.Minute)
			}
			return resp, proto, nil
		}
		var se *errStatus
		if errors.As(err, &se) || ctx.Err() != nil {
			return nil, "", err // the device answered: no fallback will help
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, "", firstErr
}

// eventsRequest is the GET of a device's /events resuming after after.
func eventsRequest(ctx context.Context, u, token string, after uint64) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	// Always resume, from 0 for a device the stream has nothing of:
	// without an id the stream would start live and skip the log.
	req.Header.Set("Last-Event-ID", strconv.FormatUint(after, 10))
	return req, nil
}

// refused turns an answer other than 200 into an *errStatus, closing it.
func refused(resp *http.Response) error {
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	resp.Body.Close()
	return &errStatus{code: resp.StatusCode, msg: strings.TrimSpace(string(b))}
}

func (c *Collector) get(ctx context.Context, hc *http.Client, u, token string, after uint64) (*http.Response, error) {
	// The dial deadline covers the headers only; the body is watched by read.
	dctx, cancel := context.WithCancel(ctx)
	t := time.AfterFunc(c.opt.Dial, cancel)
	req, err := eventsRequest(dctx, u, token, after)
	if err != nil {
		cancel()
		return nil, err
	}
	resp, err := hc.Do(req)
	if !t.Stop() {
		if err == nil {
			resp.Body.Close()
		}
		cancel()
		return nil, fmt.Errorf("collect: no answer within %s", c.opt.Dial)
	}
	if err != nil {
		cancel()
		return nil, err
	}
	if err := refused(resp); err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error { err := b.ReadCloser.Close(); b.cancel(); return err }

// eventsURL is the device's /events?mode=exact URL with its filters.
func eventsURL(raw string, topics []string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("collect: device URL %q: want https://host:port", raw)
	}
	u.Path = "/events"
	q := url.Values{}
	q.Set("mode", "exact")
	for _, t := range topics {
		q.Add("topic", t)
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// reading is the part of a reading's JSON the collector needs.
type reading struct {
	Seq   uint64    `json:"seq"`
	Topic string    `json:"topic"`
	TS    time.Time `json:"ts"`
	Unit  string    `json:"unit"`
}

type gapEvent struct {
	From uint64 `json:"from_seq"`
	To   uint64 `json:"to_seq"`
}

// read publishes the stream's events until it ends, goes idle, fails or
// the lease may have passed on. A reader goroutine, owned and waited for
// here, parses the body; this goroutine owns the Sender, settles each
// publish unit as soon as it is answered and starts the next with what
// arrived meanwhile.
func (c *Collector) read(ctx context.Context, r *devRun, s *Sender, floor uint64, body io.ReadCloser) error {
	idle := time.AfterFunc(c.opt.Idle, func() { body.Close() })
	defer idle.Stop()
	var park <-chan time.Time // fires when no record came for ParkAfter
	var parkTimer *time.Timer
	if c.opt.ParkAfter > 0 && time.Now().After(r.noPark) {
		parkTimer = time.NewTimer(c.opt.ParkAfter)
		defer parkTimer.Stop()
		park = parkTimer.C
	}
	events := make(chan sse.Event, 16)
	stop := make(chan struct{})
	readErr := make(chan error, 1)
	go func() {
		defer close(events)
		ar := &activity{r: body, idle: idle, d: c.opt.Idle}
		readErr <- sse.ReadEvents(ar, c.opt.MaxEvent, func(ev sse.Event) error {
			select {
			case events <- ev:
				return nil
			case <-stop:
				return context.Canceled
			}
		})
	}()
	defer func() {
		close(stop)
		body.Close()
		for range events { // wait for the reader to end
		}
	}()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				err := <-readErr
				if err == nil {
					err = errors.New("collect: stream ended")
				}
				return err
			}
			if time.Now().UnixNano() > r.deadline.Load() {
				return errLeaseEnded
			}
			if err := c.handle(ctx, r, s, floor, ev); err != nil {
				return err
			}
			if isRecord(ev) && parkTimer != nil {
				parkTimer.Reset(c.opt.ParkAfter)
			}
		case <-park:
			return errPark
		case <-s.Ready():
			if err := s.Poll(ctx); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// handle publishes one event.
func (c *Collector) handle(ctx context.Context, r *devRun, s *Sender, floor uint64, ev sse.Event) error {
	switch ev.Type {
	case "reading", "":
		var rd reading
		id, err := strconv.ParseUint(ev.ID, 10, 64)
		if err == nil {
			err = json.Unmarshal([]byte(ev.Data), &rd)
		}
		if err != nil || rd.Seq != id || id == 0 {
			r.state.Malformed.Add(1)
			return fmt.Errorf("collect: malformed reading (id %q): %.80s", ev.ID, ev.Data)
		}
		r.state.Received.Store(id)
		if id <= s.Acked() {
			return nil // already stored (the seam of a resume)
		}
		return s.Send(ctx, &Message{Seq: id, Topic: rd.Topic, Time: rd.TS, Unit: rd.Unit, Body: []byte(ev.Data)})
	case "gap":
		var g gapEvent
		if err := json.Unmarshal([]byte(ev.Data), &g); err != nil || g.From == 0 || g.To < g.From {
			r.state.Malformed.Add(1)
			return fmt.Errorf("collect: malformed gap: %.80s", ev.Data)
		}
		if g.To <= max(s.Acked(), floor) {
			return nil
		}
		return s.Send(ctx, &Message{Seq: g.To, GapFrom: max(g.From, s.Acked()+1, floor+1), Time: time.Now()})
	}
	return nil
}

// activity resets the idle timer on every read that returned data.
type activity struct {
	r    io.Reader
	idle *time.Timer
	d    time.Duration
}

func (a *activity) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if n > 0 {
		a.idle.Reset(a.d)
	}
	return n, err
}

package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eddy-iot/eddy/backoff"
)

// Sentinel errors.
var (
	// ErrStreamSubjects: the configured stream exists but its subjects do
	// not cover eddy.>; eddy refuses to publish into it (it would get "no
	// responders" for every message) and does not change it.
	ErrStreamSubjects = errors.New("upstream: stream does not cover eddy.>")
	// ErrNotFound: the stream holds no message of the device.
	ErrNotFound = errors.New("upstream: no message for the device")
)

// MinDuplicates is the shortest duplicate window eddy creates a stream with.
const MinDuplicates = 2 * time.Minute

// Options configure a Conn. Zero values take the documented defaults.
type Options struct {
	Servers  []string // nats:// URLs, cluster seeds
	Stream   string   // default "EDDY"
	Replicas int      // for a stream eddy creates; default 1
	// Duplicates is the duplicate window of a stream eddy creates; default
	// and minimum MinDuplicates (tests may set it lower with TestDuplicates).
	Duplicates time.Duration
	// TestDuplicates lets tests create a stream with a short window.
	TestDuplicates bool

	Name               string // client name shown by the server
	CredsFile, CAFile  string
	CertFile, KeyFile  string
	Username, Password string
	// Window bounds the messages a Sender holds that are not known
	// stored: the unit in flight (at most MaxBatch of them) and those
	// queued behind it; default 2*MaxBatch.
	Window         int
	AckTimeout     time.Duration // per publish unit; default 5s
	RequestTimeout time.Duration // one API attempt; default 2s
	ReconnectWait  time.Duration // between reconnection attempts; default 500ms
	Logger         *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Stream == "" {
		o.Stream = "EDDY"
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Duplicates == 0 || (o.Duplicates < MinDuplicates && !o.TestDuplicates) {
		o.Duplicates = max(o.Duplicates, MinDuplicates)
	}
	if o.Window <= 0 {
		o.Window = 2 * MaxBatch
	}
	if o.AckTimeout <= 0 {
		o.AckTimeout = 5 * time.Second
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 2 * time.Second
	}
	if o.ReconnectWait <= 0 {
		o.ReconnectWait = 500 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Conn is one NATS connection with its JetStream context and the stream.
// It reconnects by itself for ever; Close ends it. Safe for concurrent use.
type Conn struct {
	opt     Options
	nc      *nats.Conn
	js      jetstream.JetStream
	log     *slog.Logger
	replies *replies
	// atomic is whether the stream allows atomic batches (see
	// EnsureStream); until it is known, and without them, a Sender
	// publishes one message per unit.
	atomic   atomic.Bool
	warnedMu sync.Mutex
	warned   bool
}

// Connect dials the servers. It does not wait for a server to answer: the
// connection keeps retrying in the background (a device starts while the
// network is down), and every call that needs the server waits for it
// under its own context.
func Connect(o Options) (*Conn, error) {
	o = o.withDefaults()
	if len(o.Servers) == 0 {
		return nil, errors.New("upstream: connect: no servers")
	}
	c := &Conn{opt: o, log: o.Logger}
	nopts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(o.ReconnectWait),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.Timeout(2 * time.Second),
		nats.PingInterval(5 * time.Second),
		nats.MaxPingsOutstanding(2),
		nats.ReconnectBufSize(-1), // never queue while disconnected: a Sender republishes from its own state
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				c.log.Warn("upstream: disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { c.log.Info("upstream: connected", "server", nc.ConnectedUrlRedacted()) }),
	}
	if o.CredsFile != "" {
		nopts = append(nopts, nats.UserCredentials(o.CredsFile))
	}
	if o.CAFile != "" {
		nopts = append(nopts, nats.RootCAs(o.CAFile))
	}
	if o.CertFile != "" || o.KeyFile != "" {
		nopts = append(nopts, nats.ClientCert(o.CertFile, o.KeyFile))
	}
	if o.Username != "" {
		nopts = append(nopts, nats.UserInfo(o.Username, o.Password))
	}
	nc, err := nats.Connect(joinServers(o.Servers), nopts...)
	if err != nil {
		return nil, fmt.Errorf("upstream: connect %v: %w", o.Servers, err)
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(1<<16),
		jetstream.WithPublishAsyncTimeout(o.AckTimeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("upstream: jetstream: %w", err)
	}
	c.nc, c.js = nc, js
	if c.replies, err = newReplies(nc); err != nil {
		nc.Close()
		return nil, fmt.Errorf("upstream: reply subscription: %w", err)
	}
	return c, nil
}

func joinServers(s []string) string {
	out := ""
	for i, u := range s {
		if i > 0 {
			out += ","
		}
		out += u
	}
	return out
}

// Close closes the connection without waiting for outstanding
// acknowledgements; unacknowledged messages are republished by the next
// publisher from the stream's truth.
func (c *Conn) Close() { c.nc.Close() }

// Connected reports whether the connection is up now.
func (c *Conn) Connected() bool { return c.nc.IsConnected() }

// Reconnects counts the reconnections so far.
func (c *Conn) Reconnects() uint64 { return c.nc.Stats().Reconnects }

// Options returns the options in force (defaults applied).
func (c *Conn) Options() Options { return c.opt }

// NATS returns the underlying connection (for the key-value lease).
func (c *Conn) NATS() *nats.Conn { return c.nc }

// JetStream returns the JetStream context.
func (c *Conn) JetStream() jetstream.JetStream { return c.js }

// attempt runs fn with its own short timeout, again and again until it
// succeeds, fails for good (permanent reports so), or ctx ends: until a
// stream leader is elected, JetStream requests get no reply.
func (c *Conn) attempt(ctx context.Context, what string, permanent func(error) bool, fn func(context.Context) error) error {
	return c.attemptEach(ctx, what, c.opt.RequestTimeout, permanent, fn)
}

// attemptEach is attempt with each try bounded by timeout, retried from
// 50ms doubling up to 1s (package backoff). A closed connection ends it.
func (c *Conn) attemptEach(ctx context.Context, what string, timeout time.Duration, permanent func(error) bool, fn func(context.Context) error) error {
	bo := backoff.Backoff{First: 50 * time.Millisecond, Max: time.Second}
	start, warned := time.Now(), time.Time{}
	for {
		actx, cancel := context.WithTimeout(ctx, timeout)
		err := fn(actx)
		cancel()
		if err == nil || (permanent != nil && permanent(err)) {
			return err
		}
		if c.nc.IsClosed() {
			return fmt.Errorf("upstream: %s: %w (last error: %v)", what, nats.ErrConnectionClosed, err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("upstream: %s: %w (last error: %v)", what, ctx.Err(), err)
		}
		if time.Since(start) > 5*time.Second && time.Since(warned) > 30*time.Second {
			warned = time.Now()
			c.log.Warn("upstream: still retrying", "op", what, "for", time.Since(start).Round(time.Second), "err", err)
		} else {
			c.log.Debug("upstream: retrying", "op", what, "err", err)
		}
		if !bo.Sleep(ctx) {
			return fmt.Errorf("upstream: %s: %w (last error: %v)", what, ctx.Err(), err)
		}
	}
}

// EnsureStream creates the stream when it is missing and checks it when it
// is present, retrying until a leader answers or ctx ends. It never
// updates an existing stream.
func (c *Conn) EnsureStream(ctx context.Context) error {
	var info *jetstream.StreamInfo
	permanent := func(err error) bool { return errors.Is(err, ErrStreamSubjects) }
	err := c.attempt(ctx, "ensure stream "+c.opt.Stream, permanent, func(ctx context.Context) error {
		s, err := c.js.Stream(ctx, c.opt.Stream)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			s, err = c.js.CreateStream(ctx, jetstream.StreamConfig{
				Name:        c.opt.Stream,
				Description: "eddy fleet telemetry (created by eddy)",
				Subjects:    []string{SubjectPrefix + ".>"},
				Storage:     jetstream.FileStorage,
				Replicas:    c.opt.Replicas,
				Duplicates:  c.opt.Duplicates,
				Retention:   jetstream.LimitsPolicy,
				Discard:     jetstream.DiscardOld,
				// Atomic batches: a Sender's unit of many records is
				// stored whole or not at all (see Sender).
				AllowAtomicPublish: true,
			})
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				return err // created by another publisher meanwhile: look again
			}
			if err == nil {
				c.log.Info("upstream: stream created", "stream", c.opt.Stream, "replicas", c.opt.Replicas, "duplicates", c.opt.Duplicates)
			}
		}
		if err != nil {
			return err
		}
		info = s.CachedInfo()
		if !coversEddy(info.Config.Subjects) {
			return fmt.Errorf("%w: stream %s has subjects %v; add %q to it or name another stream",
				ErrStreamSubjects, c.opt.Stream, info.Config.Subjects, SubjectPrefix+".>")
		}
		return nil
	})
	if err != nil {
		return err
	}
	if info.Config.AllowAtomicPublish {
		c.atomic.Store(true)
	} else {
		c.noAtomic("the stream does not allow atomic batches")
	}
	if info.Config.Duplicates < MinDuplicates {
		c.log.Warn("upstream: the stream's duplicate window is short; eddy does not change it (republishing does not rely on it)",
			"stream", c.opt.Stream, "duplicates", info.Config.Duplicates)
	}
	return nil
}

// noAtomic makes Senders publish one message per unit, and warns once.
// An existing stream without AllowAtomicPublish is not changed (eddy
// never changes a stream behind the operator's back) and not refused
// either: single conditional publishes keep every guarantee, only slower
// (one record per round trip per device), and refusing would stop a
// fleet that upgraded eddy before the operator edited the stream, until
// the devices' logs trim what never went upstream.
func (c *Conn) noAtomic(why string) {
	c.atomic.Store(false)
	c.warnedMu.Lock()
	defer c.warnedMu.Unlock()
	if c.warned {
		return
	}
	c.warned = true
	c.log.Warn("upstream: "+why+"; publishing one record per round trip per device, which is much slower. "+
		"Allow them with: nats stream edit "+c.opt.Stream+" --allow-batch (AllowAtomicPublish, nats-server 2.12 or later)",
		"stream", c.opt.Stream)
}

// AtomicBatches reports whether Senders publish atomic batches.
func (c *Conn) AtomicBatches() bool { return c.atomic.Load() }

// coversEddy reports whether one of subjects matches every eddy.> subject.
func coversEddy(subjects []string) bool {
	return slices.ContainsFunc(subjects, func(s string) bool { return s == ">" || s == SubjectPrefix+".>" })
}

// Position is the last record of a device the stream holds.
type Position struct {
	Epoch     string
	Seq       uint64 // Eddy-Seq (the last seq a gap covers, for a gap)
	StreamSeq uint64 // its sequence in the stream
}

// storedMsg is one message read back from the stream.
type storedMsg struct {
	Subject   string
	StreamSeq uint64
	Header    nats.Header
}

// msgGetRequest and msgGetResponse are JetStream's STREAM.MSG.GET API.
type msgGetRequest struct {
	Seq     uint64 `json:"seq,omitempty"`
	LastFor string `json:"last_by_subj,omitempty"`
	NextFor string `json:"next_by_subj,omitempty"`
}

type msgGetResponse struct {
	Error *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
	Message *struct {
		Subject string `json:"subject"`
		Seq     uint64 `json:"seq"`
		Header  []byte `json:"hdrs"` // base64 in the JSON
	} `json:"message"`
}

// getMsg reads one message through the stream leader (never a replica's
// possibly stale copy, which a direct get could return).
func (c *Conn) getMsg(ctx context.Context, req msgGetRequest) (*storedMsg, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var out *storedMsg
	notFound := func(err error) bool { return errors.Is(err, ErrNotFound) }
	err = c.attempt(ctx, "read the stream", notFound, func(ctx context.Context) error {
		m, err := c.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+c.opt.Stream, body)
		if err != nil {
			return err
		}
		var resp msgGetResponse
		if err := json.Unmarshal(m.Data, &resp); err != nil {
			return fmt.Errorf("upstream: bad STREAM.MSG.GET reply: %w", err)
		}
		if resp.Error != nil {
			if resp.Error.Code == 404 && resp.Error.ErrCode == int(jetstream.JSErrCodeMessageNotFound) {
				return ErrNotFound
			}
			return fmt.Errorf("upstream: STREAM.MSG.GET %s: %s (%d)", c.opt.Stream, resp.Error.Description, resp.Error.ErrCode)
		}
		if resp.Message == nil {
			return errors.New("upstream: STREAM.MSG.GET: empty reply")
		}
		h := nats.Header{}
		if len(resp.Message.Header) > 0 {
			if h, err = nats.DecodeHeadersMsg(resp.Message.Header); err != nil {
				return fmt.Errorf("upstream: headers of stream message %d: %w", resp.Message.Seq, err)
			}
		}
		out = &storedMsg{Subject: resp.Message.Subject, StreamSeq: resp.Message.Seq, Header: h}
		return nil
	})
	return out, err
}

// LastPosition reads the device's last message in the stream. It returns
// ErrNotFound when the stream holds none.
func (c *Conn) LastPosition(ctx context.Context, device string) (Position, error) {
	m, err := c.getMsg(ctx, msgGetRequest{LastFor: DeviceFilter(device)})
	if err != nil {
		return Position{}, err
	}
	return positionOf(m)
}

func positionOf(m *storedMsg) (Position, error) {
	seq, err := strconv.ParseUint(m.Header.Get(HdrSeq), 10, 64)
	if err != nil {
		return Position{}, fmt.Errorf("upstream: stream message %d on %s has no valid %s header: %q",
			m.StreamSeq, m.Subject, HdrSeq, m.Header.Get(HdrSeq))
	}
	return Position{Epoch: m.Header.Get(HdrEpoch), Seq: seq, StreamSeq: m.StreamSeq}, nil
}

// scanAfter calls fn with every message of the device stored after stream
// sequence from, in stream order, at most limit of them.
func (c *Conn) scanAfter(ctx context.Context, device string, from uint64, limit int, fn func(Position)) error {
	for range limit {
		m, err := c.getMsg(ctx, msgGetRequest{Seq: from + 1, NextFor: DeviceFilter(device)})
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		from = m.StreamSeq
		if p, err := positionOf(m); err == nil {
			fn(p)
		}
	}
	return nil
}

// replies routes the answers to publish units, on one subscription per
// connection (_INBOX.<id>.<n>), to the unit waiting for each. An entry
// ends when its answer arrives or it expires, whichever comes first.
type replies struct {
	prefix string
	sub    *nats.Subscription
	mu     sync.Mutex // protects below
	next   uint64
	wait   map[string]*reply
}

// reply is one awaited answer: done is closed when msg is set, or with
// msg nil when it expired or was cancelled.
type reply struct {
	subject string
	done    chan struct{}
	msg     *nats.Msg
}

func newReplies(nc *nats.Conn) (*replies, error) {
	r := &replies{prefix: nc.NewInbox() + ".", wait: map[string]*reply{}}
	sub, err := nc.Subscribe(r.prefix+"*", func(m *nats.Msg) { r.deliver(m.Subject, m) })
	if err != nil {
		return nil, err
	}
	r.sub = sub
	return r, nil
}

func (r *replies) open() *reply {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next++
	rp := &reply{subject: r.prefix + strconv.FormatUint(r.next, 10), done: make(chan struct{})}
	r.wait[rp.subject] = rp
	return rp
}

func (r *replies) deliver(subject string, m *nats.Msg) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rp, ok := r.wait[subject]
	if !ok {
		return // late: expired or cancelled
	}
	delete(r.wait, subject)
	rp.msg = m
	close(rp.done)
}

// expire ends rp without an answer, unless it has one.
func (r *replies) expire(rp *reply) { r.deliver(rp.subject, nil) }

// cancel forgets rp; a late answer is dropped.
func (r *replies) cancel(rp *reply) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.wait, rp.subject)
}

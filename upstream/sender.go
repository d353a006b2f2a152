package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// Header names of every message eddy publishes.
const (
	HdrSeq     = "Eddy-Seq"
	HdrEpoch   = "Eddy-Epoch"
	HdrTs      = "Eddy-Ts"
	HdrUnit    = "Eddy-Unit"
	HdrGapFrom = "Eddy-Gap-From" // on gap messages: the first seq the gap covers
)

// JetStream's atomic batch headers (ADR-50; nats.go v1.56 has no API for
// them) and the expected-last headers a unit's first message carries.
const (
	hdrBatchID     = "Nats-Batch-Id"
	hdrBatchSeq    = "Nats-Batch-Sequence"
	hdrBatchCommit = "Nats-Batch-Commit"
)

// MaxBatch is the most records one atomic batch holds: the server's
// default limit (streamDefaultMaxAtomicBatchSize in nats-server v2.15).
const MaxBatch = 1000

// JetStream error codes a Sender acts on (nats-server's
// jetstream_errors_generated.go).
const (
	errCodeWrongLastSeq      = 10071 // wrong last sequence: {seq}
	errCodeWrongLastSeqConst = 10164 // wrong last sequence (a conflicting publish is in process)
	errCodeAtomicDisabled    = 10174 // the stream does not allow atomic publish
	errCodeIncompleteBatch   = 10176 // a batch message was lost, or the batch was refused before its commit
	errCodeBatchTooLarge     = 10199 // more messages than the server's max_batch_size
	errCodeBatchDuplicate    = 10201 // the batch holds a Nats-Msg-Id the stream has already stored
	errCodeTooManyInflight   = 10210 // too many atomic batches open on the stream or server
)

// Message is one record to publish, or a gap.
type Message struct {
	Seq   uint64
	Topic string
	Time  time.Time // when the value was observed: Eddy-Ts
	Unit  string
	Body  []byte // the record's JSON as on /events
	// GapFrom > 0 makes this a gap: seqs GapFrom..Seq were trimmed from the
	// device's log before they went upstream, or (Reason "too_large") the
	// record is larger than the server takes.
	GapFrom uint64
	Reason  string // a gap's reason in its JSON; "" for trimmed records
}

// Stats are a Sender's counters; safe to read while it runs. One Stats may
// be shared by the successive Senders of one device.
type Stats struct {
	Published   atomic.Uint64 // records newly stored
	Duplicates  atomic.Uint64 // publishes JetStream answered as duplicates of stored messages
	Republished atomic.Uint64 // records sent again after a failed or unanswered publish
	Units       atomic.Uint64 // publish units acknowledged (a single message or an atomic batch)
	Gaps        atomic.Uint64 // gap messages stored
	GapRecords  atomic.Uint64 // records the gaps cover
	Failures    atomic.Uint64 // publish units refused, failed or unanswered
	AckedSeq    atomic.Uint64 // Eddy-Seq of the last stored message
	AckedTime   atomic.Int64  // its Eddy-Ts, unix nanoseconds
	// OnAck, when set before use, observes every stored record: its
	// Eddy-Ts and the time from its (last) publish to the ack.
	OnAck func(seq uint64, ts time.Time, publishToAck time.Duration)
}

// pending is one message not yet known stored.
type pending struct {
	seq  uint64
	ts   time.Time
	gap  uint64 // records a gap message covers; 0 for a record
	msg  *nats.Msg
	size int // subject, headers and body, roughly
	sent time.Time
}

// unit is the publish in flight: s.queue[:n], as one message or as one
// atomic batch, answered on one reply subject.
type unit struct {
	n     int
	r     *reply
	timer *time.Timer
	batch bool
}

// Sender publishes one device's records of one epoch, in seq order,
// exactly once. It is used by one goroutine at a time.
//
// At most one publish unit is in flight: a single message when one record
// waits, otherwise an atomic batch of up to MaxBatch records (and at most
// the connection's max_payload bytes). The unit's first message carries
// Nats-Expected-Last-Subject-Sequence (the stream sequence of the device's
// last stored message, 0 for none) with
// Nats-Expected-Last-Subject-Sequence-Subject eddy.<device>.>, so the
// stream stores the unit only right after what this Sender knows is
// stored, and stores all of it or nothing. On any failure (a refused
// condition, no answer in time, no responders, a leader change, a lost
// batch message) the Sender reads the device's last message back from the
// stream leader, drops the records it holds, and publishes the rest again
// under the new condition, with the package's retry backoff
// (Conn.attemptEach). So the stream holds every record once, in seq
// order, whatever was lost or answered late.
type Sender struct {
	c      *Conn
	device string
	epoch  string
	filter string
	stats  *Stats
	queue  []*pending // not known stored, in seq order; the unit in flight is its head
	u      *unit
	known  uint64 // stream sequence of the device's last message known stored
	acked  uint64 // Eddy-Seq of this epoch's last message known stored
	maxN   int    // records per unit: MaxBatch, less after the server refused a batch as too large
}

// NewSender returns a Sender for device's records of epoch. Call Resume
// before the first Send.
func (c *Conn) NewSender(device, epoch string, stats *Stats) *Sender {
	if stats == nil {
		stats = &Stats{}
	}
	return &Sender{c: c, device: device, epoch: epoch, filter: DeviceFilter(device), stats: stats, maxN: min(MaxBatch, max(1, c.opt.Window/2))}
}

// Resume reads the device's last message in the stream and returns the
// seq to continue after: its Eddy-Seq when it belongs to this epoch, 0
// otherwise (a new epoch starts at the beginning of its log). sameEpoch
// reports which.
func (s *Sender) Resume(ctx context.Context) (after uint64, sameEpoch bool, err error) {
	p, err := s.c.LastPosition(ctx, s.device)
	if errors.Is(err, ErrNotFound) {
		s.known, s.acked = 0, 0
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("upstream: resume %s: %w", s.device, err)
	}
	s.resumeAt(p)
	return s.acked, p.Epoch == s.epoch, nil
}

// resumeAt starts the Sender after p, the device's last stored message.
func (s *Sender) resumeAt(p Position) {
	s.known, s.acked = p.StreamSeq, 0
	if p.Epoch == s.epoch {
		s.acked = p.Seq
	}
}

// Acked is the Eddy-Seq of this epoch's last message known stored.
func (s *Sender) Acked() uint64 { return s.acked }

// Outstanding is the number of messages not yet known stored.
func (s *Sender) Outstanding() int { return len(s.queue) }

// Ready is closed when the unit in flight is answered or times out (call
// Poll then); nil when none is in flight.
func (s *Sender) Ready() <-chan struct{} {
	if s.u == nil {
		return nil
	}
	return s.u.r.done
}

func (s *Sender) build(m *Message) *nats.Msg {
	nm := nats.NewMsg("")
	seq := strconv.FormatUint(m.Seq, 10)
	if m.GapFrom > 0 {
		nm.Subject = GapSubject(s.device)
		from := strconv.FormatUint(m.GapFrom, 10)
		nm.Header.Set(jetstream.MsgIDHeader, s.device+":"+s.epoch+":"+from+"-"+seq)
		nm.Header.Set(HdrGapFrom, from)
		nm.Data = fmt.Appendf(nil, `{"dropped":%d,"from_seq":%d,"to_seq":%d`, m.Seq-m.GapFrom+1, m.GapFrom, m.Seq)
		if m.Reason != "" {
			nm.Data = fmt.Appendf(nm.Data, `,"reason":%q`, m.Reason)
		}
		nm.Data = append(nm.Data, '}')
	} else {
		nm.Subject = Subject(s.device, m.Topic)
		nm.Header.Set(jetstream.MsgIDHeader, s.device+":"+s.epoch+":"+seq)
		nm.Data = m.Body
	}
	nm.Header.Set(HdrSeq, seq)
	nm.Header.Set(HdrEpoch, s.epoch)
	if !m.Time.IsZero() {
		nm.Header.Set(HdrTs, m.Time.UTC().Format(time.RFC3339Nano))
	}
	if m.Unit != "" {
		nm.Header.Set(HdrUnit, m.Unit)
	}
	return nm
}

// Send queues m, whose Seq must be above every Seq sent before, and
// publishes it as soon as no unit is in flight. It blocks while
// Options.Window messages wait; when a unit fails it recovers (see Sender)
// before returning. It returns an error only when ctx ends or the
// connection is closed.
func (s *Sender) Send(ctx context.Context, m *Message) error {
	if n := len(s.queue); n > 0 && m.Seq <= s.queue[n-1].seq || m.Seq <= s.acked {
		return fmt.Errorf("upstream: send %s seq %d: not above the last sent", s.device, m.Seq)
	}
	s.queue = append(s.queue, s.entry(m))
	if err := s.Poll(ctx); err != nil {
		return err
	}
	for len(s.queue) >= s.c.opt.Window {
		if err := s.step(ctx); err != nil {
			return err
		}
	}
	return nil
}

// entry builds m's queue entry.
func (s *Sender) entry(m *Message) *pending {
	p := &pending{seq: m.Seq, ts: m.Time, msg: s.build(m)}
	if m.GapFrom > 0 {
		p.gap = m.Seq - m.GapFrom + 1
	}
	p.size = len(p.msg.Subject) + len(p.msg.Data) + 160 // headers: ids, seq, epoch, ts, unit, batch
	return p
}

// tooLarge replaces a record the server would refuse on every retry,
// wedging the device behind it, with a gap that says why.
func (s *Sender) tooLarge(i int, limit int64) {
	p := s.queue[i]
	s.c.log.Warn("upstream: a record larger than the server's max_payload goes upstream as a gap",
		"device", s.device, "seq", p.seq, "subject", p.msg.Subject, "bytes", p.size, "max_payload", limit)
	s.queue[i] = s.entry(&Message{Seq: p.seq, GapFrom: p.seq, Time: p.ts, Reason: "too_large"})
}

// Poll settles the unit in flight if it is answered, and starts the next
// when none is in flight. It blocks only to recover from a failure.
func (s *Sender) Poll(ctx context.Context) error {
	if s.u != nil {
		select {
		case <-s.u.r.done:
		default:
			return nil
		}
		if err := s.settle(ctx); err != nil {
			return err
		}
	}
	if len(s.queue) > 0 && s.u == nil {
		if err := s.start(); err != nil {
			s.stats.Failures.Add(1)
			return s.recover(ctx, err)
		}
	}
	return nil
}

// step waits for the unit in flight (starting one if none is) and settles it.
func (s *Sender) step(ctx context.Context) error {
	if s.u == nil {
		if err := s.Poll(ctx); err != nil || s.u == nil {
			return err
		}
	}
	select {
	case <-s.u.r.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.Poll(ctx)
}

// Flush waits until every message sent is stored (recovering on failures)
// or ctx ends.
func (s *Sender) Flush(ctx context.Context) error {
	for len(s.queue) > 0 {
		if err := s.step(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Close abandons the unit in flight (its outcome is read back from the
// stream by the next Sender). The Sender must not be used afterwards.
func (s *Sender) Close() {
	if s.u != nil {
		s.drop()
	}
	s.queue = nil
}

func (s *Sender) drop() {
	s.u.timer.Stop()
	s.c.replies.cancel(s.u.r)
	s.u = nil
}

// start publishes the head of the queue as one unit.
func (s *Sender) start() error {
	n, size := 0, 0
	// The server's limit; before the first connection it is unknown (0),
	// and nothing is judged too large.
	limit := int(s.c.nc.MaxPayload())
	if limit > 0 && s.queue[0].gap == 0 && s.queue[0].size > limit {
		s.tooLarge(0, int64(limit))
	}
	if limit <= 0 {
		limit = 1 << 20
	}
	if s.c.atomic.Load() {
		for n < len(s.queue) && n < s.maxN && (n == 0 || size+s.queue[n].size <= limit) {
			size += s.queue[n].size
			n++
		}
	} else {
		n = 1
	}
	r := s.c.replies.open()
	u := &unit{n: n, r: r, batch: n > 1}
	u.timer = time.AfterFunc(s.c.opt.AckTimeout, func() { s.c.replies.expire(r) })
	s.u = u
	now := time.Now()
	id := ""
	if u.batch {
		id = nuid.Next()
	}
	for i, p := range s.queue[:n] {
		h := p.msg.Header
		h.Del(jetstream.ExpectedStreamHeader)
		h.Del(jetstream.ExpectedLastSubjSeqHeader)
		h.Del(jetstream.ExpectedLastSubjSeqSubjHeader)
		h.Del(hdrBatchID)
		h.Del(hdrBatchSeq)
		h.Del(hdrBatchCommit)
		if i == 0 {
			h.Set(jetstream.ExpectedStreamHeader, s.c.opt.Stream)
			h.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(s.known, 10))
			h.Set(jetstream.ExpectedLastSubjSeqSubjHeader, s.filter)
		}
		p.msg.Reply = ""
		if u.batch {
			h.Set(hdrBatchID, id)
			h.Set(hdrBatchSeq, strconv.Itoa(i+1))
		}
		if i == n-1 {
			// Only the commit asks for an answer: the server answers
			// the others (with an empty message) only when they have
			// a reply subject, and reports their failure in the
			// commit's answer (an incomplete batch).
			p.msg.Reply = r.subject
			if u.batch {
				h.Set(hdrBatchCommit, "1")
			}
		}
		p.sent = now
		if err := s.c.nc.PublishMsg(p.msg); err != nil {
			s.drop()
			return fmt.Errorf("upstream: publish %s: %w", s.device, err)
		}
	}
	return nil
}

// pubAck is JetStream's answer to a publish or a batch commit.
type pubAck struct {
	Error *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
	Stream    string `json:"stream"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate"`
	Count     int    `json:"count"`
}

// apiError is a JetStream refusal.
type apiError struct {
	code int
	desc string
}

func (e *apiError) Error() string { return fmt.Sprintf("JetStream: %s (%d)", e.desc, e.code) }

var (
	errAckTimeout   = errors.New("no acknowledgement in time")
	errNoResponders = errors.New("no responders (no stream leader)")
	errDuplicate    = errors.New("acknowledged as a duplicate")
)

// answer decodes the unit's reply.
func answer(m *nats.Msg) (*pubAck, error) {
	if m == nil {
		return nil, errAckTimeout
	}
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
		return nil, errNoResponders
	}
	var a pubAck
	if err := json.Unmarshal(m.Data, &a); err != nil {
		return nil, fmt.Errorf("bad acknowledgement %q: %w", m.Data, err)
	}
	if a.Error != nil {
		return nil, &apiError{code: a.Error.ErrCode, desc: a.Error.Description}
	}
	if a.Duplicate {
		return &a, errDuplicate
	}
	return &a, nil
}

// settle handles the answered (or timed-out) unit in flight.
func (s *Sender) settle(ctx context.Context) error {
	err := s.take()
	if err == nil {
		return nil
	}
	return s.recover(ctx, err)
}

// take applies the answer of the unit in flight: the records are stored,
// or the error says why not (the unit is then over either way).
func (s *Sender) take() error {
	u := s.u
	s.u = nil
	u.timer.Stop()
	ack, err := answer(u.r.msg)
	if err != nil {
		s.stats.Failures.Add(1)
		if errors.Is(err, errDuplicate) {
			s.stats.Duplicates.Add(1)
		}
		var ae *apiError
		if errors.As(err, &ae) {
			switch ae.code {
			case errCodeBatchTooLarge:
				s.maxN = max(1, u.n/2)
			case errCodeAtomicDisabled:
				s.c.noAtomic("the stream refused an atomic batch")
			}
		}
		return err
	}
	s.known = ack.Seq
	s.stats.Units.Add(1)
	for i, p := range s.queue[:u.n] {
		s.stored(p)
		s.queue[i] = nil
	}
	s.queue = s.queue[u.n:]
	return nil
}

func (s *Sender) stored(p *pending) {
	s.acked = max(s.acked, p.seq)
	s.stats.AckedSeq.Store(s.acked)
	if !p.ts.IsZero() {
		s.stats.AckedTime.Store(p.ts.UnixNano())
	}
	if p.gap > 0 {
		s.stats.Gaps.Add(1)
		s.stats.GapRecords.Add(p.gap)
	} else {
		s.stats.Published.Add(1)
	}
	if s.stats.OnAck != nil && p.gap == 0 {
		s.stats.OnAck(p.seq, p.ts, time.Since(p.sent))
	}
}

// recover handles a failed unit: until one unit is stored (or nothing is
// left to publish), it reads the device's last message back from the
// stream leader, drops what the stream holds, and publishes the head of
// the rest again under the new condition, with Conn.attemptEach's backoff
// between tries ("too many inflight batches" included).
func (s *Sender) recover(ctx context.Context, cause error) error {
	s.c.log.Debug("upstream: publish failed; reading the stream back", "device", s.device, "epoch", s.epoch,
		"from_seq", s.headSeq(), "outstanding", len(s.queue), "err", cause)
	first := true
	return s.c.attemptEach(ctx, "publish "+s.device, s.c.opt.AckTimeout+s.c.opt.RequestTimeout, nil, func(actx context.Context) error {
		if !first {
			s.stats.Failures.Add(1)
		}
		first = false
		if err := s.resync(actx); err != nil {
			return err
		}
		if len(s.queue) == 0 {
			return nil
		}
		s.stats.Republished.Add(uint64(min(len(s.queue), s.maxN)))
		if err := s.start(); err != nil {
			return err
		}
		select {
		case <-s.u.r.done:
		case <-actx.Done():
			s.drop()
			return actx.Err()
		}
		return s.take()
	})
}

// resync reads the device's last message from the stream leader and drops
// the queued records it shows stored.
func (s *Sender) resync(ctx context.Context) error {
	p, err := s.c.LastPosition(ctx, s.device)
	if errors.Is(err, ErrNotFound) {
		s.known = 0
		return nil
	}
	if err != nil {
		return err
	}
	s.known = p.StreamSeq
	if p.Epoch != s.epoch {
		return nil
	}
	dropped := 0
	for len(s.queue) > 0 && s.queue[0].seq <= p.Seq {
		s.stored(s.queue[0])
		s.queue[0] = nil
		s.queue = s.queue[1:]
		dropped++
	}
	s.acked = max(s.acked, p.Seq)
	s.stats.AckedSeq.Store(s.acked)
	if dropped > 0 {
		s.c.log.Debug("upstream: stored before its acknowledgement was lost", "device", s.device, "records", dropped)
	}
	return nil
}

func (s *Sender) headSeq() uint64 {
	if len(s.queue) == 0 {
		return 0
	}
	return s.queue[0].seq
}

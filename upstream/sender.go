package upstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Header names of every message eddy publishes.
const (
	HdrSeq     = "Eddy-Seq"
	HdrEpoch   = "Eddy-Epoch"
	HdrTs      = "Eddy-Ts"
	HdrUnit    = "Eddy-Unit"
	HdrGapFrom = "Eddy-Gap-From" // on gap messages: the first seq the gap covers
)

// Message is one record to publish, or a gap.
type Message struct {
	Seq   uint64
	Topic string
	Time  time.Time // when the value was observed: Eddy-Ts
	Unit  string
	Body  []byte // the record's JSON as on /events
	// GapFrom > 0 makes this a gap: seqs GapFrom..Seq were trimmed from the
	// device's log before they went upstream.
	GapFrom uint64
}

// Stats are a Sender's counters; safe to read while it runs. One Stats may
// be shared by the successive Senders of one device.
type Stats struct {
	Published   atomic.Uint64 // records newly stored (acknowledged, not duplicates)
	Duplicates  atomic.Uint64 // acknowledged as duplicates of a stored message
	Republished atomic.Uint64 // sent again after a failed or timed-out acknowledgement
	Reordered   atomic.Uint64 // stored after a later record of the device (see package doc)
	Gaps        atomic.Uint64 // gap messages stored
	GapRecords  atomic.Uint64 // records the gaps cover
	Failures    atomic.Uint64 // failed or timed-out acknowledgements
	AckedSeq    atomic.Uint64 // Eddy-Seq of the last acknowledged message
	AckedTime   atomic.Int64  // its Eddy-Ts, unix nanoseconds
	// OnAck, when set before use, observes every acknowledged record:
	// its Eddy-Ts and the time from its (last) publish to the ack.
	OnAck func(seq uint64, ts time.Time, publishToAck time.Duration)
}

// pending is one published, unacknowledged message.
type pending struct {
	seq  uint64
	ts   time.Time
	gap  uint64 // records a gap message covers; 0 for a record
	msg  *nats.Msg
	fut  jetstream.PubAckFuture // nil when the publish itself failed
	sent time.Time
}

// Sender publishes one device's records of one epoch, in seq order, with
// a bounded window of outstanding acknowledgements. It is used by one
// goroutine at a time.
type Sender struct {
	c      *Conn
	device string
	epoch  string
	stats  *Stats
	pend   []*pending
	known  uint64 // stream sequence of the device's last message known stored
	acked  uint64 // Eddy-Seq of the last message known stored in this epoch
}

// NewSender returns a Sender for device's records of epoch. Call Resume
// before the first Send.
func (c *Conn) NewSender(device, epoch string, stats *Stats) *Sender {
	if stats == nil {
		stats = &Stats{}
	}
	return &Sender{c: c, device: device, epoch: epoch, stats: stats}
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
	s.known = p.StreamSeq
	if p.Epoch != s.epoch {
		s.acked = 0
		return 0, false, nil
	}
	s.acked = p.Seq
	return p.Seq, true, nil
}

// Acked is the Eddy-Seq of this epoch's last message known stored.
func (s *Sender) Acked() uint64 { return s.acked }

// Outstanding is the number of unacknowledged messages.
func (s *Sender) Outstanding() int { return len(s.pend) }

func (s *Sender) build(m *Message) *nats.Msg {
	nm := nats.NewMsg("")
	seq := strconv.FormatUint(m.Seq, 10)
	if m.GapFrom > 0 {
		nm.Subject = GapSubject(s.device)
		from := strconv.FormatUint(m.GapFrom, 10)
		nm.Header.Set(jetstream.MsgIDHeader, s.device+":"+s.epoch+":"+from+"-"+seq)
		nm.Header.Set(HdrGapFrom, from)
		nm.Data = fmt.Appendf(nil, `{"dropped":%d,"from_seq":%d,"to_seq":%d}`, m.Seq-m.GapFrom+1, m.GapFrom, m.Seq)
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

// Send publishes m, whose Seq must be above every Seq sent before. It
// blocks while the window is full; when an acknowledgement fails it
// recovers (see the package doc) before returning. It returns an error
// only when ctx ends.
func (s *Sender) Send(ctx context.Context, m *Message) error {
	if n := len(s.pend); n > 0 && m.Seq <= s.pend[n-1].seq || m.Seq <= s.acked {
		return fmt.Errorf("upstream: send %s seq %d: not above the last sent", s.device, m.Seq)
	}
	p := &pending{seq: m.Seq, ts: m.Time, msg: s.build(m)}
	if m.GapFrom > 0 {
		p.gap = m.Seq - m.GapFrom + 1
	}
	s.publish(p)
	s.pend = append(s.pend, p)
	for len(s.pend) >= s.c.opt.Window {
		if err := s.reapHead(ctx); err != nil {
			return err
		}
	}
	// Take what is already acknowledged, without waiting.
	for len(s.pend) > 0 && s.pend[0].fut != nil {
		select {
		case ack := <-s.pend[0].fut.Ok():
			s.acknowledged(s.pend[0], ack)
			s.pend = s.pend[1:]
			continue
		default:
		}
		break
	}
	return nil
}

func (s *Sender) publish(p *pending) {
	p.sent = time.Now()
	// No client-side retries: nats.go retries a "no responders" answer
	// per message on a timer, which reorders them; recover republishes
	// in order instead.
	fut, err := s.c.js.PublishMsgAsync(p.msg, jetstream.WithExpectStream(s.c.opt.Stream), jetstream.WithRetryAttempts(0))
	if err != nil {
		p.fut = nil
		return
	}
	p.fut = fut
}

// Flush waits until every message sent is acknowledged (recovering on
// failures) or ctx ends.
func (s *Sender) Flush(ctx context.Context) error {
	for len(s.pend) > 0 {
		if err := s.reapHead(ctx); err != nil {
			return err
		}
	}
	return nil
}

// reapHead waits for the oldest outstanding acknowledgement.
func (s *Sender) reapHead(ctx context.Context) error {
	p := s.pend[0]
	if p.fut == nil {
		return s.recover(ctx)
	}
	select {
	case ack := <-p.fut.Ok():
		s.acknowledged(p, ack)
		s.pend[0] = nil
		s.pend = s.pend[1:]
		return nil
	case <-p.fut.Err(): // delivered once: forget the future
		p.fut = nil
		return s.recover(ctx)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Sender) acknowledged(p *pending, ack *jetstream.PubAck) {
	s.known = max(s.known, ack.Sequence)
	s.stored(p, ack.Duplicate)
}

func (s *Sender) stored(p *pending, dup bool) {
	s.acked = max(s.acked, p.seq)
	s.stats.AckedSeq.Store(s.acked)
	if !p.ts.IsZero() {
		s.stats.AckedTime.Store(p.ts.UnixNano())
	}
	switch {
	case dup:
		s.stats.Duplicates.Add(1)
	case p.gap > 0:
		s.stats.Gaps.Add(1)
		s.stats.GapRecords.Add(p.gap)
	default:
		s.stats.Published.Add(1)
	}
	if s.stats.OnAck != nil && p.gap == 0 {
		s.stats.OnAck(p.seq, p.ts, time.Since(p.sent))
	}
}

// recover handles a failed or timed-out acknowledgement: it waits for the
// connection and for every outstanding acknowledgement to settle, asks the
// stream which of the outstanding messages it holds, and republishes the
// others in seq order, until all are stored or ctx ends.
func (s *Sender) recover(ctx context.Context) error {
	wait := 100 * time.Millisecond
	base := s.known // every outstanding message is stored after it, if at all
	present := map[uint64]bool{}
	var highest uint64
	for round := 0; ; round++ {
		s.stats.Failures.Add(1)
		if round > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return ctx.Err()
			}
			wait = min(2*wait, 2*time.Second)
		}
		if err := s.waitConnected(ctx); err != nil {
			return err
		}
		// Settle: every future ends in an ack or an error (they time out).
		for _, p := range s.pend {
			if p.fut == nil {
				continue
			}
			select {
			case ack := <-p.fut.Ok():
				s.known = max(s.known, ack.Sequence)
				present[p.seq] = true
				highest = max(highest, p.seq)
			case <-p.fut.Err():
			case <-ctx.Done():
				return ctx.Err()
			}
			p.fut = nil
		}
		// Ask the stream what else it holds after the last known message.
		err := s.c.scanAfter(ctx, s.device, base, len(s.pend)+4*s.c.opt.Window, func(p Position) {
			s.known = max(s.known, p.StreamSeq)
			if p.Epoch == s.epoch {
				present[p.Seq] = true
				highest = max(highest, p.Seq)
			}
		})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			continue
		}
		missing := s.pend[:0:0]
		for _, p := range s.pend {
			if present[p.seq] {
				s.stored(p, false)
				continue
			}
			if p.seq < highest {
				s.stats.Reordered.Add(1)
			}
			missing = append(missing, p)
		}
		if len(missing) > 0 {
			s.c.log.Warn("upstream: republishing unacknowledged records", "device", s.device, "epoch", s.epoch,
				"from_seq", missing[0].seq, "records", len(missing))
		}
		// Republish one at a time, each on the condition that the
		// device's last message in the stream is the one we know of: a
		// late original (stored by a new leader after our scan) makes the
		// condition fail, and the next round scans again instead of
		// storing it twice.
		s.pend = missing
		ok := true
		for len(s.pend) > 0 && ok {
			p := s.pend[0]
			s.stats.Republished.Add(1)
			ack, err := s.publishAfter(ctx, p, s.known)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				s.c.log.Debug("upstream: conditional republish", "device", s.device, "seq", p.seq, "err", err)
				ok = false
				break
			}
			s.acknowledged(p, ack)
			s.pend = s.pend[1:]
		}
		if ok {
			return nil
		}
	}
}

// publishAfter publishes p on the condition that the device's last
// message in the stream has stream sequence last, and waits for the ack.
func (s *Sender) publishAfter(ctx context.Context, p *pending, last uint64) (*jetstream.PubAck, error) {
	ctx, cancel := context.WithTimeout(ctx, s.c.opt.AckTimeout)
	defer cancel()
	p.sent = time.Now()
	p.msg.Header.Del(jetstream.ExpectedLastSubjSeqHeader)
	p.msg.Header.Del(jetstream.ExpectedLastSubjSeqSubjHeader)
	return s.c.js.PublishMsg(ctx, p.msg, jetstream.WithExpectStream(s.c.opt.Stream), jetstream.WithRetryAttempts(0),
		jetstream.WithExpectLastSequenceForSubject(last, DeviceFilter(s.device)))
}

func (s *Sender) waitConnected(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for !s.c.nc.IsConnected() {
		if s.c.nc.IsClosed() {
			return fmt.Errorf("upstream: %s: %w", s.device, nats.ErrConnectionClosed)
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

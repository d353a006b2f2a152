package main

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/qpack"
	"github.com/quic-go/quic-go/quicvarint"
)

func TestTSParser(t *testing.T) {
	var p tsParser
	for _, ts := range []time.Time{
		time.Date(2026, 11, 23, 17, 0, 0, 123e6, time.UTC),
		time.Date(2026, 11, 23, 23, 59, 59, 999e6, time.UTC),
		time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC), // the cached day changes
		time.Date(2028, 2, 29, 12, 34, 56, 7e6, time.UTC),
	} {
		s := ts.Format("2006-01-02T15:04:05.000Z")
		if got := p.parse([]byte(s + `","value":1}`)); got != ts.UnixNano() {
			t.Errorf("parse(%s) = %v, want %v", s, time.Unix(0, got).UTC(), ts)
		}
	}
	for _, bad := range []string{"", "2026-11-23", "2026-11-23 17:00:00.123Z", "2026-13-23T17:00:00.123Z"} {
		if got := p.parse([]byte(bad)); got != 0 {
			t.Errorf("parse(%q) = %d, want 0", bad, got)
		}
	}
}

// TestStreamRead feeds an eddy-shaped stream, framed as an HTTP/3
// response, to the reader: readings are counted and timed, a gap event
// and a seq jump are counted, heartbeats and the retry hint are ignored,
// frames of unknown types are skipped.
func TestStreamRead(t *testing.T) {
	now := time.Now()
	ts := now.UTC().Format("2006-01-02T15:04:05.000Z")
	sent := now.Add(-3 * time.Millisecond).UnixNano()
	reading := func(seq int) string {
		return "id: " + strconv.Itoa(seq) + "\nevent: reading\ndata: {\"seq\":" + strconv.Itoa(seq) + ",\"topic\":\"load/1\",\"ts\":\"" + ts + "\",\"value\":" + strconv.Itoa(int(sent)) + "}\n\n"
	}
	stream := "retry: 2000\n\n" + reading(1) + ": heartbeat\n\n" + reading(2) +
		"event: gap\ndata: {\"dropped\":3,\"from_seq\":3,\"to_seq\":5}\n\n" + reading(6)
	st := newStreamStats(protoH3, nil)
	var record recordWindow
	record.set(0, math.MaxInt64)
	ready := make(chan struct{})
	err := readH3(bytes.NewReader(h3Response(t, stream)), &sseLines{st: st, record: &record, ready: ready})
	if err != io.EOF {
		t.Fatalf("read: %v, want EOF", err)
	}
	select {
	case <-ready:
	default:
		t.Error("ready not closed after the retry hint")
	}
	if st.events.Load() != 3 || st.gaps.Load() != 1 || st.jumps.Load() != 1 || st.disorder.Load() != 0 || st.lastSeq.Load() != 6 {
		t.Errorf("events %d gaps %d jumps %d disorder %d last %d; want 3 1 1 0 6",
			st.events.Load(), st.gaps.Load(), st.jumps.Load(), st.disorder.Load(), st.lastSeq.Load())
	}
	pub, app := st.takeHists()
	if pub == nil || pub.n != 3 || app.n != 3 {
		t.Fatalf("histograms: %+v %+v", pub, app)
	}
	if q := pub.quantile(.5); q < 3*time.Millisecond || q > 2*time.Second {
		t.Errorf("publish latency %v, want at least 3 ms", q)
	}
	if q := app.quantile(.5); q < 0 || q > 2*time.Second {
		t.Errorf("append latency %v out of range", q)
	}
}

// h3Response frames body as an HTTP/3 response: HEADERS with status
// 200, then DATA frames of 1, 7, 64 bytes and the rest, with a reserved
// frame type among them.
func h3Response(t *testing.T, body string) []byte {
	var block bytes.Buffer
	enc := qpack.NewEncoder(&block)
	for _, f := range []qpack.HeaderField{{Name: ":status", Value: "200"}, {Name: "content-type", Value: "text/event-stream"}} {
		if err := enc.WriteField(f); err != nil {
			t.Fatal(err)
		}
	}
	frame := func(b []byte, typ uint64, p []byte) []byte {
		b = quicvarint.Append(b, typ)
		b = quicvarint.Append(b, uint64(len(p)))
		return append(b, p...)
	}
	out := frame(nil, h3FrameHeaders, block.Bytes())
	rest := []byte(body)
	for i, n := range []int{1, 7, 64, len(rest)} {
		n = min(n, len(rest))
		out = frame(out, h3FrameData, rest[:n])
		rest = rest[n:]
		if i == 1 {
			out = frame(out, 0x21, []byte("reserved"))
		}
	}
	return out
}

// TestFeedChunks feeds the same stream to sseLines in chunks of every
// size from 1 byte: lines split across chunks are put back together,
// a line longer than maxLine is skipped without derailing the next, and
// fields out of eddy's usual order (after seq) are still found.
func TestFeedChunks(t *testing.T) {
	now := time.Now()
	ts := now.UTC().Format(tsLayout)
	line := func(seq int, order string) string {
		fields := map[string]string{
			"seq": "\"seq\":" + strconv.Itoa(seq), "topic": `"topic":"load/\"1\""`,
			"ts": `"ts":"` + ts + `"`, "value": `"value":` + strconv.FormatInt(now.UnixNano(), 10),
		}
		var b strings.Builder
		for i, f := range strings.Fields(order) {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(fields[f])
		}
		return "id: " + strconv.Itoa(seq) + "\nevent: reading\ndata: {" + b.String() + "}\n\n"
	}
	stream := "retry: 2000\n\n" + line(1, "seq topic ts value") + ": " + strings.Repeat("x", maxLine+10) + "\n\n" +
		line(2, "seq value ts topic") + line(3, "seq topic ts value")
	for size := 1; size <= 64; size++ {
		st := newStreamStats(protoH3, nil)
		var record recordWindow
		record.set(0, math.MaxInt64)
		p := sseLines{st: st, record: &record, ready: make(chan struct{})}
		for b := []byte(stream); len(b) > 0; {
			n := min(size, len(b))
			p.feed(b[:n], now.Add(time.Millisecond).UnixNano())
			b = b[n:]
		}
		pub, app := st.takeHists()
		if st.events.Load() != 3 || st.jumps.Load() != 0 || st.lastSeq.Load() != 3 {
			t.Fatalf("chunks of %d: events %d jumps %d last %d; want 3 0 3", size, st.events.Load(), st.jumps.Load(), st.lastSeq.Load())
		}
		if pub == nil || pub.n != 3 || app.n != 3 {
			t.Fatalf("chunks of %d: %d publish and %d append latencies, want 3 each", size, pub.n, app.n)
		}
	}
}

// TestReadH3Status: a response other than 200 ends the stream with its
// status, before any event is read.
func TestReadH3Status(t *testing.T) {
	var block bytes.Buffer
	enc := qpack.NewEncoder(&block)
	if err := enc.WriteField(qpack.HeaderField{Name: ":status", Value: "401"}); err != nil {
		t.Fatal(err)
	}
	frame := quicvarint.Append(quicvarint.Append(nil, h3FrameHeaders), uint64(block.Len()))
	frame = append(frame, block.Bytes()...)
	st := newStreamStats(protoH3, nil)
	err := readH3(bytes.NewReader(frame), &sseLines{st: st, record: &recordWindow{}, ready: make(chan struct{})})
	if err == nil || !strings.Contains(err.Error(), "status 401") {
		t.Fatalf("read: %v, want status 401", err)
	}
}

// BenchmarkFeed is the load generator's cost of parsing one event of a
// busy stream (four lines), chunked as a transport delivers it.
func BenchmarkFeed(b *testing.B) {
	now := time.Now()
	ts := now.UTC().Format(tsLayout)
	var stream []byte
	const events = 64
	for seq := 1; seq <= events; seq++ {
		stream = fmt.Appendf(stream, "id: %d\nevent: reading\ndata: {\"seq\":%d,\"topic\":\"load/%d\",\"ts\":\"%s\",\"value\":%d}\n\n",
			seq, seq, seq%100, ts, now.UnixNano())
	}
	st := newStreamStats(protoH2, nil)
	var record recordWindow
	record.set(0, math.MaxInt64)
	p := sseLines{st: st, record: &record, ready: make(chan struct{})}
	b.SetBytes(int64(len(stream)) / events)
	at := now.Add(time.Millisecond).UnixNano()
	for i := 0; b.Loop(); i++ {
		if i%events == 0 {
			p.lastSeq = 0 // the stream starts over: no jump
			for c := stream; len(c) > 0; {
				n := min(1300, len(c))
				p.feed(c[:n], at)
				c = c[n:]
			}
		}
	}
	if st.jumps.Load() != 0 || st.events.Load() == 0 {
		b.Fatalf("jumps %d events %d", st.jumps.Load(), st.events.Load())
	}
}

package sse

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eddy-iot/eddy/ringlog"
)

// runStreamSuite is the /events contract, run against real clients over
// whatever protocol serve provides (HTTP/2 here; the server package runs
// it over HTTP/3 too).
func runStreamSuite(t *testing.T, serve serveFunc) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, serveFunc)
	}{
		{"Live", testLive},
		{"Filters", testFilters},
		{"BadRequests", testBadRequests},
		{"ResumeAcrossReconnects", testResumeAcrossReconnects},
		{"ResumeAfterTrim", testResumeAfterTrim},
		{"ResumeAfterRestart", testResumeAfterRestart},
		{"ResumeFromUnknownID", testResumeFromUnknownID},
		{"DownsampleGap", testDownsampleGap},
		{"ExactCatchUp", testExactCatchUp},
		{"Rate", testRate},
		{"Heartbeat", testHeartbeat},
		{"Shutdown", testShutdown},
		{"StalledClientDropped", testStalledClientDropped},
		{"SlowConsumerIsolation", testSlowConsumerIsolation},
		{"ConnWriters", testConnWriters},
		{"StalledStreamOnSharedConnection", testStalledStreamOnSharedConnection},
		{"BoundedMemory", testBoundedMemory},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, serve) })
	}
}

func testLive(t *testing.T, serve serveFunc) {
	e := newEnv(t, serve, nil, Options{})
	e.run(t)
	e.add(t, 3, "old") // before the stream: not sent
	sr, _ := e.open(t, "", nil)
	if sr.p.retry != "2000" {
		t.Errorf("retry %q, want 2000", sr.p.retry)
	}
	ts := time.Now().UTC().Truncate(time.Second).Add(-time.Minute + 123e6)
	want := []ringlog.Record{
		{Topic: "sensors/pump1/pressure", Time: ts, Kind: ringlog.KindJSON, Value: []byte("2.31"), Unit: "bar"},
		{Topic: "sensors/door", Time: ts, Kind: ringlog.KindText, Value: []byte("open\n\nid: 99\r\ndata: x")},
		{Topic: "sensors/raw", Time: ts, Kind: ringlog.KindBinary, Value: []byte{0, 0xff, '\n'}},
	}
	for i := range want {
		seq, err := e.log.Append(want[i])
		if err != nil {
			t.Fatal(err)
		}
		want[i].Seq = seq
	}
	rs, _ := readings(t, sr, false, untilSeq(want[2].Seq))
	if len(rs) != 3 {
		t.Fatalf("got %d readings, want 3: %+v", len(rs), rs)
	}
	for i, r := range rs {
		w := want[i]
		data, _ := json.Marshal(r)
		if r.Seq != w.Seq || r.Topic != w.Topic || r.TS != ts.Format("2006-01-02T15:04:05.000Z") || r.Unit != w.Unit {
			t.Errorf("reading %s, want %+v", data, w)
		}
	}
	if string(rs[0].Value) != "2.31" || string(rs[1].Value) != `"open\n\nid: 99\r\ndata: x"` || rs[2].ValueB64 != "AP8K" {
		t.Errorf("values %s %s %q", rs[0].Value, rs[1].Value, rs[2].ValueB64)
	}
	if n := e.hub.Clients(); n != 1 {
		t.Errorf("Clients() = %d, want 1", n)
	}
}

func testFilters(t *testing.T, serve serveFunc) {
	e := newEnv(t, serve, nil, Options{})
	e.run(t)
	plus, _ := e.open(t, "?topic=a/%2B", nil)
	multi, _ := e.open(t, "?topic=b/%23&topic=c", nil)
	all, _ := e.open(t, "", nil)
	topics := []string{"a/1", "a/1/x", "b", "b/x/y", "c", "c/d", "$SYS/x", "a/2", "end"}
	for _, tp := range topics {
		e.add(t, 1, tp)
	}
	got := func(sr *streamReader, stopTopic string) []string {
		rs, _ := readings(t, sr, false, func(r reading) bool { return r.Topic == stopTopic })
		var ts []string
		for _, r := range rs {
			ts = append(ts, r.Topic)
		}
		return ts
	}
	for _, tc := range []struct {
		sr   *streamReader
		stop string
		want string
	}{
		{plus, "a/2", "a/1 a/2"},
		{multi, "c", "b b/x/y c"},
		{all, "end", "a/1 a/1/x b b/x/y c c/d a/2 end"}, // '#' skips $-topics, as in MQTT
	} {
		if g := strings.Join(got(tc.sr, tc.stop), " "); g != tc.want {
			t.Errorf("stream until %s got %q, want %q", tc.stop, g, tc.want)
		}
	}
}

func testBadRequests(t *testing.T, serve serveFunc) {
	e := newEnv(t, serve, nil, Options{})
	e.run(t)
	e.add(t, 5, "a")
	for _, tc := range []struct {
		query, header string
		want          string
	}{
		{"?topic=a/b%23", "", "a wildcard must fill a whole level"},
		{"?topic=a/%23/b", "", "'#' must be the last level"},
		{"?mode=turbo", "", "mode"},
		{"?rate=0", "", "rate"},
		{"?lastEventID=abc", "", "not a decimal event id"},
		{"", "-1", "not a decimal event id"},
		{"?lastEventID=18446744073709551616", "", "not a decimal event id"},
	} {
		var hdr http.Header
		if tc.header != "" {
			hdr = http.Header{"Last-Event-Id": {tc.header}}
		}
		code, body := statusOf(t, e, tc.query, hdr)
		if code != http.StatusBadRequest || !strings.Contains(body, tc.want) {
			t.Errorf("%s [%s]: %d %q, want 400 with %q", tc.query, tc.header, code, body, tc.want)
		}
	}
	if n := e.m.Rejected.Load(); n != 7 {
		t.Errorf("Rejected = %d, want 7", n)
	}
}

// testResumeAcrossReconnects reconnects repeatedly while records are
// appended as fast as the log takes them, and checks by seq that the
// stream pieces join with no gap and no duplicate.
func testResumeAcrossReconnects(t *testing.T, serve serveFunc) {
	e := newEnv(t, serve, &ringlog.Options{MemRecords: 512}, Options{ClientBuffer: 64})
	e.run(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	stopOnce := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopOnce() // also when a check fails below
	var last uint64
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			seq, err := e.log.Append(ringlog.Record{Topic: fmt.Sprintf("t/%d", i%7), Kind: ringlog.KindJSON, Value: []byte(strconv.Itoa(i))})
			if err != nil {
				t.Error(err)
				return
			}
			last = seq
			if i%50 == 49 {
				time.Sleep(time.Millisecond) // keep the total readable in test time
			}
		}
	})
	var all []reading
	// Downsampling may rightly drop under this load; exact mode may not.
	for i := range 5 {
		q, hdr := "?mode=exact&lastEventID=0", http.Header(nil)
		if i > 0 {
			id := strconv.FormatUint(all[len(all)-1].Seq, 10)
			hdr = http.Header{"Last-Event-Id": {id}}
			if i%2 == 0 {
				q, hdr = "?mode=exact&lastEventID="+id, nil
			}
		}
		sr, end := e.open(t, q, hdr)
		n := 0
		rs, _ := readings(t, sr, false, func(reading) bool { n++; return n == 1500 })
		end()
		all = append(all, rs...)
	}
	stopOnce()
	if got := all[len(all)-1].Seq; got < last {
		sr, _ := e.open(t, "?mode=exact", http.Header{"Last-Event-Id": {strconv.FormatUint(got, 10)}})
		rs, _ := readings(t, sr, false, untilSeq(last))
		all = append(all, rs...)
	}
	checkContiguous(t, all, 1, last)
	if e.m.Replayed.Load() == 0 {
		t.Error("nothing was replayed from the log")
	}
}

func testResumeAfterTrim(t *testing.T, serve serveFunc) {
	e := newEnv(t, serve, &ringlog.Options{MaxBytes: 64 << 10, MemRecords: 64}, Options{})
	e.run(t)
	last := e.add(t, 6000, "a", "b")
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	if err := e.log.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	oldest := e.log.Oldest()
	if oldest <= 10 {
		t.Fatalf("the log did not trim (oldest %d); the test needs it to", oldest)
	}
	sr, _ := e.open(t, "?topic=a&lastEventID=3", nil)
	rs, gs := readings(t, sr, true, untilSeq(last-1))
	if len(gs) != 1 || gs[0] != (gapData{Dropped: oldest - 4, FromSeq: 4, ToSeq: oldest - 1}) {
		t.Fatalf("gaps %+v, want one from 4 to %d", gs, oldest-1)
	}
	// Topic a has the odd seqs; every stored one must follow the gap.
	first := oldest | 1
	if len(rs) != int((last-1-first)/2+1) || rs[0].Seq != first {
		t.Fatalf("got %d readings from %d, want every odd seq from %d to %d", len(rs), rs[0].Seq, first, last-1)
	}
}

// testResumeAfterRestart: after a clean restart and after a crash, a
// client resuming from the last id (or an earlier one) gets what it
// missed and then stays open for the next record, although nothing was
// appended since the restart.
func testResumeAfterRestart(t *testing.T, serve serveFunc) {
	for _, crash := range []bool{false, true} {
		dir := t.TempDir()
		l, err := ringlog.Open(dir, &ringlog.Options{ReserveBlock: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			if _, err := l.Append(ringlog.Record{Topic: "a", Kind: ringlog.KindJSON, Value: []byte(strconv.Itoa(i))}); err != nil {
				t.Fatal(err)
			}
		}
		if crash {
			// The reservation stays on disk as after kill -9: copy the
			// file while the log is open, then close the original.
			ctx, cancel := context.WithTimeout(context.Background(), guard)
			err := l.Sync(ctx)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			dir = copyDir(t, dir)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		e := newEnvDir(t, serve, dir, &ringlog.Options{ReserveBlock: 1000}, Options{})
		e.run(t)
		for _, from := range []uint64{5, 3} {
			sr, end := e.open(t, "?mode=exact", http.Header{"Last-Event-Id": {strconv.FormatUint(from, 10)}})
			mark := "b" + strconv.FormatUint(from, 10)
			got := make(chan []reading, 1)
			go func() {
				rs, _ := readings(t, sr, false, func(r reading) bool { return r.Topic == mark })
				got <- rs
			}()
			time.Sleep(100 * time.Millisecond) // the stream must still be open
			next := e.add(t, 1, mark)
			select {
			case rs := <-got:
				first := from + 1
				if from == 5 {
					first = next
				}
				if len(rs) == 0 || rs[len(rs)-1].Seq != next || rs[0].Seq != first {
					t.Errorf("crash %v, resume from %d: got %+v, want %d..5 then %d", crash, from, rs, from+1, next)
				}
			case <-time.After(guard):
				t.Fatalf("crash %v, resume from %d: the new record never arrived", crash, from)
			}
			end()
		}
	}
}

// testResumeFromUnknownID: an id the log never issued (another device's,
// or one from before a lost ring.db) is answered like a lost one: 200, a
// gap naming it, every stored record, then live.
func testResumeFromUnknownID(t *testing.T, serve serveFunc) {
	e := newEnv(t, serve, nil, Options{})
	e.run(t)
	e.add(t, 5, "a")
	sr, _ := e.open(t, "?mode=exact", http.Header{"Last-Event-Id": {"99"}})
	next := make(chan uint64, 1)
	go func() {
		time.Sleep(50 * time.Millisecond)
		next <- e.add(t, 1, "a")
	}()
	rs, gs := readings(t, sr, true, untilSeq(6))
	if len(gs) != 1 || gs[0].UnknownID != 99 {
		t.Errorf("gaps %+v, want one naming unknown id 99", gs)
	}
	checkContiguous(t, rs, 1, <-next)
}

// testDownsampleGap lets a client's queue overflow (the hub publishes 512
// records at once into a queue of 8) and checks the accounting: every
// record is either delivered or counted in a gap, and the client ends
// with the latest value of every topic.
func testDownsampleGap(t *testing.T, serve serveFunc) {
	e := newEnv(t, serve, nil, Options{ClientBuffer: 8})
	sr, _ := e.open(t, "?topic=d/%2B", nil)
	topics := []string{"d/0", "d/1", "d/2", "x"}
	last := e.add(t, 4000, topics...)
	e.run(t)
	rs, gs := readings(t, sr, true, untilSeq(last-1)) // last-1 is d/2's final record
	if len(gs) == 0 {
		t.Fatal("no gap event, yet the queue must have overflowed")
	}
	var dropped uint64
	for _, g := range gs {
		dropped += g.Dropped
	}
	if want := uint64(3000); uint64(len(rs))+dropped != want {
		t.Fatalf("%d delivered + %d dropped != %d matching records", len(rs), dropped, want)
	}
	final := map[string]uint64{}
	for _, r := range rs {
		final[r.Topic] = r.Seq
	}
	for i, tp := range topics[:3] {
		if want := last - 3 + uint64(i); final[tp] != want {
			t.Errorf("last %s delivered is %d, want %d (latest wins)", tp, final[tp], want)
		}
	}
	if e.m.Dropped.Load() != dropped || e.m.Gaps.Load() != uint64(len(gs)) {
		t.Errorf("metrics dropped %d gaps %d, stream saw %d and %d", e.m.Dropped.Load(), e.m.Gaps.Load(), dropped, len(gs))
	}
}

// testExactCatchUp overflows an exact-mode queue: the stream must switch
// to the log and deliver every record anyway.
func testExactCatchUp(t *testing.T, serve serveFunc) {
	e := newEnv(t, serve, &ringlog.Options{MemRecords: 256}, Options{ClientBuffer: 8})
	sr, _ := e.open(t, "?mode=exact", nil)
	last := e.add(t, 4000, "a", "b")
	e.run(t)
	rs, _ := readings(t, sr, false, untilSeq(last))
	checkContiguous(t, rs, 1, last)
	more := e.add(t, 10, "c") // live again after catching up
	rs, _ = readings(t, sr, false, untilSeq(more))
	checkContiguous(t, rs, last+1, more)
	if e.m.Detached.Load() == 0 {
		t.Error("the stream never left live fan-out; the test did not exercise catch-up")
	}
}

// testRate checks the cap (an upper bound that holds however slow the
// machine is) and that the latest value of each topic arrives.
func testRate(t *testing.T, serve serveFunc) {
	e := newEnv(t, serve, nil, Options{})
	e.run(t)
	const hz = 10
	start := time.Now()
	sr, _ := e.open(t, "?rate=10", nil)
	var last uint64
	for i := 0; i < 60; i++ {
		last = e.add(t, 15, "r/a", "r/b", "r/c")
		time.Sleep(10 * time.Millisecond)
	}
	rs, _ := readings(t, sr, false, func(r reading) bool { return r.Seq >= last-2 && r.Topic == "r/a" })
	// r/b and r/c's final records come after r/a's, within one interval.
	more, _ := readings(t, sr, false, untilSeq(last))
	rs = append(rs, more...)
	span := time.Since(start)
	count := map[string]int{}
	for _, r := range rs {
		count[r.Topic]++
	}
	limit := 1 + int(hz*span.Seconds())
	for tp, n := range count {
		if n > limit {
			t.Errorf("%s: %d events in %v, above %d Hz (limit %d)", tp, n, span, hz, limit)
		}
	}
	if len(rs) >= 900 {
		t.Errorf("rate cap did not thin the stream: %d of 900 records", len(rs))
	}
	// Latest wins: each topic's final record is delivered.
	got := map[uint64]bool{}
	for _, r := range rs {
		got[r.Seq] = true
	}
	for _, seq := range []uint64{last - 2, last - 1, last} {
		if !got[seq] {
			t.Errorf("final record %d of its topic was not delivered", seq)
		}
	}
}

func testHeartbeat(t *testing.T, serve serveFunc) {
	e := newEnv(t, serve, nil, Options{Heartbeat: 20 * time.Millisecond})
	e.run(t)
	sr, _ := e.open(t, "", nil)
	if err := sr.waitComments(4); err != nil { // the preamble's comment and 3 heartbeats
		t.Fatal(err)
	}
}

func testShutdown(t *testing.T, serve serveFunc) {
	e := newEnv(t, serve, nil, Options{Retry: time.Second})
	e.run(t)
	e.add(t, 5, "a")
	var srs []*streamReader
	for _, q := range []string{"", "?mode=exact", "?rate=5", "?lastEventID=2"} {
		sr, _ := e.open(t, q, nil)
		srs = append(srs, sr)
	}
	waitFor(t, "4 clients", func() bool { return e.hub.Clients() == 4 })
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	if err := e.hub.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for i, sr := range srs {
		for {
			_, err := nextItem(sr)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("stream %d: %v", i, err)
			}
		}
		ms, _ := strconv.Atoi(sr.p.retry)
		if ms < 1000 || ms > 3000 || sr.lastComment != ": eddy is shutting down" {
			t.Errorf("stream %d ended with retry %q and comment %q, want 1000-3000 ms and the shutdown comment", i, sr.p.retry, sr.lastComment)
		}
	}
	if n := e.hub.Clients(); n != 0 {
		t.Errorf("Clients() = %d after shutdown", n)
	}
	if code, _ := statusOf(t, e, "", nil); code != http.StatusServiceUnavailable {
		t.Errorf("a stream after shutdown got %d, want 503", code)
	}
}

// bigValue makes records large enough to exhaust HTTP/2 and QUIC flow
// control windows quickly.
func bigValue(n int) []byte { return []byte(strings.Repeat("x", n)) }

func testStalledClientDropped(t *testing.T, serve serveFunc) {
	e := newEnv(t, serve, nil, Options{WriteTimeout: 300 * time.Millisecond})
	e.run(t)
	e.open(t, "", nil) // never read after the preamble
	waitFor(t, "the client", func() bool { return e.hub.Clients() == 1 })
	for i := 0; i < 200 && e.hub.Clients() > 0; i++ {
		if _, err := e.log.Append(ringlog.Record{Topic: "big", Kind: ringlog.KindText, Value: bigValue(128 << 10)}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	waitFor(t, "the stalled client to be dropped", func() bool { return e.hub.Clients() == 0 })
	if e.m.WriteErrors.Load() == 0 {
		t.Error("no write error counted")
	}
}

// testSlowConsumerIsolation runs one stalled, one slow (10 events/s) and
// several fast clients while ingest runs: the fast ones get every record
// and the stalled one is dropped; nobody waits for anybody.
func testSlowConsumerIsolation(t *testing.T, serve serveFunc) {
	e := newEnv(t, serve, nil, Options{ClientBuffer: 256, WriteTimeout: time.Second})
	e.run(t)
	// The stalled and the slow client are other devices, with connections
	// of their own; the fast ones share one, as a browser's tabs do. (On
	// one connection, a stream that is never read holds part of the
	// connection's flow-control window until it is dropped.)
	// Stalled: never reads after the preamble. In exact mode it must take
	// every record, more than its flow-control window; a downsampled one
	// takes only the latest, which may fit in the window, and is then
	// rightly never dropped (it holds at most its bounded queue).
	e.openWith(t, e.newClient(), "?mode=exact", nil)
	slow, _ := e.openWith(t, e.newClient(), "?topic=small/%23", nil)
	const fast, total = 4, 3000
	var fastStreams []*streamReader
	for range fast {
		sr, _ := e.open(t, "?mode=exact", nil)
		fastStreams = append(fastStreams, sr)
	}
	first := e.log.LastSeq() + 1
	last := first + total - 1 // ids are contiguous within a run

	var wg sync.WaitGroup
	results := make([][]reading, fast)
	for i, sr := range fastStreams {
		wg.Go(func() { results[i] = readThrough(t, fmt.Sprintf("fast client %d", i), sr, last) })
	}
	var slowGot []reading
	wg.Go(func() {
		var prev uint64
		for range 10 {
			it, err := nextItem(slow)
			if err != nil {
				t.Errorf("slow client: %v", err)
				return
			}
			if it.reading != nil {
				if it.reading.Seq <= prev || !strings.HasPrefix(it.reading.Topic, "small/") {
					t.Errorf("slow client: %+v after %d", *it.reading, prev)
				}
				prev = it.reading.Seq
				slowGot = append(slowGot, *it.reading)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	// Ingest: small records, and every 50th a big one, enough to fill
	// the stalled client's flow-control windows many times over.
	for i := range total {
		r := ringlog.Record{Topic: fmt.Sprintf("small/%d", i%10), Kind: ringlog.KindJSON, Value: []byte(strconv.Itoa(i))}
		if i%50 == 0 {
			r = ringlog.Record{Topic: "big", Kind: ringlog.KindText, Value: bigValue(128 << 10)}
		}
		if seq, err := e.log.Append(r); err != nil || seq != first+uint64(i) {
			t.Errorf("append: seq %d, %v; want seq %d", seq, err, first+uint64(i))
			break // the readers end when the test's cleanup closes their streams
		}
		if i%20 == 19 {
			time.Sleep(time.Millisecond)
		}
	}
	wg.Wait()
	checkAllContiguous(t, "fast client", results, first, last)
	if len(slowGot) == 0 {
		t.Error("slow client got nothing")
	}
	waitFor(t, "the stalled client to be dropped", func() bool { return e.m.WriteErrors.Load() >= 1 })
}

// testConnWriters: the streams of one connection share one writer, which
// delivers to each of them and ends with the connection's last stream.
func testConnWriters(t *testing.T, serve serveFunc) {
	e := newEnv(t, serve, nil, Options{})
	e.run(t)
	var streams []*streamReader
	var closers []func()
	for i := range 4 {
		client := e.client // three streams share a connection where the protocol can
		if i == 3 {
			client = e.newClient() // another device
		}
		sr, closeFn := e.openWith(t, client, "", nil)
		streams = append(streams, sr)
		closers = append(closers, closeFn)
	}
	waitFor(t, "4 streams", func() bool { return e.hub.Clients() == 4 })
	want := "1,3" // HTTP/2 and HTTP/3: two connections
	if e.m.Streams[0][0].Load() == 4 {
		want = "" // HTTP/1.1: a connection per stream, which writes its own
	}
	if got := e.writerRefs(); got != want {
		t.Errorf("streams per connection writer: %s, want %s", got, want)
	}
	seq := e.add(t, 1, "a")
	for i, sr := range streams {
		it, err := nextItem(sr)
		if err != nil || it.reading == nil || it.reading.Seq != seq {
			t.Fatalf("stream %d: %+v, %v; want reading %d", i, it, err, seq)
		}
	}
	for _, c := range closers {
		c()
	}
	waitFor(t, "the writers to end", func() bool { return e.writerRefs() == "" })
}

// writerRefs lists the hub's connection writers by their stream counts.
func (e *env) writerRefs() string {
	e.hub.cmu.Lock()
	defer e.hub.cmu.Unlock()
	var refs []int
	for _, w := range e.hub.conns {
		refs = append(refs, w.refs)
	}
	slices.Sort(refs)
	return strings.Trim(strings.Join(strings.Fields(fmt.Sprint(refs)), ","), "[]")
}

// testStalledStreamOnSharedConnection: a stream that is never read, on the
// connection of two exact-mode streams that are, holds their writes up at
// most until its write deadline drops it (one writer serves the
// connection); they then catch up and lose nothing.
func testStalledStreamOnSharedConnection(t *testing.T, serve serveFunc) {
	// 2 s: under the race detector on a busy machine a fast reader can be
	// starved of CPU for over a second, and then dropped as if stalled.
	e := newEnv(t, serve, nil, Options{ClientBuffer: 64, WriteTimeout: 2 * time.Second})
	e.run(t)
	// Stalled: never read after the preamble. In exact mode it must take
	// every record, more than its flow-control window; a downsampled one
	// takes only the latest, which may fit in the window.
	e.open(t, "?mode=exact", nil)
	var fast []*streamReader
	for range 2 {
		sr, _ := e.open(t, "?mode=exact", nil)
		fast = append(fast, sr)
	}
	first := e.log.LastSeq() + 1
	const total = 200
	last := first + total - 1
	var wg sync.WaitGroup
	results := make([][]reading, len(fast))
	for i, sr := range fast {
		wg.Go(func() { results[i] = readThrough(t, fmt.Sprintf("fast stream %d", i), sr, last) })
	}
	// Big records fill the stalled stream's flow-control window (HTTP/2,
	// HTTP/3) many times over.
	for i := range total {
		if _, err := e.log.Append(ringlog.Record{Topic: "big", Kind: ringlog.KindText, Value: bigValue(64 << 10)}); err != nil {
			t.Fatal(err)
		}
		if i%10 == 9 {
			time.Sleep(time.Millisecond)
		}
	}
	wg.Wait()
	checkAllContiguous(t, "fast stream", results, first, last)
	waitFor(t, "the stalled stream to be dropped", func() bool { return e.m.WriteErrors.Load() >= 1 })
}

// checkAllContiguous checks that each reader got every seq from first to
// last; a reader that got nothing is an error unless the test already
// failed (its reading was cut short).
func checkAllContiguous(t *testing.T, what string, results [][]reading, first, last uint64) {
	t.Helper()
	for i, rs := range results {
		if rs != nil {
			checkContiguous(t, rs, first, last)
		} else if !t.Failed() {
			t.Errorf("%s %d got nothing", what, i)
		}
	}
}

// testBoundedMemory: 48 MB of events are fanned out while a stalled
// client and a slow one (10 events/s), both in downsample mode on
// connections of their own, stay connected; the live heap grows by no
// more than the clients' own flow-control windows (up to 6 MB each for
// HTTP/3, filled on the client's side of this process) and their bounded
// queues, far from the 48 MB an unbounded queue would keep for each.
func testBoundedMemory(t *testing.T, serve serveFunc) {
	const (
		records   = 12000
		valueSize = 4 << 10
		limit     = 24 << 20
	)
	// The log keeps little in memory, so that what grows is the streams'.
	e := newEnv(t, serve, &ringlog.Options{MaxBytes: 256 << 20, MemBytes: 1 << 20}, Options{ClientBuffer: 64, WriteTimeout: time.Minute})
	e.run(t)
	e.openWith(t, e.newClient(), "", nil) // stalled: never reads after the preamble
	slow, _ := e.openWith(t, e.newClient(), "", nil)
	heap0 := liveHeap()

	var wg sync.WaitGroup
	slowDone := make(chan struct{})
	wg.Go(func() {
		for {
			if _, err := nextItem(slow); err != nil {
				return // the stream closes at cleanup
			}
			select {
			case <-slowDone:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	defer func() { close(slowDone); wg.Wait() }()
	value := bigValue(valueSize)
	for i := range records {
		if _, err := e.log.Append(ringlog.Record{Topic: fmt.Sprintf("big/%d", i%10), Kind: ringlog.KindText, Value: value}); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	if err := e.log.Sync(context.Background()); err != nil { // uncommitted records stay in memory
		t.Fatal(err)
	}
	waitFor(t, "the hub to fan every record out", func() bool { return e.m.Published.Load() >= records })
	if grew := liveHeap() - heap0; grew > limit {
		t.Errorf("the live heap grew %.1f MB while %d MB of events went out to a stalled and a slow client; want at most %d MB",
			float64(grew)/(1<<20), records*valueSize>>20, limit>>20)
	} else {
		t.Logf("live heap grew %.1f MB for %d MB of events", float64(grew)/(1<<20), records*valueSize>>20)
	}
	if e.m.Dropped.Load() == 0 {
		t.Error("the stalled and the slow client were not downsampled")
	}
}

// liveHeap is the heap in use after two collections (the first leaves
// what sync.Pools held to the second).
func liveHeap() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// readThrough reads readings until seq last, failing the test (from any
// goroutine) and returning nil on an error or a gap.
func readThrough(t *testing.T, name string, sr *streamReader, last uint64) []reading {
	var rs []reading
	for {
		it, err := nextItem(sr)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			return nil
		}
		if it.gap != nil {
			t.Errorf("%s: gap %+v", name, *it.gap)
			return nil
		}
		rs = append(rs, *it.reading)
		if it.reading.Seq >= last {
			return rs
		}
	}
}

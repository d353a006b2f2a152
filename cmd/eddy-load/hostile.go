package main

// The hostile scenario (issue 12): eddy, mosquitto and a 100 msgs/s
// publisher, one legitimate HTTP/2 and one HTTP/3 stream (mode=exact,
// resuming with Last-Event-ID like eddy tail), and then each attack class
// in turn for -hostile-for, followed by a settling pause. Attacks come
// from 127.0.0.2, the legitimate clients from 127.0.0.1; every attack
// loop is bounded in count and time. Per class it prints eddy's peak and
// settled RSS, its CPU, the legitimate clients' delivery p99 (publish to
// receive) and longest gap between events, ids missed, and what eddy
// counted as refused (eddy_server_refused_total, by reason: its limits
// and its 401/429 answers, one family). The "quiet"
// class, no attack, is the baseline of the same run.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	devtls "github.com/eddy-iot/eddy/tls"
)

// attackIP is where the current attack comes from: 127.0.0.2 for the
// first class, .3 for the second, ..., so that the address eddy penalized
// in one class does not skew the next.
var attackIP = net.IPv4(127, 0, 0, 2)

// hostileClass is one attack.
type hostileClass struct {
	name string
	run  func(h *hostileRun, ctx context.Context) string // returns what the attacker saw
}

var hostileClasses = []hostileClass{
	{"quiet", func(_ *hostileRun, ctx context.Context) string { <-ctx.Done(); return "no attack" }},
	{"tls-half-open", (*hostileRun).halfOpen},
	{"quic-initials", (*hostileRun).quicInitials},
	{"h2-rapid-reset", (*hostileRun).rapidReset},
	{"h2-continuation", (*hostileRun).continuation},
	{"h3-reset", (*hostileRun).h3Reset},
	{"topic-filters", (*hostileRun).filters},
	{"history-scan", (*hostileRun).historyScan},
	{"mqtt-burst", (*hostileRun).mqttBurst},
}

// hostileRun is the running scenario.
type hostileRun struct {
	e      *env
	srv    *server
	broker string
	tc     *tls.Config
	legit  []*legitClient
}

// hostileResult is one class's figures.
type hostileResult struct {
	class              string
	peakRSS, settleRSS int64
	peakAnon           int64   // RssAnon: RSS without the ring log's mapped file pages
	peakDB, peakDirty  int64   // ring.db's mapped pages in RSS, and how many of them were dirty
	cpu                float64 // cores, during the attack
	p99, maxGap        time.Duration
	missed             uint64 // records dropped on a legit stream, as its gap events said
	reconnects         uint64
	refused            map[string]float64
	attacker           string
}

func (e *env) hostile(ctx context.Context) error {
	dir, err := e.subdir("hostile")
	if err != nil {
		return err
	}
	mq, broker, err := startMosquitto(ctx, dir)
	if err != nil {
		return err
	}
	defer mq.stop(5 * time.Second)
	spec := eddySpec{broker: broker, filter: "load/#", qos: 1, maxStreams: 1000, debug: e.f.debugListen}
	var cg *memCgroup
	if e.f.memcap > 0 {
		if cg, err = newMemCgroup(e.f.memcap); err != nil {
			return err
		}
		defer cg.remove()
		spec.wrap = cg.wrap()
	}
	srv, err := startEddy(ctx, e.bin, dir, spec)
	if err != nil {
		return err
	}
	defer srv.stop(5 * time.Second)
	tc, err := devtls.ClientConfig(devtls.ClientOptions{CAFile: srv.caFile})
	if err != nil {
		return fmt.Errorf("load: hostile: %w", err)
	}
	h := &hostileRun{e: e, srv: srv, broker: broker, tc: tc}

	pub, err := newPublisher(broker, "eddy-load-legit")
	if err != nil {
		return err
	}
	defer pub.close()
	pctx, pcancel := context.WithCancel(ctx)   // the legitimate clients
	pubCtx, pubStop := context.WithCancel(ctx) // the publisher
	var wg sync.WaitGroup
	defer func() { pubStop(); pcancel(); wg.Wait() }()
	pubDone := make(chan int, 1)
	var pubErr error // set before pubDone
	wg.Add(1)
	go func() {
		defer wg.Done()
		// sent counts messages handed to paho; with an error the last
		// of them may never have reached the broker.
		sent, _, err := pub.run(pubCtx, publishSpec{prefix: "load/legit/", topics: 10, rate: 100})
		pubErr = err
		pubDone <- sent
	}()
	for _, p := range []proto{protoH2, protoH3} {
		lc := &legitClient{proto: p}
		h.legit = append(h.legit, lc)
		wg.Add(1)
		go func() {
			defer wg.Done()
			lc.follow(pctx, srv.base, tc)
		}()
	}
	if err := waitFor(ctx, 15*time.Second, "legitimate streams", func() bool {
		return h.legit[0].received() > 0 && h.legit[1].received() > 0
	}); err != nil {
		return err
	}

	fmt.Fprintf(e.f.out, "\n## hostile: each class %s then %s settling; legit: 100 msgs/s, one h2 and one h3 stream (mode=exact)", e.f.hostileFor, hostileSettle)
	if cg != nil {
		fmt.Fprintf(e.f.out, "; eddy in cgroup %s, memory limit %d MiB", cg.dir, e.f.memcap>>20)
	}
	fmt.Fprintln(e.f.out)
	fmt.Fprintf(e.f.out, "%-16s %9s %9s %12s %9s %6s %9s %9s %6s %5s  %s\n", "class", "peak RSS", "peak anon", "ring.db(dirty)", "settled", "CPU", "p99", "max gap", "missed", "recon", "refused by eddy; attacker saw")
	var results []hostileResult
	for i, c := range hostileClasses {
		if !e.f.wantClass(c.name) {
			continue
		}
		attackIP = net.IPv4(127, 0, 0, byte(2+i))
		r, err := h.runClass(ctx, c)
		if err != nil {
			return err
		}
		results = append(results, r)
		printHostileLine(e.f.out, r, results[0])
		if err := srv.exited(); err != nil {
			fmt.Fprintf(e.f.out, "eddy DIED during %s: %v\n", c.name, err)
			break
		}
	}
	var worst hostileResult
	for _, r := range results {
		if r.peakAnon > worst.peakAnon {
			worst = r
		}
	}
	verdict := "under"
	if worst.peakAnon > defaultMemoryLimit {
		verdict = "OVER"
	}
	fmt.Fprintf(e.f.out, "peak anonymous RSS %.0f MiB (%s), %s server.memory_limit %d MiB; file-backed pages (ring.db, the binary) are page cache the kernel reclaims\n",
		mib(worst.peakAnon), worst.class, verdict, defaultMemoryLimit>>20)
	pubStop()
	sent := <-pubDone
	waitFor(ctx, 30*time.Second, "legitimate streams to catch up", func() bool {
		return h.legit[0].received() >= uint64(sent) && h.legit[1].received() >= uint64(sent)
	})
	fmt.Fprintf(e.f.out, "legit: %d published; received: h2 %d, h3 %d (every one: %v)\n", sent,
		h.legit[0].received(), h.legit[1].received(), h.legit[0].received() >= uint64(sent) && h.legit[1].received() >= uint64(sent))
	if pubErr != nil {
		fmt.Fprintf(e.f.out, "legit publisher stopped early: %v (its last message may never have reached the broker)\n", pubErr)
	}
	if u, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", srv.pid())); err == nil {
		for line := range strings.Lines(string(u)) {
			if strings.HasPrefix(line, "VmHWM:") {
				fmt.Fprintf(e.f.out, "eddy %s", line)
			}
		}
	}
	if cg != nil {
		fmt.Fprintln(e.f.out, cg.report(srv))
	}
	return srv.exited()
}

// defaultMemoryLimit is eddy's server.memory_limit, which the tool leaves
// at its default.
const defaultMemoryLimit = 128 << 20

// hostileSettle is the pause after each attack before the settled RSS.
const hostileSettle = 5 * time.Second

func (h *hostileRun) runClass(ctx context.Context, c hostileClass) (hostileResult, error) {
	r := hostileResult{class: c.name}
	before := h.refused()
	for _, lc := range h.legit {
		lc.reset()
	}
	u0, err := readUsage(h.srv.pid())
	if err != nil {
		return r, err
	}
	var peak, peakAnon, peakDB, peakDirty atomic.Int64
	peak.Store(u0.rss)
	sctx, scancel := context.WithCancel(ctx)
	sdone := make(chan struct{})
	go func() {
		defer close(sdone)
		for sleepCtx(sctx, 50*time.Millisecond) == nil {
			if u, err := readUsage(h.srv.pid()); err == nil && u.rss > peak.Load() {
				peak.Store(u.rss)
			}
			if a := rssAnon(h.srv.pid()); a > peakAnon.Load() {
				peakAnon.Store(a)
			}
			if db, dirty := mappedRss(h.srv.pid(), "/ring.db"); db > peakDB.Load() {
				peakDB.Store(db)
				peakDirty.Store(max(peakDirty.Load(), dirty))
			}
		}
	}()
	actx, acancel := context.WithTimeout(ctx, h.e.f.hostileFor)
	start := time.Now()
	r.attacker = c.run(h, actx)
	acancel()
	u1, _ := readUsage(h.srv.pid())
	r.cpu = (u1.cpu - u0.cpu).Seconds() / time.Since(start).Seconds()
	sleepCtx(ctx, hostileSettle)
	scancel()
	<-sdone
	u2, _ := readUsage(h.srv.pid())
	r.peakRSS, r.settleRSS, r.peakAnon = peak.Load(), u2.rss, peakAnon.Load()
	r.peakDB, r.peakDirty = peakDB.Load(), peakDirty.Load()
	var lats []time.Duration
	for _, lc := range h.legit {
		l, gap, missed, recon := lc.take()
		lats = append(lats, l...)
		r.maxGap = max(r.maxGap, gap)
		r.missed += missed
		r.reconnects += recon
	}
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	if len(lats) > 0 {
		r.p99 = lats[min(len(lats)-1, len(lats)*99/100)]
	}
	after := h.refused()
	r.refused = map[string]float64{}
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			r.refused[k] = d
		}
	}
	return r, nil
}

func printHostileLine(w io.Writer, r, base hostileResult) {
	var ref []string
	for k, v := range r.refused {
		ref = append(ref, fmt.Sprintf("%s=%.0f", k, v))
	}
	sort.Strings(ref)
	refs := strings.Join(ref, " ")
	if refs == "" {
		refs = "–"
	}
	ratio := ""
	if base.p99 > 0 && r.class != base.class {
		ratio = fmt.Sprintf(" (%.1fx)", float64(r.p99)/float64(base.p99))
	}
	fmt.Fprintf(w, "%-16s %6.0f MiB %6.0f MiB %4.0f(%3.0f) MiB %6.0f MiB %6.2f %9s %9s %6d %5d  %s; %s\n", r.class, mib(r.peakRSS), mib(r.peakAnon), mib(r.peakDB), mib(r.peakDirty), mib(r.settleRSS), r.cpu,
		r.p99.Round(time.Millisecond).String()+ratio, r.maxGap.Round(time.Millisecond), r.missed, r.reconnects, refs, r.attacker)
}

// refused scrapes eddy_server_refused_total by reason (empty for an eddy
// without it).
func (h *hostileRun) refused() map[string]float64 {
	m := map[string]float64{}
	h.srv.scrape(kindEddy, func(line string) {
		rest, ok := strings.CutPrefix(line, `eddy_server_refused_total{reason="`)
		if !ok {
			return
		}
		reason, val, ok := strings.Cut(rest, `"} `)
		if v, err := strconv.ParseFloat(val, 64); ok && err == nil {
			m[reason] = v
		}
	})
	return m
}

// legitClient follows /events?mode=exact over one protocol and resumes
// with Last-Event-ID after any error, as eddy tail does.
type legitClient struct {
	proto proto

	mu         sync.Mutex // protects the fields below
	last       uint64
	lastAt     time.Time
	maxGap     time.Duration
	lat        []time.Duration
	missed     uint64 // "dropped" of gap events (mode=exact has none unless the log lost data)
	reconnects uint64
	total      uint64
	gapEvent   bool // the event being read is a gap
}

func (lc *legitClient) received() uint64 {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return lc.total
}

func (lc *legitClient) reset() {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.lat, lc.maxGap, lc.missed, lc.reconnects, lc.lastAt = nil, 0, 0, 0, time.Now()
}

func (lc *legitClient) take() ([]time.Duration, time.Duration, uint64, uint64) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	gap := max(lc.maxGap, time.Since(lc.lastAt))
	return lc.lat, gap, lc.missed, lc.reconnects
}

func (lc *legitClient) follow(ctx context.Context, base string, tc *tls.Config) {
	var rt http.RoundTripper
	if lc.proto == protoH3 {
		t := &http3.Transport{TLSClientConfig: tc.Clone()}
		defer t.Close()
		rt = t
	} else {
		t := &http.Transport{TLSClientConfig: tc.Clone(), ForceAttemptHTTP2: true}
		defer t.CloseIdleConnections()
		rt = t
	}
	for ctx.Err() == nil {
		err := lc.stream(ctx, rt, base)
		if ctx.Err() != nil {
			return
		}
		_ = err
		lc.mu.Lock()
		lc.reconnects++
		lc.mu.Unlock()
		sleepCtx(ctx, 200*time.Millisecond)
	}
}

func (lc *legitClient) stream(ctx context.Context, rt http.RoundTripper, base string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/events?mode=exact&topic=load/legit/%23", nil)
	req.Header.Set("Authorization", "Bearer "+loadToken)
	lc.mu.Lock()
	// From 0 at first: every legitimate record since eddy started.
	req.Header.Set("Last-Event-ID", strconv.FormatUint(lc.last, 10))
	lc.mu.Unlock()
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if bytes.Equal(line, []byte("event: gap")) {
			lc.mu.Lock()
			lc.gapEvent = true
			lc.mu.Unlock()
			continue
		}
		if id, ok := bytes.CutPrefix(line, []byte("id: ")); ok {
			n, _ := strconv.ParseUint(string(id), 10, 64)
			now := time.Now()
			lc.mu.Lock()
			if n > lc.last {
				lc.last = n
			}
			lc.maxGap = max(lc.maxGap, now.Sub(lc.lastAt))
			lc.lastAt = now
			lc.total++
			lc.mu.Unlock()
			continue
		}
		if data, ok := bytes.CutPrefix(line, []byte("data: ")); ok {
			lc.mu.Lock()
			if lc.gapEvent { // {"dropped":N,...}: records this client will never see
				lc.gapEvent = false
				if n, ok := atoi(leadingDigits(after(data, []byte(`"dropped":`)))); ok {
					lc.missed += n
				}
			}
			lc.mu.Unlock()
			// The publisher's payload is its send time in Unix nanos.
			v := after(data, []byte(`"value":`))
			if sent, ok := atoi(leadingDigits(v)); ok {
				d := time.Since(time.Unix(0, int64(sent)))
				lc.mu.Lock()
				lc.lat = append(lc.lat, d)
				lc.mu.Unlock()
			}
		}
	}
	return sc.Err()
}

// rssAnon is RssAnon of pid in bytes (0 when unreadable): the RSS
// without file pages, which for eddy are mostly the ring log's mapping.
func rssAnon(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// mappedRss sums the Rss, and the dirty part of it, of pid's mappings of
// files whose path ends with suffix (ring.db: bbolt maps it read-only,
// so its pages are the file's page cache, which the kernel reclaims
// rather than swap or OOM-kill for).
func mappedRss(pid int, suffix string) (rss, dirty int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return 0, 0
	}
	in := false
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if strings.Contains(f[0], "-") && len(f) >= 5 { // a mapping's header line
			in = len(f) >= 6 && strings.HasSuffix(f[len(f)-1], suffix)
			continue
		}
		if !in || len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "Rss:":
			rss += kb << 10
		case "Shared_Dirty:", "Private_Dirty:":
			dirty += kb << 10
		}
	}
	return rss, dirty
}

// attackDial dials TCP from the attack address.
func attackDial(addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: attackIP}, Timeout: 2 * time.Second}
	return d.Dial("tcp", addr)
}

func (h *hostileRun) hostPort() string { return strings.TrimPrefix(h.srv.base, "https://") }

// clientHello is a real TLS ClientHello for eddy.
func (h *hostileRun) clientHello() ([]byte, error) {
	c1, c2 := net.Pipe()
	defer c1.Close()
	go func() {
		tc := h.tc.Clone()
		tc.ServerName = "127.0.0.1"
		tls.Client(c2, tc).Handshake() // ends when c1 closes
		c2.Close()
	}()
	buf := make([]byte, 16<<10)
	n, err := io.ReadAtLeast(c1, buf, 5)
	if err != nil {
		return nil, fmt.Errorf("load: client hello: %w", err)
	}
	want := 5 + int(buf[3])<<8 | int(buf[4])
	if n < want {
		m, err := io.ReadAtLeast(c1, buf[n:], want-n)
		if err != nil {
			return nil, fmt.Errorf("load: client hello: %w", err)
		}
		n += m
	}
	return buf[:n], nil
}

// halfOpen: up to 3,000 connections that send a ClientHello and nothing
// more, held until the class ends.
func (h *hostileRun) halfOpen(ctx context.Context) string {
	hello, err := h.clientHello()
	if err != nil {
		return err.Error()
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	failed := 0
	for i := 0; i < 3000 && ctx.Err() == nil; i++ {
		c, err := attackDial(h.hostPort())
		if err != nil {
			failed++
			continue
		}
		c.SetWriteDeadline(time.Now().Add(time.Second))
		c.Write(hello)
		conns = append(conns, c)
	}
	<-ctx.Done()
	return fmt.Sprintf("%d held, %d dials failed", len(conns), failed)
}

// sendOnly lets a QUIC client send its first two packets and read
// nothing: a dead handshake, as from a spoofed source.
type sendOnly struct {
	net.PacketConn
	writes atomic.Int32
}

func (c *sendOnly) WriteTo(p []byte, a net.Addr) (int, error) {
	if c.writes.Add(1) > 2 {
		return len(p), nil
	}
	return c.PacketConn.WriteTo(p, a)
}

func (c *sendOnly) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		if _, a, err := c.PacketConn.ReadFrom(p); err != nil {
			return 0, a, err
		}
	}
}

// quicInitials: real client Initials from a new source port each, about
// 1,000/s, never completed; at most 20,000.
func (h *hostileRun) quicInitials(ctx context.Context) string {
	port, _ := strconv.Atoi(h.hostPort()[strings.LastIndexByte(h.hostPort(), ':')+1:])
	raddr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	tc := h.tc.Clone()
	tc.NextProtos = []string{http3.NextProtoH3}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 100)
	var sent atomic.Int64
	start := time.Now()
	for i := 0; i < 20000 && ctx.Err() == nil; i++ {
		if d := time.Until(start.Add(time.Duration(i) * time.Millisecond)); d > 0 {
			sleepCtx(ctx, d)
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: attackIP})
			if err != nil {
				return
			}
			tr := &quic.Transport{Conn: &sendOnly{PacketConn: pc}}
			defer tr.Close()
			dctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			sent.Add(1)
			tr.Dial(dctx, raddr, tc, &quic.Config{HandshakeIdleTimeout: time.Second})
		}()
	}
	wg.Wait()
	return fmt.Sprintf("%d handshakes started", sent.Load())
}

// h2Raw is a raw HTTP/2 connection from the attack address.
type h2Raw struct {
	c    net.Conn
	fr   *http2.Framer
	hb   bytes.Buffer
	enc  *hpack.Encoder
	next uint32
	done chan struct{}
}

func (h *hostileRun) dialH2Raw() (*h2Raw, error) {
	raw, err := attackDial(h.hostPort())
	if err != nil {
		return nil, err
	}
	tc := h.tc.Clone()
	tc.NextProtos, tc.ServerName = []string{"h2"}, "127.0.0.1"
	c := tls.Client(raw, tc)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := c.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	a := &h2Raw{c: c, fr: http2.NewFramer(c, c), next: 1, done: make(chan struct{})}
	a.enc = hpack.NewEncoder(&a.hb)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		c.Close()
		return nil, err
	}
	if err := a.fr.WriteSettings(); err != nil {
		c.Close()
		return nil, err
	}
	go func() {
		defer close(a.done)
		rd := http2.NewFramer(io.Discard, c)
		for {
			if _, err := rd.ReadFrame(); err != nil {
				return
			}
		}
	}()
	return a, nil
}

func (a *h2Raw) headers(authority, path string) []byte {
	a.hb.Reset()
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", authority}, {":path", path}, {"authorization", "Bearer " + loadToken}} {
		a.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	return a.hb.Bytes()
}

func (a *h2Raw) close() { a.c.Close(); <-a.done }

// rapidReset: HEADERS for /events then RST_STREAM, with a valid token,
// over 4 connections, reconnecting whenever eddy lets them.
func (h *hostileRun) rapidReset(ctx context.Context) string {
	var wg sync.WaitGroup
	var streams, conns atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				a, err := h.dialH2Raw()
				if err != nil {
					sleepCtx(ctx, 50*time.Millisecond)
					continue
				}
				conns.Add(1)
				for ctx.Err() == nil {
					id := a.next
					a.next += 2
					a.c.SetWriteDeadline(time.Now().Add(time.Second))
					if a.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: a.headers(h.hostPort(), "/events"), EndStream: true, EndHeaders: true}) != nil ||
						a.fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
						break
					}
					streams.Add(1)
				}
				a.close()
			}
		}()
	}
	wg.Wait()
	return fmt.Sprintf("%d streams reset on %d connections", streams.Load(), conns.Load())
}

// continuation: HEADERS without END_HEADERS, then empty CONTINUATION
// frames, reconnecting whenever eddy lets it.
func (h *hostileRun) continuation(ctx context.Context) string {
	var frames, conns int
	for ctx.Err() == nil {
		a, err := h.dialH2Raw()
		if err != nil {
			sleepCtx(ctx, 50*time.Millisecond)
			continue
		}
		conns++
		if a.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: a.headers(h.hostPort(), "/events")}) == nil {
			for ctx.Err() == nil {
				a.c.SetWriteDeadline(time.Now().Add(time.Second))
				if a.fr.WriteContinuation(1, false, nil) != nil {
					break
				}
				frames++
			}
		}
		a.close()
	}
	return fmt.Sprintf("%d CONTINUATION frames on %d connections", frames, conns)
}

// h3Reset: HTTP/3 requests for /events cancelled as soon as they are
// answered, on one connection at a time.
func (h *hostileRun) h3Reset(ctx context.Context) string {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: attackIP})
	if err != nil {
		return err.Error()
	}
	qt := &quic.Transport{Conn: pc}
	defer qt.Close()
	tr := &http3.Transport{
		TLSClientConfig: h.tc.Clone(),
		Dial: func(ctx context.Context, addr string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
			ua, err := net.ResolveUDPAddr("udp", addr)
			if err != nil {
				return nil, err
			}
			return qt.DialEarly(ctx, ua, tc, qc)
		},
	}
	defer tr.Close()
	var resets, failed int
	for ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, h.srv.base+"/events", nil)
		req.Header.Set("Authorization", "Bearer "+loadToken)
		resp, err := tr.RoundTrip(req)
		cancel()
		if err != nil {
			failed++
			sleepCtx(ctx, 20*time.Millisecond)
			continue
		}
		resp.Body.Close()
		resets++
	}
	return fmt.Sprintf("%d requests reset, %d failed", resets, failed)
}

// filters: 200 streams of 1,000 topic filters each, held, and 16
// clients asking /api/history with 1,000 filters in a loop (2,500 would
// not fit in eddy's 64 KB of request headers).
func (h *hostileRun) filters(ctx context.Context) string {
	tr := &http.Transport{TLSClientConfig: h.tc.Clone(), ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: attackIP}}
			return d.DialContext(ctx, network, addr)
		}}
	defer tr.CloseIdleConnections()
	query := func(n int) string {
		q := url.Values{}
		for i := range n {
			q.Add("topic", fmt.Sprintf("junk/%d/+/#", i))
		}
		return q.Encode()
	}
	var wg sync.WaitGroup
	var ok, refused, failed atomic.Int64
	do := func(path string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.srv.base+path, nil)
		req.Header.Set("Authorization", "Bearer "+loadToken)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			failed.Add(1)
			sleepCtx(ctx, 10*time.Millisecond)
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			refused.Add(1)
			io.Copy(io.Discard, resp.Body)
			return
		}
		ok.Add(1)
		io.Copy(io.Discard, resp.Body) // a stream: until the class ends
	}
	events := "/events?" + query(1000)
	for range 200 {
		wg.Add(1)
		go func() { defer wg.Done(); do(events) }()
	}
	history := "/api/history?limit=100000&" + query(1000)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				do(history)
			}
		}()
	}
	wg.Wait()
	return fmt.Sprintf("%d answered 200, %d refused, %d failed", ok.Load(), refused.Load(), failed.Load())
}

// historyScan: 16 clients asking /api/history?limit=100000 with 64
// filters (the most eddy accepts) that match nothing, in a loop: every
// request scans the whole log.
func (h *hostileRun) historyScan(ctx context.Context) string {
	tr := &http.Transport{TLSClientConfig: h.tc.Clone(), ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: attackIP}}
			return d.DialContext(ctx, network, addr)
		}}
	defer tr.CloseIdleConnections()
	q := url.Values{"limit": {"100000"}}
	for i := range 64 {
		q.Add("topic", fmt.Sprintf("nothing/%d/+/#", i))
	}
	path := h.srv.base + "/api/history?" + q.Encode()
	var wg sync.WaitGroup
	var ok, busy, failed atomic.Int64
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, path, nil)
				req.Header.Set("Authorization", "Bearer "+loadToken)
				resp, err := tr.RoundTrip(req)
				if err != nil {
					failed.Add(1)
					sleepCtx(ctx, 10*time.Millisecond)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					ok.Add(1)
				} else {
					busy.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return fmt.Sprintf("%d full scans answered, %d refused, %d failed", ok.Load(), busy.Load(), failed.Load())
}

// mqttBurst: 4,000 payloads of 60 KB at QoS 1 as fast as the broker
// takes them, and one valid JSON payload nested 10,000 deep.
func (h *hostileRun) mqttBurst(ctx context.Context) string {
	o := paho.NewClientOptions().AddBroker(h.broker).SetClientID("eddy-load-burst").SetCleanSession(true).
		SetAutoReconnect(false).SetConnectTimeout(10 * time.Second)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(mqttTimeout) || tok.Error() != nil {
		return fmt.Sprintf("connect: %v", tok.Error())
	}
	defer c.Disconnect(250)
	deep := strings.Repeat("[", 10000) + strings.Repeat("]", 10000)
	c.Publish("load/burst/deep", 1, false, deep).WaitTimeout(mqttTimeout)
	payload := bytes.Repeat([]byte("x"), 60<<10)
	var pending []paho.Token
	sent := 0
	for i := 0; i < 4000 && ctx.Err() == nil; i++ {
		pending = append(pending, c.Publish("load/burst/"+strconv.Itoa(i%100), 1, false, payload))
		sent++
		if len(pending) == window {
			pending[0].WaitTimeout(mqttTimeout)
			pending = pending[1:]
		}
	}
	for _, t := range pending {
		t.WaitTimeout(mqttTimeout)
	}
	<-ctx.Done()
	return fmt.Sprintf("%d x 60 KB and one 10,000-deep JSON published", sent)
}

// memCgroup is a memory cgroup of our own that eddy runs in.
type memCgroup struct {
	dir string
	v2  bool
}

// newMemCgroup makes a child of this process's memory cgroup (v1 or v2)
// limited to limit bytes, swap included.
func newMemCgroup(limit int64) (*memCgroup, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("load: cgroup: %w", err)
	}
	var cg memCgroup
	for line := range strings.Lines(string(b)) {
		f := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(f) == 3 && f[1] == "memory" {
			cg.dir = filepath.Join("/sys/fs/cgroup/memory", f[2])
		}
		if len(f) == 3 && f[0] == "0" && f[1] == "" && cg.dir == "" {
			cg.dir, cg.v2 = filepath.Join("/sys/fs/cgroup", f[2]), true
		}
	}
	if cg.dir == "" {
		return nil, errors.New("load: cgroup: no memory controller")
	}
	cg.dir = filepath.Join(cg.dir, fmt.Sprintf("eddy-load-%d", os.Getpid()))
	if err := os.Mkdir(cg.dir, 0o755); err != nil {
		return nil, fmt.Errorf("load: cgroup: %w", err)
	}
	files := []string{"memory.limit_in_bytes", "memory.memsw.limit_in_bytes"}
	if cg.v2 {
		files = []string{"memory.max", "memory.swap.max"}
	}
	for i, name := range files {
		v := strconv.FormatInt(limit, 10)
		if cg.v2 && i == 1 {
			v = "0"
		}
		if err := os.WriteFile(filepath.Join(cg.dir, name), []byte(v), 0o644); err != nil && i == 0 {
			cg.remove()
			return nil, fmt.Errorf("load: cgroup: %w", err)
		}
	}
	return &cg, nil
}

// wrap is the command prefix that moves eddy into the cgroup.
func (cg *memCgroup) wrap() []string {
	return []string{"sh", "-c", `echo $$ > "` + filepath.Join(cg.dir, "cgroup.procs") + `" && exec "$@"`, "sh"}
}

// report says whether the kernel OOM-killed anything in the cgroup.
func (cg *memCgroup) report(s *server) string {
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(cg.dir, name))
		return strings.Join(strings.Fields(string(b)), " ")
	}
	alive := "alive"
	if err := s.exited(); err != nil {
		alive = err.Error()
	}
	if cg.v2 {
		return fmt.Sprintf("cgroup %s: memory.peak %s; memory.events %s; eddy %s", cg.dir, read("memory.peak"), read("memory.events"), alive)
	}
	return fmt.Sprintf("cgroup %s: max_usage %s bytes, failcnt %s; oom_control %s; eddy %s", cg.dir,
		read("memory.max_usage_in_bytes"), read("memory.failcnt"), read("memory.oom_control"), alive)
}

// remove deletes the cgroup once eddy has left it.
func (cg *memCgroup) remove() {
	for range 50 {
		if os.Remove(cg.dir) == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

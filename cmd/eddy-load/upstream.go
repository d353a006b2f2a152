package main

// The upstream scenario: eddy's JetStream publisher against a real
// 3-node cluster (nats-server's own package, in this process, each node
// with its own store dir and sync_interval: always, an R3 stream).
//
//   - raw: one Go client publishing asynchronously (256 outstanding), the
//     baseline;
//   - push max rate: a ring log holding N records is pushed from scratch
//     (upstream.Pusher, the code eddy run uses), which is also push's
//     catch-up rate;
//   - push live: 1,000 records/s appended while pushing, append to
//     acknowledgement latency;
//   - pull: simulated devices (HTTP/3 servers speaking /events with
//     resume, in this process) followed by the real `eddy collect` as one
//     and as two child processes; records/s, latency, the collector's CPU
//     per record and RSS; RSS per idle device at 1,000 devices; catch-up
//     after the collector was away while the devices recorded.
//
// Latency is measured from the stream itself: the time JetStream stored
// each message minus its Eddy-Ts (when the record was appended or
// generated). CPU of raw and push is this whole process (cluster
// included), so compare them with each other; the collector's is its own.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/eddy-iot/eddy/ringlog"
	devtls "github.com/eddy-iot/eddy/tls"
	"github.com/eddy-iot/eddy/upstream"
)

// jsCluster is the in-process 3-node cluster.
type jsCluster struct {
	nodes []*natsserver.Server
	urls  []string
}

func startJSCluster(dir string) (*jsCluster, error) {
	c := &jsCluster{}
	var routes []int
	for range 3 {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		routes = append(routes, p)
	}
	for i := range 3 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		o := &natsserver.Options{ServerName: fmt.Sprintf("n%d", i), Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true,
			JetStream: true, StoreDir: filepath.Join(dir, fmt.Sprintf("n%d", i)), SyncAlways: true,
			Cluster: natsserver.ClusterOpts{Name: "load", Host: "127.0.0.1", Port: routes[i]}}
		for j, rp := range routes {
			if j != i {
				o.Routes = append(o.Routes, natsserver.RoutesFromStr(fmt.Sprintf("nats://127.0.0.1:%d", rp))...)
			}
		}
		s, err := natsserver.NewServer(o)
		if err != nil {
			return nil, err
		}
		go s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			return nil, fmt.Errorf("load: nats node %d not ready", i)
		}
		c.nodes = append(c.nodes, s)
		c.urls = append(c.urls, fmt.Sprintf("nats://127.0.0.1:%d", port))
	}
	return c, nil
}

func (c *jsCluster) stop() {
	for _, s := range c.nodes {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// selfCPU is this process's CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// upResult is one row of the report.
type upResult struct {
	name      string
	records   uint64
	took      time.Duration
	cpu       time.Duration // per record
	p50, p99  time.Duration
	rss       int64
	perDevice int64
	note      string
}

func (e env) upstream(ctx context.Context) error {
	cl, err := startJSCluster(filepath.Join(e.dir, "nats"))
	if err != nil {
		return err
	}
	defer cl.stop()
	conn, err := upstream.Connect(upstream.Options{Servers: cl.urls, Stream: "EDDY", Replicas: 3, Name: "load"})
	if err != nil {
		return err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = conn.EnsureStream(cctx)
	cancel()
	if err != nil {
		return err
	}
	// EDDY_UP_PHASES picks phases (comma-separated: raw, push, live,
	// pull, pull100, idle, idle-warm, idle-h3, catchup); default all.
	want := map[string]bool{}
	for _, p := range strings.Split(os.Getenv("EDDY_UP_PHASES"), ",") {
		if p = strings.TrimSpace(p); p != "" {
			want[p] = true
		}
	}
	phase := func(name string) bool { return len(want) == 0 || want[name] }
	runs := max(1, e.f.runs)
	var rows []upResult
	add := func(r upResult, err error) error {
		if err != nil {
			return err
		}
		rows = append(rows, r)
		e.lg.Info("upstream", "phase", r.name, "records", r.records, "took", r.took, "rate", float64(r.records)/r.took.Seconds(), "p99", r.p99)
		return nil
	}
	// The rate phases run in turn, runs times each, so that the raw
	// baseline and eddy's publishers see the same machine; the median
	// run of each is reported, and compared with raw's median.
	const n = 60000 // push's log: 10 minutes at 100 records/s
	var raw, push, pull []upResult
	for run := range runs {
		if phase("raw") {
			r, err := e.rawPublish(ctx, conn, n)
			if err := add(r, err); err != nil {
				return err
			}
			raw = append(raw, r)
		}
		if phase("push") {
			r, err := e.pushCatchUp(ctx, conn, cl.urls, n, run)
			if err := add(r, err); err != nil {
				return err
			}
			push = append(push, r)
		}
		if phase("pull") {
			// Offered more than the cluster takes on this box: pull's maximum.
			r, err := e.pullLive(ctx, conn, cl.urls, fmt.Sprintf("max%d", run), 1, 100, 200, 8*time.Second)
			if err := add(r, err); err != nil {
				return err
			}
			pull = append(pull, r)
		}
	}
	rows = rows[:0]
	rawMed := medianRow(raw)
	for i, set := range [][]upResult{raw, push, pull} {
		if len(set) == 0 {
			continue
		}
		m := medianRow(set)
		m.note += fmt.Sprintf("; median of %d runs %s", len(set), ratesOf(set))
		if rawMed.records > 0 && i > 0 {
			m.note += fmt.Sprintf("; **%.2fx raw**", rate(m)/rate(rawMed))
		}
		rows = append(rows, m)
	}
	if phase("live") {
		if err := add(e.pushLive(ctx, conn, cl.urls, 1000, 15*time.Second)); err != nil {
			return err
		}
	}
	if phase("pull100") {
		for _, cols := range []int{1, 2} {
			if err := add(e.pullLive(ctx, conn, cl.urls, fmt.Sprintf("c%d", cols), cols, 100, 100, 20*time.Second)); err != nil {
				return err
			}
		}
	}
	if phase("idle") {
		if err := add(e.pullIdle(ctx, conn, cl.urls, 1000, "5s", false)); err != nil {
			return err
		}
	}
	if phase("idle-warm") {
		if err := add(e.pullIdle(ctx, conn, cl.urls, 1000, "5s", true)); err != nil {
			return err
		}
	}
	if phase("idle-h3") {
		if err := add(e.pullIdle(ctx, conn, cl.urls, 1000, "0s", false)); err != nil {
			return err
		}
	}
	if phase("catchup") {
		if err := add(e.pullCatchUp(ctx, conn, cl.urls, 100, 10, 10*time.Minute)); err != nil {
			return err
		}
	}
	fmt.Fprintf(e.f.out, "\n## upstream: 3-node JetStream cluster in process, sync always, R3\n\n")
	fmt.Fprintf(e.f.out, "| phase | records | records/s | CPU/record | p50 | p99 | RSS | note |\n|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		rss := "–"
		if r.rss > 0 {
			rss = fmt.Sprintf("%.1f MiB", float64(r.rss)/(1<<20))
		}
		if r.perDevice > 0 {
			rss += fmt.Sprintf(" (%.1f KiB/device)", float64(r.perDevice)/1024)
		}
		fmt.Fprintf(e.f.out, "| %s | %d | %.0f | %s | %s | %s | %s | %s |\n", r.name, r.records, rate(r),
			r.cpu.Round(100*time.Nanosecond), r.p50.Round(100*time.Microsecond), r.p99.Round(100*time.Microsecond), rss, r.note)
	}
	return nil
}

// goMem summarizes a collector's Go memory from its /metrics, per device.
func goMem(port, devices int) string {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	vals := map[string]float64{}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) == 2 && !strings.HasPrefix(f[0], "#") {
			v, _ := strconv.ParseFloat(f[1], 64)
			vals[f[0]] = v
		}
	}
	per := func(k string) float64 { return vals[k] / float64(devices) / 1024 }
	protos := map[string]int{}
	for k, v := range vals {
		if strings.HasPrefix(k, "eddy_upstream_protocol{") && v == 1 {
			protos[k[strings.LastIndex(k, "=")+2:len(k)-2]]++
		}
	}
	return fmt.Sprintf("streams by protocol %v; per device: heap in use %.1f KiB (allocated %.1f KiB), heap idle not released %.1f KiB, stacks %.1f KiB, %.1f goroutines",
		protos, per("go_memstats_heap_inuse_bytes"), per("go_memstats_heap_alloc_bytes"), (vals["go_memstats_heap_idle_bytes"]-vals["go_memstats_heap_released_bytes"])/float64(devices)/1024,
		per("go_memstats_stack_inuse_bytes"), vals["go_goroutines"]/float64(devices))
}

func rate(r upResult) float64 { return float64(r.records) / r.took.Seconds() }

// medianRow is the run with the median rate.
func medianRow(rs []upResult) upResult {
	if len(rs) == 0 {
		return upResult{}
	}
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b upResult) int { return cmp.Compare(rate(a), rate(b)) })
	return s[len(s)/2]
}

func ratesOf(rs []upResult) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("%.0f", rate(r)))
	}
	return "(" + strings.Join(parts, ", ") + "/s)"
}

// streamSeq is the stream's last sequence now.
func streamSeq(ctx context.Context, conn *upstream.Conn) (uint64, error) {
	s, err := conn.JetStream().Stream(ctx, "EDDY")
	if err != nil {
		return 0, err
	}
	i, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return i.State.LastSeq, nil
}

// latencies reads the messages of filter stored after stream sequence
// from: count, and store time minus Eddy-Ts quantiles.
func jsLatencies(ctx context.Context, conn *upstream.Conn, filters []string, from uint64, want uint64) (uint64, time.Duration, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	s, err := conn.JetStream().Stream(ctx, "EDDY")
	if err != nil {
		return 0, 0, 0, err
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: filters,
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from + 1})
	if err != nil {
		return 0, 0, 0, err
	}
	var h hist
	var got uint64
	empty := 0
	for got < want {
		batch, err := cons.Fetch(2000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return 0, 0, 0, err
		}
		k := 0
		for m := range batch.Messages() {
			k++
			got++
			md, err := m.Metadata()
			ts, perr := time.Parse(time.RFC3339Nano, m.Headers().Get(upstream.HdrTs))
			if err == nil && perr == nil {
				h.add(int64(md.Timestamp.Sub(ts)))
			}
		}
		if k == 0 {
			if empty++; empty >= 3 {
				break
			}
		} else {
			empty = 0
		}
	}
	return got, h.quantile(0.5), h.quantile(0.99), nil
}

func (e env) rawPublish(ctx context.Context, conn *upstream.Conn, n int) (upResult, error) {
	js := conn.JetStream()
	from, err := streamSeq(ctx, conn)
	if err != nil {
		return upResult{}, err
	}
	body := []byte(`{"seq":1,"topic":"load/raw","ts":"2026-01-01T00:00:00Z","value":12.5,"unit":"bar"}`)
	// Ids unique to this run: a run repeated within the duplicate window
	// would otherwise be acknowledged as duplicates, stored nowhere.
	runID := fmt.Sprintf("raw:%x:", time.Now().UnixNano())
	cpu0, t0 := selfCPU(), time.Now()
	inflight := make(chan jetstream.PubAckFuture, 256)
	done := make(chan error, 1)
	go func() {
		for f := range inflight {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				done <- err
				for range inflight {
				}
				return
			case <-ctx.Done():
				done <- ctx.Err()
				for range inflight {
				}
				return
			}
		}
		done <- nil
	}()
	for i := range n {
		m := nats.NewMsg("eddy.raw.load.raw")
		m.Header.Set(upstream.HdrTs, time.Now().UTC().Format(time.RFC3339Nano))
		m.Header.Set(jetstream.MsgIDHeader, runID+strconv.Itoa(i))
		m.Data = body
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			close(inflight)
			<-done
			return upResult{}, err
		}
		inflight <- f
	}
	close(inflight)
	if err := <-done; err != nil {
		return upResult{}, fmt.Errorf("load: raw publish: %w", err)
	}
	took, cpu := time.Since(t0), selfCPU()-cpu0
	_, p50, p99, err := jsLatencies(ctx, conn, []string{"eddy.raw.>"}, from, uint64(n))
	return upResult{name: "raw async publish (baseline)", records: uint64(n), took: took, cpu: cpu / time.Duration(n), p50: p50, p99: p99,
		note: "256 outstanding, msg id; CPU: whole process"}, err
}

// fillLog appends n records to a fresh ring log.
func fillLog(dir string, n int) (*ringlog.Log, error) {
	l, err := ringlog.Open(dir, &ringlog.Options{SyncInterval: 100 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	for i := range n {
		if _, err := l.Append(ringlog.Record{Topic: fmt.Sprintf("load/push/%d", i%10), Kind: ringlog.KindJSON, Value: []byte("12.5"), Unit: "bar"}); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

func (e env) pushCatchUp(ctx context.Context, conn *upstream.Conn, urls []string, n, run int) (upResult, error) {
	dev := fmt.Sprintf("push-catchup-%d", run)
	l, err := fillLog(filepath.Join(e.dir, dev), n)
	if err != nil {
		return upResult{}, err
	}
	defer l.Close()
	from, err := streamSeq(ctx, conn)
	if err != nil {
		return upResult{}, err
	}
	pc, err := upstream.Connect(upstream.Options{Servers: urls, Stream: "EDDY", Replicas: 3, Name: "load push"})
	if err != nil {
		return upResult{}, err
	}
	defer pc.Close()
	p, err := upstream.NewPusher(pc, l, upstream.PushOptions{Device: dev})
	if err != nil {
		return upResult{}, err
	}
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	cpu0, t0 := selfCPU(), time.Now()
	go func() { done <- p.Run(pctx) }()
	err = waitFor(ctx, 5*time.Minute, "push catch-up", func() bool {
		return p.Stats().AckedSeq.Load() >= l.LastSeq() || p.Stats().Published.Load() >= uint64(n)
	})
	took, cpu := time.Since(t0), selfCPU()-cpu0
	cancel()
	<-done
	if err != nil {
		return upResult{}, err
	}
	_, p50, p99, err := jsLatencies(ctx, conn, []string{upstream.DeviceFilter(dev)}, from, uint64(n))
	return upResult{name: "push max rate = catch-up (log pre-filled: 10 min at 100/s)", records: uint64(n), took: took, cpu: cpu / time.Duration(n),
		p50: p50, p99: p99, note: fmt.Sprintf("mean batch %.0f; latency includes the backlog; CPU: whole process", float64(p.Stats().Published.Load())/float64(max(1, p.Stats().Units.Load())))}, err
}

func (e env) pushLive(ctx context.Context, conn *upstream.Conn, urls []string, rate int, d time.Duration) (upResult, error) {
	l, err := ringlog.Open(filepath.Join(e.dir, "push-live"), &ringlog.Options{SyncInterval: 100 * time.Millisecond})
	if err != nil {
		return upResult{}, err
	}
	defer l.Close()
	from, err := streamSeq(ctx, conn)
	if err != nil {
		return upResult{}, err
	}
	pc, err := upstream.Connect(upstream.Options{Servers: urls, Stream: "EDDY", Replicas: 3, Name: "load push live"})
	if err != nil {
		return upResult{}, err
	}
	defer pc.Close()
	p, err := upstream.NewPusher(pc, l, upstream.PushOptions{Device: "push-live"})
	if err != nil {
		return upResult{}, err
	}
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(pctx) }()
	defer func() { cancel(); <-done }()
	tick := time.NewTicker(10 * time.Millisecond)
	per := rate / 100
	n := 0
	cpu0, t0 := selfCPU(), time.Now()
	for time.Since(t0) < d {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return upResult{}, ctx.Err()
		}
		for range per {
			if _, err := l.Append(ringlog.Record{Topic: "load/live", Kind: ringlog.KindJSON, Value: []byte("1")}); err != nil {
				return upResult{}, err
			}
			n++
		}
	}
	tick.Stop()
	err = waitFor(ctx, time.Minute, "push live drained", func() bool { return p.Stats().Published.Load() >= uint64(n) })
	took, cpu := time.Since(t0), selfCPU()-cpu0
	if err != nil {
		return upResult{}, err
	}
	_, p50, p99, err := jsLatencies(ctx, conn, []string{"eddy.push-live.>"}, from, uint64(n))
	return upResult{name: fmt.Sprintf("push live %d/s", rate), records: uint64(n), took: took, cpu: cpu / time.Duration(n), p50: p50, p99: p99,
		note: "append to stored; CPU: whole process incl. the log"}, err
}

// simDevices are lightweight devices speaking /events?mode=exact with
// resume over HTTP/3: records are computed from their seq, so a device
// holds no log and hundreds fit in this process.
type simDevices struct {
	devs    []*simDevice
	ticker  *time.Ticker
	stop    chan struct{}
	wg      sync.WaitGroup
	fp      string
	rate    int
	ticking chan struct{} // closed when the producing goroutine has stopped
}

type simDevice struct {
	name     string
	addr     string
	srv      *http3.Server // nil without UDP
	tcp      *http.Server  // HTTP/1.1 and HTTP/2 on the same port
	pc       net.PacketConn
	t0       time.Time
	interval time.Duration
	last     atomic.Uint64
	mu       sync.Mutex
	wake     chan struct{} // closed when last moves
}

func (d *simDevice) frame(dst []byte, seq uint64) []byte {
	ts := d.t0.Add(time.Duration(seq-1) * d.interval).UTC().Format(time.RFC3339Nano)
	return fmt.Appendf(dst, "id: %d\nevent: reading\ndata: {\"seq\":%d,\"topic\":\"sim/value\",\"ts\":\"%s\",\"value\":%d}\n\n", seq, seq, ts, seq)
}

func (d *simDevice) waitCh() chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.wake
}

func (d *simDevice) advance(to uint64) {
	d.last.Store(to)
	d.mu.Lock()
	close(d.wake)
	d.wake = make(chan struct{})
	d.mu.Unlock()
}

func (d *simDevice) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+loadToken {
		http.Error(w, "401", http.StatusUnauthorized)
		return
	}
	after, _ := strconv.ParseUint(r.Header.Get("Last-Event-ID"), 10, 64)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set(upstream.EpochHeader, "sim")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	io.WriteString(w, "retry: 1000\n\n")
	rc.Flush()
	buf := make([]byte, 0, 16<<10)
	hb := time.NewTicker(5 * time.Second)
	defer hb.Stop()
	for {
		wake := d.waitCh()
		last := d.last.Load()
		for after < last {
			buf = buf[:0]
			for after < last && len(buf) < 12<<10 {
				after++
				buf = d.frame(buf, after)
			}
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
		rc.Flush()
		select {
		case <-wake:
		case <-hb.C:
			if _, err := io.WriteString(w, ": hb\n\n"); err != nil {
				return
			}
			rc.Flush()
		case <-r.Context().Done():
			return
		}
	}
}

// listenBoth listens on one loopback port over TCP and, unless tcpOnly,
// UDP, as an eddy does.
func listenBoth(tcpOnly bool) (net.Listener, net.PacketConn, error) {
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil || tcpOnly {
			return ln, nil, err
		}
		pc, err := net.ListenPacket("udp", ln.Addr().String())
		if err == nil {
			return ln, pc, nil
		}
		ln.Close()
	}
	return nil, nil, errors.New("no loopback port free over both TCP and UDP")
}

// startSim starts n devices named prefix-NNN producing rate records/s each.
func (e env) startSim(prefix string, n, rate int) (*simDevices, error) {
	dev, err := devtls.Load(devtls.Options{Dir: filepath.Join(e.dir, "sim-tls"), Hostname: "sim",
		Addrs: func() ([]net.IP, error) { return []net.IP{net.IPv4(127, 0, 0, 1)}, nil }})
	if err != nil {
		return nil, err
	}
	s := &simDevices{stop: make(chan struct{}), fp: dev.Fingerprint()}
	t0 := time.Now()
	// EDDY_UP_SIM_NO_UDP: the devices serve TCP only, so a collector
	// that does not park (phase idle-h3) falls back to HTTP/2: its memory
	// per device on that path.
	noUDP := os.Getenv("EDDY_UP_SIM_NO_UDP") != ""
	for i := range n {
		ln, pc, err := listenBoth(noUDP)
		if err != nil {
			s.close()
			return nil, err
		}
		d := &simDevice{name: fmt.Sprintf("%s-%03d", prefix, i), addr: ln.Addr().String(), pc: pc, t0: t0, wake: make(chan struct{})}
		if rate > 0 {
			d.interval = time.Second / time.Duration(rate)
		}
		d.tcp = &http.Server{Handler: d, TLSConfig: dev.ServerConfig()}
		s.devs = append(s.devs, d)
		s.wg.Add(1)
		go func() { defer s.wg.Done(); d.tcp.ServeTLS(ln, "", "") }()
		if pc != nil {
			d.srv = &http3.Server{Handler: d, TLSConfig: http3.ConfigureTLSConfig(dev.ServerConfig()),
				QUICConfig: &quic.Config{MaxIdleTimeout: 30 * time.Second}}
			s.wg.Add(1)
			go func() { defer s.wg.Done(); d.srv.Serve(pc) }()
		}
	}
	s.rate = rate
	return s, nil
}

// begin starts producing: every device's records are stamped from now.
func (s *simDevices) begin() { s.beginAt(time.Now()) }

// beginAt starts producing as if from t0: a t0 in the past is a backlog.
func (s *simDevices) beginAt(t0 time.Time) {
	if s.rate == 0 {
		return
	}
	for _, d := range s.devs {
		d.t0 = t0
		if to := uint64(time.Since(t0) / d.interval); to > 0 {
			d.advance(to)
		}
	}
	{
		s.ticker = time.NewTicker(10 * time.Millisecond)
		s.ticking = make(chan struct{})
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer close(s.ticking)
			for {
				select {
				case <-s.stop:
					return
				case now := <-s.ticker.C:
					for _, d := range s.devs {
						if to := uint64(now.Sub(d.t0) / d.interval); to > d.last.Load() {
							d.advance(to)
						}
					}
				}
			}
		}()
	}
}

// halt stops producing (total is final when it returns); the servers go
// on serving.
func (s *simDevices) halt() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	if s.ticking != nil {
		<-s.ticking
	}
}

func (s *simDevices) total() uint64 {
	var t uint64
	for _, d := range s.devs {
		t += d.last.Load()
	}
	return t
}

func (s *simDevices) close() {
	s.halt()
	for _, d := range s.devs {
		d.tcp.Close()
		if d.srv != nil {
			d.srv.Close()
			d.pc.Close()
		}
	}
	s.wg.Wait()
}

// startCollectors starts k `eddy collect` children following the devices.
func (e env) startCollectors(name string, k int, urls []string, s *simDevices) ([]*child, []int, error) {
	return e.startCollectorsDebug(name, k, urls, s, "", "")
}

// startCollectorsDebug is startCollectors with the first collector
// serving pprof on debug (when not empty), and extra lines in each
// [collector] table.
func (e env) startCollectorsDebug(name string, k int, urls []string, s *simDevices, debug, extra string) ([]*child, []int, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "[nats]\nservers = [")
	for i, u := range urls {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", u)
	}
	b.WriteString("]\nreplicas = 3\n\n")
	for _, d := range s.devs {
		fmt.Fprintf(&b, "[[device]]\nname = %q\nurl = \"https://%s\"\ntoken = %q\nfingerprint = %q\n\n", d.name, d.addr, loadToken, s.fp)
	}
	var out []*child
	var ports []int
	for i := range k {
		port, err := freePort()
		if err != nil {
			return out, ports, err
		}
		ports = append(ports, port)
		cfg := fmt.Sprintf("[collector]\nlisten = \"127.0.0.1:%d\"\nid = \"%s-%d\"\n%s\n", port, name, i, extra) + b.String()
		path := filepath.Join(e.dir, fmt.Sprintf("collect-%s-%d.toml", name, i))
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			return out, ports, err
		}
		args := []string{e.bin, "collect", "--config", path}
		if i == 0 && debug != "" {
			args = append(args, "--debug-listen", debug)
		}
		c, err := startChild("eddy collect", filepath.Join(e.dir, fmt.Sprintf("collect-%s-%d.log", name, i)), args...)
		if err != nil {
			return out, ports, err
		}
		out = append(out, c)
	}
	return out, ports, nil
}

// settled reports whether the collectors on ports have n device streams
// open between them, each collector holding some.
func settled(ports []int, n int) bool {
	open := 0
	for _, p := range ports {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", p))
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		mine := 0
		for line := range strings.Lines(string(b)) {
			if strings.HasPrefix(line, "eddy_upstream_connected{") && strings.HasSuffix(strings.TrimSpace(line), " 1") {
				mine++
			}
		}
		if mine == 0 {
			return false
		}
		open += mine
	}
	return open == n
}

func stopAll(cs []*child) {
	for _, c := range cs {
		c.stop(5 * time.Second)
	}
}

func usageOf(cs []*child) (cpu time.Duration, rss int64) {
	for _, c := range cs {
		if u, err := readUsage(c.pid()); err == nil {
			cpu += u.cpu
			rss += u.rss
		}
	}
	return cpu, rss
}

// storedSince counts the stream's messages after from (all devices).
func storedSince(ctx context.Context, conn *upstream.Conn, from uint64) uint64 {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	seq, err := streamSeq(ctx, conn)
	if err != nil || seq < from {
		return 0
	}
	return seq - from
}

func (e env) pullLive(ctx context.Context, conn *upstream.Conn, urls []string, name string, cols, n, rate int, d time.Duration) (upResult, error) {
	s, err := e.startSim("pull-"+name, n, rate)
	if err != nil {
		return upResult{}, err
	}
	defer s.close()
	from, err := streamSeq(ctx, conn)
	if err != nil {
		return upResult{}, err
	}
	cs, ports, err := e.startCollectors(name, cols, urls, s)
	defer stopAll(cs)
	if err != nil {
		return upResult{}, err
	}
	// Measure the steady state: every device connected, leases spread.
	if err := waitFor(ctx, time.Minute, "collectors settled", func() bool { return settled(ports, n) }); err != nil {
		return upResult{}, err
	}
	if err := sleepCtx(ctx, 2*time.Second); err != nil {
		return upResult{}, err
	}
	s.begin()
	t0 := time.Now()
	cpu0, _ := usageOf(cs)
	if err := sleepCtx(ctx, d); err != nil {
		return upResult{}, err
	}
	s.halt()
	want := s.total()
	err = waitFor(ctx, 2*time.Minute, "pull drained", func() bool { return storedSince(ctx, conn, from) >= want })
	took := time.Since(t0)
	cpu1, rss := usageOf(cs)
	if err != nil {
		return upResult{}, err
	}
	var filters []string
	for _, d := range s.devs {
		filters = append(filters, upstream.DeviceFilter(d.name))
	}
	got, p50, p99, err := jsLatencies(ctx, conn, filters, from, want)
	note := fmt.Sprintf("%d devices x %d/s, %d collector(s); CPU, RSS: the collectors", n, rate, cols)
	if got != want {
		note += fmt.Sprintf("; stream holds %d of %d", got, want)
	}
	return upResult{name: fmt.Sprintf("pull %d devices into %d collector(s)", n, cols), records: want, took: took,
		cpu: (cpu1 - cpu0) / time.Duration(max(want, 1)), p50: p50, p99: p99, rss: rss, note: note}, err
}

// pullIdle measures the collector's RSS per idle device: parked on
// HTTP/1.1 (park_after 5s here), or with park_after "0s" (never) on
// HTTP/3. With warm, the devices first record 1 record/s for 20s (over
// HTTP/3), then go idle and park: what a fleet that quietens holds,
// measured 4.5 minutes after.
func (e env) pullIdle(ctx context.Context, conn *upstream.Conn, urls []string, n int, parkAfter string, warm bool) (upResult, error) {
	var mem string // the big collector's Go memory, from its /metrics
	rssFor := func(name string, k int) (int64, error) {
		rate := 0
		if warm {
			rate = 1
		}
		s, err := e.startSim(name, k, rate)
		if err != nil {
			return 0, err
		}
		defer s.close()
		if warm {
			s.begin()
		}
		// EDDY_UP_PPROF=ADDR: the collector serves pprof there; its
		// heap and goroutine profiles are saved in the work directory.
		debug := os.Getenv("EDDY_UP_PPROF")
		// EDDY_UP_COLLECT_GOGC: the collector's GOGC (this process's own
		// was read at its start and stays).
		if g := os.Getenv("EDDY_UP_COLLECT_GOGC"); g != "" {
			old, had := os.LookupEnv("GOGC")
			os.Setenv("GOGC", g)
			defer func() {
				if had {
					os.Setenv("GOGC", old)
				} else {
					os.Unsetenv("GOGC")
				}
			}()
		}
		cs, ports, err := e.startCollectorsDebug(name, 1, urls, s, debug, fmt.Sprintf("park_after = %q\n", parkAfter))
		defer stopAll(cs)
		if err != nil {
			return 0, err
		}
		if warm {
			if err := sleepCtx(ctx, 20*time.Second); err != nil {
				return 0, err
			}
			s.halt()
		}
		if err := sleepCtx(ctx, 30*time.Second); err != nil {
			return 0, err
		}
		_, rss := usageOf(cs)
		if warm {
			// And after two of the runtime's forced collections (one at
			// least every 2 minutes), which shrink stacks and return
			// freed memory: what a fleet idle for minutes holds.
			first := rss
			if err := sleepCtx(ctx, 4*time.Minute); err != nil {
				return 0, err
			}
			_, rss = usageOf(cs)
			e.lg.Info("upstream: idle RSS", "devices", k, "after_30s_mib", mib(first), "after_4m30s_mib", mib(rss))
		}
		mem = goMem(ports[0], k)
		if debug != "" {
			for _, prof := range []string{"heap?gc=1", "goroutine?debug=1", "allocs"} {
				resp, err := http.Get("http://" + debug + "/debug/pprof/" + prof)
				if err != nil {
					return 0, err
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				file := filepath.Join(e.dir, fmt.Sprintf("%s-%s.pprof", name, strings.Split(prof, "?")[0]))
				if err := os.WriteFile(file, b, 0o644); err != nil {
					return 0, err
				}
				e.lg.Info("upstream: profile saved", "file", file)
			}
			mem += "; after a GC: " + goMem(ports[0], k)
		}
		return rss, nil
	}
	tag := "idle"
	if parkAfter == "0s" {
		tag = "idle-h3"
	}
	if warm {
		tag += "-warm"
	}
	small, err := rssFor(tag+"10", 10)
	if err != nil {
		return upResult{}, err
	}
	big, err := rssFor(tag+"1000", n)
	if err != nil {
		return upResult{}, err
	}
	what := "idle devices"
	if warm {
		what = "devices idle after 20s at 1 record/s"
	}
	return upResult{name: fmt.Sprintf("pull %d %s, 1 collector, park_after %s", n, what, parkAfter), records: 0, took: time.Second, rss: big,
		perDevice: (big - small) / int64(n-10), note: fmt.Sprintf("RSS per device: (RSS at %d - RSS at 10) / %d; at %d: %s", n, n-10, n, mem)}, nil
}

func (e env) pullCatchUp(ctx context.Context, conn *upstream.Conn, urls []string, n, rate int, away time.Duration) (upResult, error) {
	s, err := e.startSim("catchup", n, rate)
	if err != nil {
		return upResult{}, err
	}
	defer s.close()
	from, err := streamSeq(ctx, conn)
	if err != nil {
		return upResult{}, err
	}
	// The collector was away for away while the devices recorded: they
	// begin with that backlog (records stamped over the past away) and
	// go on recording live meanwhile.
	s.beginAt(time.Now().Add(-away))
	backlog := s.total()
	cs, _, err := e.startCollectors("catchup", 1, urls, s)
	defer stopAll(cs)
	if err != nil {
		return upResult{}, err
	}
	t0 := time.Now()
	var stored uint64
	err = waitFor(ctx, 10*time.Minute, "pull catch-up", func() bool {
		stored = storedSince(ctx, conn, from)
		return stored >= s.total()
	})
	took := time.Since(t0)
	cpu, rss := usageOf(cs)
	if err != nil {
		return upResult{}, err
	}
	live := float64(n * rate)
	return upResult{name: fmt.Sprintf("pull catch-up: %d devices x %d/s, collector away %s", n, rate, away), records: stored, took: took,
		cpu: cpu / time.Duration(max(stored, 1)), rss: rss,
		note: fmt.Sprintf("backlog %d records, live %.0f/s on top: catch-up **%.1fx live** (includes connecting)", backlog, live, float64(stored)/took.Seconds()/live)}, nil
}

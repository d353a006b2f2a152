package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// testCluster is a real 3-node JetStream cluster on loopback: each node
// with its own store dir, routes between them, sync_interval: always.
// Clients reach it through per-node proxies that a test can cut, and the
// nodes do not advertise their own client URLs, so clients never go
// around the proxies.
type testCluster struct {
	t       testing.TB
	name    string
	opts    []*natsserver.Options
	nodes   []*natsserver.Server
	proxies []*proxy
}

func freePort(t testing.TB) int {
	t.Helper()
	return freePorts(t, 1)[0]
}

// freePorts returns n distinct free loopback ports: all are held open
// until the last is picked, so no two are the same.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// clusterTest starts a test on an n-node cluster: skipped in -short mode
// (why says what it runs), and checked for leaked goroutines after
// everything it started is closed (the check is registered first, so it
// runs last).
func clusterTest(t *testing.T, n int, why string) *testCluster {
	t.Helper()
	t.Cleanup(func() { checkNoLeaks(t) })
	if testing.Short() {
		t.Skip(why)
	}
	return newTestCluster(t, n)
}

func newTestCluster(t testing.TB, n int) *testCluster {
	t.Helper()
	c := &testCluster{t: t, name: "eddytest"}
	// Every port is picked before any node or proxy listens, so that none
	// of them takes a port meant for a later node.
	ports := freePorts(t, 2*n)
	routes := ports[n:]
	for i := range n {
		o := &natsserver.Options{
			ServerName: fmt.Sprintf("n%d", i),
			Host:       "127.0.0.1",
			Port:       ports[i],
			NoLog:      true,
			NoSigs:     true,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			SyncAlways: true,
			Cluster: natsserver.ClusterOpts{
				Name:        c.name,
				Host:        "127.0.0.1",
				Port:        routes[i],
				NoAdvertise: true,
			},
			JetStreamMaxMemory: 64 << 20,
			JetStreamMaxStore:  1 << 30,
		}
		if n == 1 {
			o.Cluster = natsserver.ClusterOpts{} // one node: plain JetStream
		}
		for j, p := range routes {
			if j != i && n > 1 {
				o.Routes = append(o.Routes, natsserver.RoutesFromStr(fmt.Sprintf("nats://127.0.0.1:%d", p))...)
			}
		}
		c.opts = append(c.opts, o)
		c.nodes = append(c.nodes, nil)
		c.start(i)
	}
	for _, o := range c.opts {
		c.proxies = append(c.proxies, newProxy(t, fmt.Sprintf("127.0.0.1:%d", o.Port)))
	}
	t.Cleanup(c.shutdown)
	return c
}

func (c *testCluster) start(i int) {
	c.t.Helper()
	o := *c.opts[i]
	s, err := natsserver.NewServer(&o)
	if err != nil {
		c.t.Fatalf("node %d: %v", i, err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		c.t.Fatalf("node %d not ready", i)
	}
	c.nodes[i] = s
}

// stop shuts node i down (its store dir stays for a restart).
func (c *testCluster) stop(i int) {
	c.nodes[i].Shutdown()
	c.nodes[i].WaitForShutdown()
}

func (c *testCluster) shutdown() {
	for _, p := range c.proxies {
		p.close()
	}
	for i, s := range c.nodes {
		if s != nil && s.Running() {
			c.stop(i)
		}
	}
}

// urls are the proxies' client URLs.
func (c *testCluster) urls() []string {
	var u []string
	for _, p := range c.proxies {
		u = append(u, "nats://"+p.addr())
	}
	return u
}

// streamLeader returns the index of the node leading stream, or -1.
func (c *testCluster) streamLeader(stream string) int {
	for i, s := range c.nodes {
		if s != nil && s.Running() && s.JetStreamIsStreamLeader(natsserver.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return i
		}
	}
	return -1
}

// proxy forwards TCP connections to one node until cut.
type proxy struct {
	t      testing.TB
	ln     net.Listener
	target string
	mu     sync.Mutex // protects below
	conns  map[net.Conn]struct{}
	cut    bool
	hold   bool        // client->server bytes are held back, not forwarded
	held   []heldChunk // in arrival order
	wg     sync.WaitGroup
}

// heldChunk is client bytes held back for dst; close: the client had hung
// up after them, so dst is closed once they are written.
type heldChunk struct {
	dst   net.Conn
	b     []byte
	close bool
}

func newProxy(t testing.TB, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *proxy) serve(c net.Conn) {
	defer p.wg.Done()
	defer func() { p.mu.Lock(); delete(p.conns, c); p.mu.Unlock(); c.Close() }()
	up, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		return
	}
	p.mu.Lock()
	p.conns[up] = struct{}{}
	p.mu.Unlock()
	defer func() { p.mu.Lock(); delete(p.conns, up); p.mu.Unlock(); up.Close() }()
	done := make(chan struct{}, 2)
	go func() { p.pipeUp(c, up); done <- struct{}{} }()
	go func() { io.Copy(c, up); c.Close(); done <- struct{}{} }()
	<-done
	<-done
}

// pipeUp copies client bytes to the server, or holds them while p.hold.
func (p *proxy) pipeUp(src, dst net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		p.mu.Lock()
		if p.hold {
			p.held = append(p.held, heldChunk{dst: dst, b: append([]byte(nil), buf[:n]...), close: err != nil})
			p.mu.Unlock()
			if err != nil {
				return // dst stays open until release
			}
			continue
		}
		p.mu.Unlock()
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

// holdBack holds client->server bytes back (messages in flight in the
// network) until release delivers them, late.
func (p *proxy) holdBack() {
	p.mu.Lock()
	p.hold = true
	p.mu.Unlock()
}

func (p *proxy) release() {
	p.mu.Lock()
	chunks := p.held
	p.held, p.hold = nil, false
	p.mu.Unlock()
	for _, ch := range chunks {
		ch.dst.Write(ch.b)
		if ch.close {
			time.Sleep(100 * time.Millisecond) // let the server read them before the hang-up
			ch.dst.Close()
		}
	}
}

// setCut cuts every connection and refuses new ones, or lets them in again.
func (p *proxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
		}
	}
}

func (p *proxy) close() {
	p.ln.Close()
	p.setCut(true)
	p.wg.Wait()
}

// cutAll makes upstream unreachable (or reachable again).
func (c *testCluster) cutAll(cut bool) {
	for _, p := range c.proxies {
		p.setCut(cut)
	}
}

// eventually polls cond every 50ms until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func isTimeout(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || strings.Contains(fmt.Sprint(err), "timeout")
}

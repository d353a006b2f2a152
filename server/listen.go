package server

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"
)

// portAttempts bounds the retries when port 0 picks a TCP port whose UDP
// twin is taken.
const portAttempts = 20

// bindHost is one address to bind; optional ones (::1 for "localhost")
// are skipped on a host without IPv6.
type bindHost struct {
	host     string
	optional bool
}

// bindHosts expands the listen host: "" stays the dual-stack wildcard, and
// "localhost" becomes both loopbacks, because browsers try ::1 first.
func bindHosts(host string) []bindHost {
	if host == "localhost" {
		return []bindHost{{host: "127.0.0.1"}, {host: "::1", optional: true}}
	}
	return []bindHost{{host: host}}
}

// listen binds TCP (and UDP when udp is set) on every host of addr, all on
// one port.
func listen(addr string, udp bool) ([]net.Listener, []net.PacketConn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("server: listen address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, nil, fmt.Errorf("server: listen address %q: bad port", addr)
	}
	hosts := bindHosts(host)
	for attempt := 0; ; attempt++ {
		tcp, pcs, err := bindAll(hosts, port, udp)
		if err == nil {
			return tcp, pcs, nil
		}
		// With port 0 the kernel chose a TCP port whose UDP twin (or other
		// host's twin) is busy: pick again.
		if port != 0 || attempt == portAttempts-1 || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, err
		}
	}
}

func bindAll(hosts []bindHost, port int, udp bool) (tcp []net.Listener, pcs []net.PacketConn, err error) {
	defer func() {
		if err != nil {
			closeAll(tcp, pcs)
			tcp, pcs = nil, nil
		}
	}()
	for _, h := range hosts {
		ln, err := net.Listen("tcp", net.JoinHostPort(h.host, strconv.Itoa(port)))
		if err != nil {
			if h.optional && !errors.Is(err, syscall.EADDRINUSE) {
				continue
			}
			return tcp, pcs, fmt.Errorf("server: listen tcp: %w", err)
		}
		tcp = append(tcp, ln)
		port = ln.Addr().(*net.TCPAddr).Port // fixed by the first bind
		if !udp {
			continue
		}
		pc, err := net.ListenPacket("udp", net.JoinHostPort(h.host, strconv.Itoa(port)))
		if err != nil {
			return tcp, pcs, fmt.Errorf("server: listen udp: %w", err)
		}
		pcs = append(pcs, pc)
	}
	return tcp, pcs, nil
}

func closeAll(tcp []net.Listener, pcs []net.PacketConn) {
	for _, ln := range tcp {
		ln.Close()
	}
	for _, pc := range pcs {
		pc.Close()
	}
}

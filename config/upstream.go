package config

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// NATS says how to reach the JetStream cluster and which stream to use;
// [upstream] in eddy.toml and [nats] in collect.toml share it.
type NATS struct {
	Servers    []string `toml:"servers"`  // nats:// or tls:// URLs, cluster seeds
	Stream     string   `toml:"stream"`   // created if missing; default EDDY
	Replicas   int      `toml:"replicas"` // for a stream eddy creates; default 1 (3 on a cluster)
	CredsFile  string   `toml:"creds_file"`
	CAFile     string   `toml:"ca_file"`
	CertFile   string   `toml:"cert_file"`
	KeyFile    string   `toml:"key_file"`
	Username   string   `toml:"username"`
	Password   string   `toml:"password"`
	Window     int      `toml:"window"`      // messages per device not yet known stored; default 2000 (batches of up to half, at most 1000)
	AckTimeout Duration `toml:"ack_timeout"` // per publish unit; default 5s
}

// Upstream is [upstream] in eddy.toml: eddy run forwards its ring log
// into JetStream when servers are set.
type Upstream struct {
	NATS
	Device string `toml:"device"` // subject token [A-Za-z0-9_-]+; default: the hostname's first label
}

// Enabled reports whether push is configured.
func (u *Upstream) Enabled() bool { return len(u.Servers) > 0 }

func defaultNATS() NATS {
	return NATS{Stream: "EDDY", Replicas: 1, Window: 2000, AckTimeout: Duration{5 * time.Second}}
}

func defaultUpstream() Upstream { return Upstream{NATS: defaultNATS()} }

// DefaultDevice derives a device name from the hostname: its first label,
// with any byte outside [A-Za-z0-9_-] replaced by '-'.
func DefaultDevice() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "eddy"
	}
	h, _, _ = strings.Cut(h, ".")
	b := []byte(h)
	for i, c := range b {
		if !isTokenByte(c) {
			b[i] = '-'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

func isTokenByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// validToken checks a device name: 1 to 64 of [A-Za-z0-9_-].
func validToken(s string) error {
	if s == "" || len(s) > 64 {
		return fmt.Errorf("%q: want 1 to 64 characters of [A-Za-z0-9_-] (it becomes a subject token)", s)
	}
	for i := 0; i < len(s); i++ {
		if !isTokenByte(s[i]) {
			return fmt.Errorf("%q: %q is not allowed; want [A-Za-z0-9_-] (it becomes a subject token)", s, s[i])
		}
	}
	return nil
}

func (n *NATS) validate(table string, required bool) error {
	if len(n.Servers) == 0 {
		if required {
			return &Error{Key: table + ".servers", Msg: "must list at least one server (nats://host:4222)"}
		}
		return nil
	}
	for i, s := range n.Servers {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || !(u.Scheme == "nats" || u.Scheme == "tls" || u.Scheme == "ws" || u.Scheme == "wss") {
			return &Error{Key: fmt.Sprintf("%s.servers[%d]", table, i), Msg: fmt.Sprintf("%q: want nats://host:port (or tls://, ws://, wss://)", s)}
		}
		if u.Port() != "" {
			if _, _, err := splitHostPort(u.Host); err != nil {
				return &Error{Key: fmt.Sprintf("%s.servers[%d]", table, i), Msg: err.Error()}
			}
		}
	}
	if err := validStreamName(n.Stream); err != nil {
		return &Error{Key: table + ".stream", Msg: err.Error()}
	}
	if n.Replicas < 1 || n.Replicas > 5 {
		return &Error{Key: table + ".replicas", Msg: fmt.Sprintf("%d is out of range: from 1 to 5", n.Replicas)}
	}
	if (n.CertFile == "") != (n.KeyFile == "") {
		key := table + ".key_file"
		if n.CertFile == "" {
			key = table + ".cert_file"
		}
		return &Error{Key: key, Msg: "cert_file and key_file are set together or both left empty"}
	}
	if n.Password != "" && n.Username == "" {
		return &Error{Key: table + ".username", Msg: "a password needs a username"}
	}
	for key, f := range map[string]string{"creds_file": n.CredsFile, "ca_file": n.CAFile, "cert_file": n.CertFile, "key_file": n.KeyFile} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			return &Error{Key: table + "." + key, Msg: fmt.Sprintf("cannot read %s: %v", f, err)}
		}
	}
	if n.Window < 1 || n.Window > 65536 {
		return &Error{Key: table + ".window", Msg: fmt.Sprintf("%d is out of range: from 1 to 65536", n.Window)}
	}
	if n.AckTimeout.Duration < 100*time.Millisecond || n.AckTimeout.Duration > 5*time.Minute {
		return &Error{Key: table + ".ack_timeout", Msg: fmt.Sprintf("%s is out of range: from 100ms to 5m", n.AckTimeout)}
	}
	return nil
}

// validStreamName follows JetStream's rules for stream names.
func validStreamName(s string) error {
	if s == "" || len(s) > 255 {
		return fmt.Errorf("%q: want 1 to 255 characters", s)
	}
	if strings.ContainsAny(s, " \t\r\n.*>/\\") {
		return fmt.Errorf("%q: a stream name cannot hold whitespace, '.', '*', '>', '/' or '\\'", s)
	}
	return nil
}

func (c *Config) validateUpstream() error {
	u := &c.Upstream
	if !u.Enabled() {
		return nil
	}
	if err := u.validate("upstream", true); err != nil {
		return err
	}
	if u.Device == "" {
		u.Device = DefaultDevice()
	}
	if err := validToken(u.Device); err != nil {
		return &Error{Key: "upstream.device", Msg: err.Error()}
	}
	return nil
}

package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	toml "github.com/pelletier/go-toml/v2"
)

// DefaultPath is where eddy looks for its configuration when --config is not given.
const DefaultPath = "/etc/eddy/eddy.toml"

// MaxBytes32 is the largest storage.max_bytes accepted on 32-bit platforms.
// bbolt cannot map more than about 2 GB there (file growth fails near
// 1,989 MiB), and it maps in powers of two up to 1 GiB, then in 1 GiB
// steps: a file just over 1 GiB needs a 2 GiB mapping, which a 32-bit
// process (3 GiB of address space, fragmented) rarely gets. The ring log's
// file stays within a few percent of max_bytes, so 768 MiB keeps it under
// the 1 GiB mapping with room to spare.
const MaxBytes32 = Size(768 << 20)

// Config is the whole configuration of one eddy daemon.
type Config struct {
	Server  Server   `toml:"server"`
	Storage Storage  `toml:"storage"`
	TLS     TLS      `toml:"tls"`
	Auth    Auth     `toml:"auth"`
	Stream  Stream   `toml:"stream"`
	MQTT    []MQTT   `toml:"mqtt"`
	Sensors []Sensor `toml:"sensor"`
	// Upstream forwards the ring log into NATS JetStream (upstream.go).
	Upstream Upstream `toml:"upstream"`
}

// Server configures the HTTP/2 and HTTP/3 listeners.
type Server struct {
	Listen string `toml:"listen"` // TCP for HTTP/2 and HTTP/1.1, UDP for HTTP/3, same port
	HTTP3  bool   `toml:"http3"`
	// MaxStreamsPerHost caps concurrent streams from one client address.
	MaxStreamsPerHost int `toml:"max_streams_per_host"`
}

// Storage configures the ring log.
type Storage struct {
	Dir          string   `toml:"dir"` // ring log at <dir>/ring.db
	MaxBytes     Size     `toml:"max_bytes"`
	MaxAge       Duration `toml:"max_age"`
	SyncInterval Duration `toml:"sync_interval"`
}

// TLS names the device certificate and the CA for client certificates.
type TLS struct {
	Cert     string `toml:"cert"` // both empty: generated under <dir>/tls/
	Key      string `toml:"key"`
	ClientCA string `toml:"client_ca"`
}

// Auth lists the accepted bearer tokens.
type Auth struct {
	Tokens []string `toml:"tokens"`
}

// Stream configures every SSE stream.
type Stream struct {
	ClientBuffer int      `toml:"client_buffer"` // events queued per client before backpressure
	Heartbeat    Duration `toml:"heartbeat"`
	WriteTimeout Duration `toml:"write_timeout"` // a client that accepts no write for this long is dropped
}

// Default returns the embedded defaults: listen :8443 with HTTP/3, data in
// ./eddy-data (or $STATE_DIRECTORY under systemd), the system sensor every
// second, no MQTT.
func Default() *Config {
	dir := "./eddy-data"
	if sd := os.Getenv("STATE_DIRECTORY"); sd != "" {
		// systemd may pass several colon-separated paths; the first is ours.
		dir = strings.Split(sd, ":")[0]
	}
	return &Config{
		Server: Server{Listen: ":8443", HTTP3: true, MaxStreamsPerHost: 1000},
		Storage: Storage{
			Dir:          dir,
			MaxBytes:     256 << 20,
			MaxAge:       Duration{168 * time.Hour},
			SyncInterval: Duration{100 * time.Millisecond},
		},
		Stream: Stream{
			ClientBuffer: 1024,
			Heartbeat:    Duration{15 * time.Second},
			WriteTimeout: Duration{10 * time.Second},
		},
		Sensors:  []Sensor{defaultSystemSensor()},
		Upstream: defaultUpstream(),
	}
}

// Error is a configuration error tied to one key.
type Error struct {
	File string
	Line int    // 0 when the key is not in the file (a default or a missing key)
	Key  string // dotted path, with array-of-tables indexes: "mqtt[0].qos"
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("config: ")
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		fmt.Fprintf(&b, "%s: ", e.Key)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads the file at path over the embedded defaults and validates the
// result. A file that sets no [[sensor]] runs no sensors: only the
// file-less defaults include the system sensor.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and validates a configuration document; name is used in
// error messages.
func Parse(name string, data []byte) (*Config, error) {
	c := Default()
	c.Sensors = nil
	pos, perr := indexPositions(data)
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return nil, decodeError(name, err)
	}
	if perr != nil {
		return nil, &Error{File: name, Msg: perr.Error()}
	}
	if err := c.Validate(); err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			ce.File = name
			ce.Line = pos.line(ce.Key)
		}
		return nil, err
	}
	return c, nil
}

func decodeError(name string, err error) error {
	var se *toml.StrictMissingError
	if errors.As(err, &se) && len(se.Errors) > 0 {
		e := se.Errors[0]
		row, _ := e.Position()
		return &Error{File: name, Line: row, Key: strings.Join(e.Key(), "."), Msg: "unknown key"}
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, _ := de.Position()
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		return &Error{File: name, Line: row, Key: strings.Join(de.Key(), "."), Msg: msg}
	}
	return &Error{File: name, Msg: err.Error()}
}

// Validate checks every value; the first problem is returned as an *Error.
func (c *Config) Validate() error {
	checks := []func() error{c.validateServer, c.validateStorage, c.validateTLS, c.validateAuth, c.validateStream, c.validateUpstream}
	for _, f := range checks {
		if err := f(); err != nil {
			return err
		}
	}
	sessions := map[[2]string]bool{}
	for i := range c.MQTT {
		m := &c.MQTT[i]
		key := fmt.Sprintf("mqtt[%d]", i)
		if err := m.validate(key); err != nil {
			return err
		}
		// Two clients with one id on one broker take over each other's
		// session in turn and lose messages.
		if s := [2]string{m.Broker, m.ClientID}; sessions[s] {
			return &Error{Key: key + ".client_id", Msg: fmt.Sprintf("client id %q is used twice for broker %s", m.ClientID, m.Broker)}
		}
		sessions[[2]string{m.Broker, m.ClientID}] = true
	}
	names := map[string]bool{}
	for i := range c.Sensors {
		key := fmt.Sprintf("sensor[%d]", i)
		s := &c.Sensors[i]
		if err := s.validate(key); err != nil {
			return err
		}
		if names[s.Name] {
			return &Error{Key: key + ".name", Msg: fmt.Sprintf("sensor name %q is used twice; give each sensor a distinct name", s.Name)}
		}
		names[s.Name] = true
	}
	return nil
}

func (c *Config) validateServer() error {
	if c.Server.Listen == "" {
		return &Error{Key: "server.listen", Msg: "must not be empty (for example \":8443\")"}
	}
	if _, _, err := splitHostPort(c.Server.Listen); err != nil {
		return &Error{Key: "server.listen", Msg: err.Error()}
	}
	if c.Server.MaxStreamsPerHost < 1 {
		return &Error{Key: "server.max_streams_per_host", Msg: "must be at least 1"}
	}
	return nil
}

func (c *Config) validateStorage() error {
	s := c.Storage
	if s.Dir == "" {
		return &Error{Key: "storage.dir", Msg: "must not be empty"}
	}
	if s.MaxBytes < 1<<20 {
		return &Error{Key: "storage.max_bytes", Msg: fmt.Sprintf("%s is too small: at least 1MiB", s.MaxBytes)}
	}
	if is32bit() && s.MaxBytes > MaxBytes32 {
		return &Error{Key: "storage.max_bytes", Msg: fmt.Sprintf("%s is too large for a 32-bit %s system: bbolt cannot map more than about 2 GB there; at most %s", s.MaxBytes, runtime.GOARCH, MaxBytes32)}
	}
	if s.MaxAge.Duration <= 0 {
		return &Error{Key: "storage.max_age", Msg: "must be positive"}
	}
	if s.SyncInterval.Duration < time.Millisecond || s.SyncInterval.Duration > time.Minute {
		return &Error{Key: "storage.sync_interval", Msg: fmt.Sprintf("%s is out of range: from 1ms to 1m", s.SyncInterval)}
	}
	return nil
}

func (c *Config) validateTLS() error {
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		key := "tls.key"
		if c.TLS.Cert == "" {
			key = "tls.cert"
		}
		return &Error{Key: key, Msg: "tls.cert and tls.key are set together or both left empty"}
	}
	return nil
}

func (c *Config) validateAuth() error {
	for i, t := range c.Auth.Tokens {
		if len(t) < 16 {
			return &Error{Key: fmt.Sprintf("auth.tokens[%d]", i), Msg: "a token must be at least 16 characters"}
		}
		if strings.ContainsAny(t, " \t\r\n\"") {
			return &Error{Key: fmt.Sprintf("auth.tokens[%d]", i), Msg: "a token must not contain spaces or quotes"}
		}
	}
	return nil
}

func (c *Config) validateStream() error {
	s := c.Stream
	if s.ClientBuffer < 16 || s.ClientBuffer > 1<<20 {
		return &Error{Key: "stream.client_buffer", Msg: fmt.Sprintf("%d is out of range: from 16 to 1048576 events", s.ClientBuffer)}
	}
	if s.Heartbeat.Duration < 100*time.Millisecond {
		return &Error{Key: "stream.heartbeat", Msg: "must be at least 100ms"}
	}
	if s.WriteTimeout.Duration < 100*time.Millisecond {
		return &Error{Key: "stream.write_timeout", Msg: "must be at least 100ms"}
	}
	return nil
}

func is32bit() bool { return ^uint(0)>>32 == 0 }

package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
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
	// MemoryLimit is the process's memory budget: Go's soft memory limit,
	// and above 80% of it new connections and streams are refused (503).
	MemoryLimit Size `toml:"memory_limit"`
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
		Server: Server{Listen: ":8443", HTTP3: true, MaxStreamsPerHost: 1000, MemoryLimit: 128 << 20},
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

// maxDecodeErrors bounds how many values of a wrong type one Parse
// reports (each costs a decode of the document).
const maxDecodeErrors = 50

// Parse decodes and validates a configuration document; name is used in
// error messages. It reports every error it finds, as Errors: unknown
// keys, values of the wrong type and values out of bounds, each with its
// line and key. A document that is not TOML gets one error, where it
// stops parsing.
func Parse(name string, data []byte) (*Config, error) {
	var c *Config
	fresh := func() any {
		c = Default()
		c.Sensors = nil
		return c
	}
	if err := parseStrict(name, data, fresh, func() error { return c.Validate() }); err != nil {
		return nil, err
	}
	return c, nil
}

// parseStrict decodes data into the value fresh returns and validates it
// with validate, collecting every error as Errors: unknown keys, values
// of the wrong type (each set aside in turn so that decoding can go on,
// fresh is called again for each try) and validation errors, each with
// name, its line and its key. A document that is not TOML gets one error.
func parseStrict(name string, data []byte, fresh func() any, validate func() error) error {
	pos, exprs, perr := indexDocument(data)
	if perr != nil {
		if err := toml.Unmarshal(data, fresh()); err != nil {
			return Errors{decodeError(name, err)}
		}
		return Errors{{File: name, Msg: perr.Error()}}
	}
	var errs errList
	decoded := map[string]bool{} // keys with a decode error: their defaults stand, do not report them twice
	doc := data
	for tries := 0; ; tries++ {
		dec := toml.NewDecoder(bytes.NewReader(doc))
		dec.DisallowUnknownFields()
		err := dec.Decode(fresh())
		if err == nil {
			break
		}
		var se *toml.StrictMissingError
		if errors.As(err, &se) { // decoding went to the end
			for _, e := range se.Errors {
				row, _ := e.Position()
				key := keyAt(exprs, row, strings.Join(e.Key(), "."))
				errs = append(errs, &Error{File: name, Line: row, Key: key, Msg: "unknown key"})
				decoded[key] = true
			}
			break
		}
		e := decodeError(name, err)
		i := slices.IndexFunc(exprs, func(x expr) bool { return x.kv && x.line == e.Line })
		if i >= 0 {
			e.Key = exprs[i].key
		}
		errs = append(errs, e)
		decoded[e.Key] = true
		if i < 0 || tries >= maxDecodeErrors {
			// Not a key/value we can set aside: what follows cannot be read.
			sortByLine(Errors(errs))
			return errs.err()
		}
		// Set the bad value aside (blank its lines) and decode again, to
		// find the errors after it.
		end := 1 << 30
		if i+1 < len(exprs) {
			end = exprs[i+1].line
		}
		doc = blankLines(doc, e.Line, end)
	}
	if verr := validate(); verr != nil {
		var ve errList
		ve.addErr(verr)
		for _, e := range ve {
			if reportedUnder(decoded, e.Key) {
				continue
			}
			e.File = name
			e.Line = pos.line(e.Key)
			errs = append(errs, e)
		}
	}
	sortByLine(Errors(errs))
	return errs.err()
}

// keyAt is the resolved key of the key/value on line, or fallback.
func keyAt(exprs []expr, line int, fallback string) string {
	for _, x := range exprs {
		if x.line == line && x.kv {
			return x.key
		}
	}
	return fallback
}

// reportedUnder reports whether key or a table above it had a decode
// error already.
func reportedUnder(reported map[string]bool, key string) bool {
	for k := key; k != ""; {
		if reported[k] {
			return true
		}
		i := strings.LastIndexAny(k, ".[")
		if i < 0 {
			return false
		}
		k = k[:i]
	}
	return false
}

// blankLines returns a copy of doc with lines from (1-based, inclusive)
// to end (exclusive) turned into empty lines, so that line numbers stay.
func blankLines(doc []byte, from, end int) []byte {
	out := make([]byte, 0, len(doc))
	line := 1
	for _, b := range doc {
		if b == '\n' {
			line++
			out = append(out, b)
			continue
		}
		if line >= from && line < end {
			continue
		}
		out = append(out, b)
	}
	return out
}

func decodeError(name string, err error) *Error {
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, _ := de.Position()
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		return &Error{File: name, Line: row, Key: strings.Join(de.Key(), "."), Msg: msg}
	}
	return &Error{File: name, Msg: err.Error()}
}

// Validate checks every value and fills in the defaults of sensors and
// MQTT blocks. It returns every problem, as Errors.
func (c *Config) Validate() error {
	var errs errList
	for _, f := range []func() error{c.validateServer, c.validateStorage, c.validateTLS, c.validateAuth, c.validateStream, c.validateUpstream} {
		errs.addErr(f())
	}
	sessions := map[[2]string]bool{}
	for i := range c.MQTT {
		m := &c.MQTT[i]
		key := fmt.Sprintf("mqtt[%d]", i)
		errs.addErr(m.validate(key))
		// Two clients with one id on one broker take over each other's
		// session in turn and lose messages.
		if s := [2]string{m.Broker, m.ClientID}; sessions[s] {
			errs.add(key+".client_id", fmt.Sprintf("client id %q is used twice for broker %s", m.ClientID, m.Broker))
		}
		sessions[[2]string{m.Broker, m.ClientID}] = true
	}
	names := map[string]bool{}
	for i := range c.Sensors {
		key := fmt.Sprintf("sensor[%d]", i)
		s := &c.Sensors[i]
		errs.addErr(s.validate(key))
		if names[s.Name] {
			errs.add(key+".name", fmt.Sprintf("sensor name %q is used twice; give each sensor a distinct name", s.Name))
		}
		names[s.Name] = true
	}
	return errs.err()
}

func (c *Config) validateServer() error {
	var e errList
	if c.Server.Listen == "" {
		e.add("server.listen", "must not be empty (for example \":8443\")")
	} else if _, _, err := splitHostPort(c.Server.Listen); err != nil {
		e.add("server.listen", err.Error())
	}
	if c.Server.MaxStreamsPerHost < 1 {
		e.add("server.max_streams_per_host", "must be at least 1")
	}
	if c.Server.MemoryLimit < 32<<20 {
		e.add("server.memory_limit", fmt.Sprintf("%s is too small: at least 32MiB", c.Server.MemoryLimit))
	}
	return e.err()
}

func (c *Config) validateStorage() error {
	var e errList
	s := c.Storage
	if s.Dir == "" {
		e.add("storage.dir", "must not be empty")
	}
	if s.MaxBytes < 1<<20 {
		e.add("storage.max_bytes", fmt.Sprintf("%s is too small: at least 1MiB", s.MaxBytes))
	}
	if is32bit() && s.MaxBytes > MaxBytes32 {
		e.add("storage.max_bytes", fmt.Sprintf("%s is too large for a 32-bit %s system: bbolt cannot map more than about 2 GB there; at most %s", s.MaxBytes, runtime.GOARCH, MaxBytes32))
	}
	if s.MaxAge.Duration <= 0 {
		e.add("storage.max_age", "must be positive")
	}
	if s.SyncInterval.Duration < time.Millisecond || s.SyncInterval.Duration > time.Minute {
		e.add("storage.sync_interval", fmt.Sprintf("%s is out of range: from 1ms to 1m", s.SyncInterval))
	}
	return e.err()
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
	var e errList
	for i, t := range c.Auth.Tokens {
		if len(t) < 16 {
			e.add(fmt.Sprintf("auth.tokens[%d]", i), "a token must be at least 16 characters")
		} else if strings.ContainsAny(t, " \t\r\n\"") {
			e.add(fmt.Sprintf("auth.tokens[%d]", i), "a token must not contain spaces or quotes")
		}
	}
	return e.err()
}

func (c *Config) validateStream() error {
	var e errList
	s := c.Stream
	if s.ClientBuffer < 16 || s.ClientBuffer > 1<<20 {
		e.add("stream.client_buffer", fmt.Sprintf("%d is out of range: from 16 to 1048576 events", s.ClientBuffer))
	}
	if s.Heartbeat.Duration < 100*time.Millisecond {
		e.add("stream.heartbeat", "must be at least 100ms")
	}
	if s.WriteTimeout.Duration < 100*time.Millisecond {
		e.add("stream.write_timeout", "must be at least 100ms")
	}
	return e.err()
}

func is32bit() bool { return ^uint(0)>>32 == 0 }

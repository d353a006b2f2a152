package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	toml "github.com/pelletier/go-toml/v2"

	devtls "github.com/eddy-iot/eddy/tls"
)

// Collect is collect.toml, the configuration of eddy collect.
type Collect struct {
	Collector Collector       `toml:"collector"`
	NATS      NATS            `toml:"nats"`
	Devices   []CollectDevice `toml:"device"`
}

// Collector is the [collector] table.
type Collector struct {
	Listen      string   `toml:"listen"`       // plain HTTP: /metrics and /healthz
	ID          string   `toml:"id"`           // lease holder id; default hostname-pid
	LeaseBucket string   `toml:"lease_bucket"` // default eddy_leases
	LeaseTTL    Duration `toml:"lease_ttl"`    // default 6s
	Idle        Duration `toml:"idle"`         // a device stream silent this long is reconnected; default 45s
	ParkAfter   Duration `toml:"park_after"`   // a device with no record this long moves to HTTP/1.1; default 1m; 0s: never
}

// CollectDevice is one [[device]].
type CollectDevice struct {
	Name        string   `toml:"name"`
	URL         string   `toml:"url"`
	Token       string   `toml:"token"`
	TokenFile   string   `toml:"token_file"`
	CAFile      string   `toml:"ca_file"`
	Fingerprint string   `toml:"fingerprint"`
	Topics      []string `toml:"topics"`
}

// IsCollect reports whether a config document is a collect.toml: one
// with a [collector] table.
func IsCollect(data []byte) bool {
	pos, err := indexPositions(data)
	if err != nil {
		return false
	}
	_, ok := pos["collector"]
	return ok
}

// LoadCollect reads and validates a collect.toml.
func LoadCollect(path string) (*Collect, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return ParseCollect(path, data)
}

// CollectWindow is the default [nats] window of a collect.toml: 256
// records per device (batches of up to 128), about 0.5 MiB per device
// while it catches up, where push's 2000 would be about 4 MiB.
const CollectWindow = 256

// ParseCollect decodes and validates a collect.toml document; name is used
// in error messages. Unknown keys and bad values are errors naming the
// file, the line and the key.
func ParseCollect(name string, data []byte) (*Collect, error) {
	c := &Collect{
		Collector: Collector{Listen: "127.0.0.1:9464", LeaseBucket: "eddy_leases",
			LeaseTTL: Duration{6 * time.Second}, Idle: Duration{45 * time.Second},
			ParkAfter: Duration{time.Minute}},
		NATS: defaultNATS(),
	}
	// A collector holds a window per device: a smaller default bounds
	// its memory when thousands of devices catch up at once.
	c.NATS.Window = CollectWindow
	pos, perr := indexPositions(data)
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return nil, decodeError(name, err)
	}
	if perr != nil {
		return nil, &Error{File: name, Msg: perr.Error()}
	}
	if _, ok := pos["collector"]; !ok {
		return nil, &Error{File: name, Key: "collector", Msg: "missing: a collect.toml has a [collector] table"}
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

// Validate checks every value; the first problem is returned as an *Error.
func (c *Collect) Validate() error {
	col := &c.Collector
	if _, _, err := splitHostPort(col.Listen); err != nil {
		return &Error{Key: "collector.listen", Msg: err.Error()}
	}
	if col.ID == "" {
		col.ID = fmt.Sprintf("%s-%d", DefaultDevice(), os.Getpid())
	}
	if err := validKVKey(col.ID); err != nil {
		return &Error{Key: "collector.id", Msg: err.Error()}
	}
	if err := validToken(col.LeaseBucket); err != nil {
		return &Error{Key: "collector.lease_bucket", Msg: err.Error()}
	}
	if col.LeaseTTL.Duration < time.Second || col.LeaseTTL.Duration > 5*time.Minute {
		return &Error{Key: "collector.lease_ttl", Msg: fmt.Sprintf("%s is out of range: from 1s to 5m", col.LeaseTTL)}
	}
	if col.Idle.Duration < time.Second {
		return &Error{Key: "collector.idle", Msg: "must be at least 1s (and above the devices' stream.heartbeat)"}
	}
	if p := col.ParkAfter.Duration; p != 0 && (p < time.Second || p > 24*time.Hour) {
		return &Error{Key: "collector.park_after", Msg: fmt.Sprintf("%s is out of range: 0s (never) or from 1s to 24h", col.ParkAfter)}
	}
	if err := c.NATS.validate("nats", true); err != nil {
		return err
	}
	names := map[string]bool{}
	for i := range c.Devices {
		d := &c.Devices[i]
		key := fmt.Sprintf("device[%d]", i)
		if err := d.validate(key); err != nil {
			return err
		}
		if names[d.Name] {
			return &Error{Key: key + ".name", Msg: fmt.Sprintf("device %q is listed twice", d.Name)}
		}
		names[d.Name] = true
	}
	return nil
}

func validKVKey(s string) error {
	if s == "" || len(s) > 128 {
		return fmt.Errorf("%q: want 1 to 128 characters of [A-Za-z0-9_=-]", s)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isTokenByte(c) && c != '=' {
			return fmt.Errorf("%q: %q is not allowed; want [A-Za-z0-9_=-]", s, c)
		}
	}
	return nil
}

func (d *CollectDevice) validate(key string) error {
	if err := validToken(d.Name); err != nil {
		return &Error{Key: key + ".name", Msg: err.Error()}
	}
	u, err := url.Parse(d.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return &Error{Key: key + ".url", Msg: fmt.Sprintf("%q: want https://host:port", d.URL)}
	}
	if d.Token != "" && d.TokenFile != "" {
		return &Error{Key: key + ".token_file", Msg: "set token or token_file, not both"}
	}
	if d.TokenFile != "" {
		b, err := os.ReadFile(d.TokenFile)
		if err != nil {
			return &Error{Key: key + ".token_file", Msg: fmt.Sprintf("cannot read it: %v", err)}
		}
		d.Token = strings.TrimSpace(string(b))
		if d.Token == "" {
			return &Error{Key: key + ".token_file", Msg: d.TokenFile + " is empty"}
		}
	}
	if strings.ContainsAny(d.Token, " \t\r\n\"") {
		return &Error{Key: key + ".token", Msg: "a token must not contain spaces or quotes"}
	}
	if d.CAFile == "" && d.Fingerprint == "" {
		return &Error{Key: key + ".fingerprint", Msg: "set ca_file or fingerprint (`eddy cert` on the device prints both); a collector does not trust devices blindly"}
	}
	if d.Fingerprint != "" {
		if _, err := devtls.ParseFingerprint(d.Fingerprint); err != nil {
			return &Error{Key: key + ".fingerprint", Msg: err.Error()}
		}
	}
	if d.CAFile != "" {
		if _, err := devtls.ClientConfig(devtls.ClientOptions{CAFile: d.CAFile}); err != nil {
			return &Error{Key: key + ".ca_file", Msg: err.Error()}
		}
	}
	if len(d.Topics) == 0 {
		d.Topics = []string{"#"}
	}
	for j, t := range d.Topics {
		if t == "" || strings.ContainsAny(t, "\x00") {
			return &Error{Key: fmt.Sprintf("%s.topics[%d]", key, j), Msg: fmt.Sprintf("%q is not a topic filter", t)}
		}
	}
	return nil
}

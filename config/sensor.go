package config

import (
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// Sensor is one [[sensor]] block. Readings are published as
// <name>/<quantity>. Keys that belong to another kind are refused.
type Sensor struct {
	Kind     string   `toml:"kind"` // system, thermal, bme280, bmp280, ds18b20, ads1115, gpio
	Name     string   `toml:"name"` // topic prefix; defaults to the kind
	Interval Duration `toml:"interval"`

	// bme280, bmp280, ads1115: the I2C bus by name or number ("1",
	// "/dev/i2c-1"; empty: the first bus) and the device address
	// (0: 0x76 for bme280/bmp280, 0x48 for ads1115).
	Bus     string `toml:"bus"`
	Address int    `toml:"address"`

	// ads1115: the inputs to read.
	Channels []ADCChannel `toml:"channel"`

	// ds18b20: the w1 sysfs devices directory (default /sys/bus/w1/devices).
	W1Root string `toml:"w1_root"`

	// thermal and system: the sysfs root (default /sys).
	SysRoot string `toml:"sys_root"`
	// system: the proc root (default /proc) and the path whose file system
	// usage is reported (empty: the data directory).
	ProcRoot string `toml:"proc_root"`
	DiskPath string `toml:"disk_path"`

	// gpio: the input pins.
	Pins []GPIOPin `toml:"pin"`
}

// ADCChannel is one [[sensor.channel]] of an ads1115: a single-ended input
// read at a programmable gain and scaled linearly to engineering units:
// value = volts*scale + offset.
type ADCChannel struct {
	Input  int     `toml:"input"`  // 0 to 3
	Gain   float64 `toml:"gain"`   // PGA gain: 2/3 (±6.144 V), 1 (±4.096 V, default), 2, 4, 8, 16 (±0.256 V)
	Scale  float64 `toml:"scale"`  // 0 or unset: 1
	Offset float64 `toml:"offset"` // added after scaling
	Unit   string  `toml:"unit"`   // default "V"
	Name   string  `toml:"name"`   // quantity; default "ch<input>"
}

// GPIOPin is one [[sensor.pin]] of a gpio sensor: its level (0/1) and,
// unless edge is "none", the count of edges seen since start.
type GPIOPin struct {
	Pin  string `toml:"pin"`  // periph name: "GPIO17", "P1_11", "17"
	Name string `toml:"name"` // quantity prefix; default the pin name
	Pull string `toml:"pull"` // "up", "down", "none" or "" (leave as is)
	Edge string `toml:"edge"` // "both" (default), "rising", "falling", "none"
}

// Default locations of the sysfs trees sensors read.
const (
	DefaultW1Root   = "/sys/bus/w1/devices"
	DefaultSysRoot  = "/sys"
	DefaultProcRoot = "/proc"
)

func defaultSystemSensor() Sensor {
	return Sensor{Kind: "system", Name: "system", Interval: Duration{time.Second},
		SysRoot: DefaultSysRoot, ProcRoot: DefaultProcRoot}
}

// validate checks the block and fills in defaults; key is "sensor[i]".
func (s *Sensor) validate(key string) error {
	var e errList
	if err := s.validateKind(key); err != nil {
		return err // the other checks depend on the kind
	}
	e.addErr(s.validateCommon(key))
	e.addErr(s.refuseForeignKeys(key))
	switch s.Kind {
	case "system":
		s.SysRoot = orDefault(s.SysRoot, DefaultSysRoot)
		s.ProcRoot = orDefault(s.ProcRoot, DefaultProcRoot)
	case "thermal":
		s.SysRoot = orDefault(s.SysRoot, DefaultSysRoot)
	case "ds18b20":
		s.W1Root = orDefault(s.W1Root, DefaultW1Root)
	case "bme280", "bmp280":
		e.addErr(s.validateAddress(key, 0x76, 0x76, 0x77))
	case "ads1115":
		e.addErr(s.validateAddress(key, 0x48, 0x48, 0x4B))
		e.addErr(s.validateChannels(key))
	case "gpio":
		e.addErr(s.validatePins(key))
	}
	return e.err()
}

func (s *Sensor) validateKind(key string) error {
	switch s.Kind {
	case "system", "thermal", "bme280", "bmp280", "ds18b20", "ads1115", "gpio":
		return nil
	case "":
		return &Error{Key: key + ".kind", Msg: "is required"}
	}
	return &Error{Key: key + ".kind", Msg: fmt.Sprintf("unknown sensor kind %q (want system, thermal, bme280, bmp280, ds18b20, ads1115 or gpio)", s.Kind)}
}

func (s *Sensor) validateCommon(key string) error {
	var e errList
	if s.Name == "" {
		s.Name = s.Kind
	}
	if err := checkQuantity(s.Name); err != nil {
		e.add(key+".name", err.Error())
	}
	if s.Interval.Duration == 0 {
		s.Interval.Duration = time.Second
	}
	if s.Interval.Duration < 10*time.Millisecond || s.Interval.Duration > 24*time.Hour {
		e.add(key+".interval", fmt.Sprintf("%s is out of range: from 10ms to 24h", s.Interval))
	}
	return e.err()
}

// refuseForeignKeys rejects kind-specific keys set on another kind: a
// "channel" on a bme280 is a mistake the user wants to hear about.
func (s *Sensor) refuseForeignKeys(key string) error {
	set := []struct {
		name  string
		isSet bool
		kinds string
	}{
		{"bus", s.Bus != "", "bme280 bmp280 ads1115"},
		{"address", s.Address != 0, "bme280 bmp280 ads1115"},
		{"channel", len(s.Channels) > 0, "ads1115"},
		{"w1_root", s.W1Root != "", "ds18b20"},
		{"sys_root", s.SysRoot != "", "system thermal"},
		{"proc_root", s.ProcRoot != "", "system"},
		{"disk_path", s.DiskPath != "", "system"},
		{"pin", len(s.Pins) > 0, "gpio"},
	}
	var e errList
	for _, f := range set {
		if f.isSet && !strings.Contains(" "+f.kinds+" ", " "+s.Kind+" ") {
			e.add(key+"."+f.name, fmt.Sprintf("does not apply to kind %q (only to %s)", s.Kind, strings.ReplaceAll(f.kinds, " ", ", ")))
		}
	}
	return e.err()
}

func (s *Sensor) validateAddress(key string, def, lo, hi int) error {
	if s.Address == 0 {
		s.Address = def
	}
	if s.Address < lo || s.Address > hi {
		return &Error{Key: key + ".address", Msg: fmt.Sprintf("%#x is not a %s address (%#x to %#x)", s.Address, s.Kind, lo, hi)}
	}
	return nil
}

func (s *Sensor) validateChannels(key string) error {
	if len(s.Channels) == 0 {
		return &Error{Key: key + ".channel", Msg: "an ads1115 needs at least one [[sensor.channel]]"}
	}
	var e errList
	names := map[string]bool{}
	for i := range s.Channels {
		ck := fmt.Sprintf("%s.channel[%d]", key, i)
		c := &s.Channels[i]
		e.addErr(c.validate(ck))
		if names[c.Name] {
			e.add(ck+".name", fmt.Sprintf("channel name %q is used twice", c.Name))
		}
		names[c.Name] = true
	}
	return e.err()
}

// ADCGains are the ads1115 programmable gains and their full-scale ranges
// in volts.
var adcGains = []struct{ gain, fullScale float64 }{
	{2.0 / 3, 6.144}, {1, 4.096}, {2, 2.048}, {4, 1.024}, {8, 0.512}, {16, 0.256},
}

// FullScale returns the input range in volts (±) for the channel's gain.
func (c *ADCChannel) FullScale() float64 {
	for _, g := range adcGains {
		if math.Abs(c.Gain-g.gain) < 0.01 {
			return g.fullScale
		}
	}
	return 0
}

func (c *ADCChannel) validate(key string) error {
	var e errList
	if c.Input < 0 || c.Input > 3 {
		e.add(key+".input", fmt.Sprintf("%d is not an input from 0 to 3", c.Input))
	}
	if c.Gain == 0 {
		c.Gain = 1
	}
	if c.FullScale() == 0 {
		e.add(key+".gain", fmt.Sprintf("%g is not an ads1115 gain: 0.6667 (2/3), 1, 2, 4, 8 or 16", c.Gain))
	}
	if c.Scale == 0 {
		c.Scale = 1
	}
	if !finite(c.Scale) || !finite(c.Offset) {
		e.add(key+".scale", "scale and offset must be finite numbers")
	}
	if c.Unit == "" {
		c.Unit = "V"
	}
	if len(c.Unit) > 64 {
		e.add(key+".unit", "is longer than 64 bytes")
	}
	if c.Name == "" {
		c.Name = fmt.Sprintf("ch%d", c.Input)
	}
	if err := checkQuantity(c.Name); err != nil {
		e.add(key+".name", err.Error())
	}
	return e.err()
}

func (s *Sensor) validatePins(key string) error {
	if len(s.Pins) == 0 {
		return &Error{Key: key + ".pin", Msg: "a gpio sensor needs at least one [[sensor.pin]]"}
	}
	var e errList
	names := map[string]bool{}
	for i := range s.Pins {
		pk := fmt.Sprintf("%s.pin[%d]", key, i)
		p := &s.Pins[i]
		e.addErr(p.validate(pk))
		if names[p.Name] {
			e.add(pk+".name", fmt.Sprintf("pin name %q is used twice", p.Name))
		}
		names[p.Name] = true
	}
	return e.err()
}

func (p *GPIOPin) validate(key string) error {
	var e errList
	if p.Pin == "" {
		e.add(key+".pin", "is required (for example \"GPIO17\")")
	}
	if p.Name == "" {
		p.Name = p.Pin
	}
	if err := checkQuantity(p.Name); err != nil && p.Pin != "" {
		e.add(key+".name", err.Error())
	}
	switch p.Pull {
	case "", "up", "down", "none":
	default:
		e.add(key+".pull", fmt.Sprintf("%q is not up, down or none", p.Pull))
	}
	switch p.Edge {
	case "":
		p.Edge = "both"
	case "both", "rising", "falling", "none":
	default:
		e.add(key+".edge", fmt.Sprintf("%q is not both, rising, falling or none", p.Edge))
	}
	return e.err()
}

// checkQuantity accepts a topic level (or levels) usable in <name>/<quantity>.
func checkQuantity(s string) error {
	if s == "" || len(s) > 128 || !utf8.ValidString(s) {
		return fmt.Errorf("%q must be 1 to 128 bytes of UTF-8", s)
	}
	if strings.ContainsAny(s, "+#\x00") || strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/") || strings.Contains(s, "//") {
		return fmt.Errorf("%q is not a topic name: no '+', '#', empty levels or NUL", s)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%q contains a control character", s)
		}
	}
	return nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

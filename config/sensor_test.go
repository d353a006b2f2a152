package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSensorDefaults(t *testing.T) {
	doc := `
[[sensor]]
kind = "system"

[[sensor]]
kind = "bme280"
name = "room"
interval = "5s"

[[sensor]]
kind = "ads1115"
bus = "1"
address = 0x49
  [[sensor.channel]]
  input = 0
  gain = 1
  scale = 2.5
  offset = -1.25
  unit = "bar"
  name = "pressure"
  [[sensor.channel]]
  input = 3
  gain = 0.6667

[[sensor]]
kind = "gpio"
  [[sensor.pin]]
  pin = "GPIO17"
  name = "door"
  pull = "up"
  [[sensor.pin]]
  pin = "GPIO27"
  edge = "none"

[[sensor]]
kind = "ds18b20"

[[sensor]]
kind = "thermal"
`
	c, err := Parse("eddy.toml", []byte(doc))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if len(c.Sensors) != 6 {
		t.Fatalf("got %d sensors, want 6", len(c.Sensors))
	}
	sys, bme, ads, gp, ds, th := c.Sensors[0], c.Sensors[1], c.Sensors[2], c.Sensors[3], c.Sensors[4], c.Sensors[5]
	if sys.Name != "system" || sys.Interval.Duration != time.Second || sys.ProcRoot != "/proc" || sys.SysRoot != "/sys" || sys.DiskPath != "" {
		t.Errorf("system defaults: %+v", sys)
	}
	if bme.Name != "room" || bme.Interval.Duration != 5*time.Second || bme.Address != 0x76 || bme.Bus != "" {
		t.Errorf("bme280: %+v", bme)
	}
	if ads.Address != 0x49 || ads.Bus != "1" || len(ads.Channels) != 2 {
		t.Fatalf("ads1115: %+v", ads)
	}
	want0 := ADCChannel{Input: 0, Gain: 1, Scale: 2.5, Offset: -1.25, Unit: "bar", Name: "pressure"}
	if ads.Channels[0] != want0 {
		t.Errorf("channel 0 = %+v, want %+v", ads.Channels[0], want0)
	}
	ch1 := ads.Channels[1]
	if ch1.Name != "ch3" || ch1.Unit != "V" || ch1.Scale != 1 || ch1.FullScale() != 6.144 {
		t.Errorf("channel 1 defaults: %+v (full scale %g)", ch1, ch1.FullScale())
	}
	if gp.Pins[0] != (GPIOPin{Pin: "GPIO17", Name: "door", Pull: "up", Edge: "both"}) {
		t.Errorf("pin 0: %+v", gp.Pins[0])
	}
	if gp.Pins[1] != (GPIOPin{Pin: "GPIO27", Name: "GPIO27", Edge: "none"}) {
		t.Errorf("pin 1: %+v", gp.Pins[1])
	}
	if ds.W1Root != DefaultW1Root || th.SysRoot != DefaultSysRoot {
		t.Errorf("sysfs roots: ds18b20 %q thermal %q", ds.W1Root, th.SysRoot)
	}
}

func TestDefaultSystemSensorValid(t *testing.T) {
	s := defaultSystemSensor()
	if err := s.validate("sensor[0]"); err != nil {
		t.Fatalf("the embedded default sensor does not validate: %v", err)
	}
}

func TestSensorErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		key  string
		line int
		msg  string
	}{
		{"no kind", "[[sensor]]\nname = \"x\"\n", "sensor[0].kind", 1, "required"},
		{"unknown kind", "[[sensor]]\nkind = \"sht31\"\n", "sensor[0].kind", 2, "unknown sensor kind"},
		{"interval too short", "[[sensor]]\nkind = \"system\"\ninterval = \"1ms\"\n", "sensor[0].interval", 3, "out of range"},
		{"name wildcard", "[[sensor]]\nkind = \"system\"\nname = \"a/+\"\n", "sensor[0].name", 3, "not a topic name"},
		{"duplicate name", "[[sensor]]\nkind = \"system\"\n[[sensor]]\nkind = \"thermal\"\nname = \"system\"\n", "sensor[1].name", 5, "used twice"},
		{"bme address", "[[sensor]]\nkind = \"bme280\"\naddress = 0x48\n", "sensor[0].address", 3, "not a bme280 address"},
		{"ads address", "[[sensor]]\nkind = \"ads1115\"\naddress = 0x76\n[[sensor.channel]]\ninput = 0\n", "sensor[0].address", 3, "not a ads1115 address"},
		{"foreign key", "[[sensor]]\nkind = \"bme280\"\nproc_root = \"/tmp\"\n", "sensor[0].proc_root", 3, "does not apply"},
		{"foreign channel", "[[sensor]]\nkind = \"thermal\"\n[[sensor.channel]]\ninput = 1\n", "sensor[0].channel", 1, "does not apply"},
		{"ads no channel", "[[sensor]]\nkind = \"ads1115\"\n", "sensor[0].channel", 1, "at least one"},
		{"gpio no pin", "[[sensor]]\nkind = \"gpio\"\n", "sensor[0].pin", 1, "at least one"},
		{"unknown key", "[[sensor]]\nkind = \"system\"\nfrobnicate = 1\n", "sensor[0].frobnicate", 3, "unknown"},
		{"bus as number", "[[sensor]]\nkind = \"bme280\"\nbus = 1\n", "sensor[0].bus", 3, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkConfigError(t, tt.doc, tt.key, tt.line, tt.msg)
		})
	}
}

// Errors inside [[sensor.channel]] and [[sensor.pin]] name the nested key;
// their line is at least that of the owning [[sensor]] (see position.go).
func TestSensorNestedErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		key  string
		msg  string
	}{
		{"channel input", "[[sensor]]\nkind = \"ads1115\"\n[[sensor.channel]]\ninput = 4\n", "sensor[0].channel[0].input", "not an input"},
		{"channel gain", "[[sensor]]\nkind = \"ads1115\"\n[[sensor.channel]]\ninput = 0\ngain = 3\n", "sensor[0].channel[0].gain", "not an ads1115 gain"},
		{"channel nan", "[[sensor]]\nkind = \"ads1115\"\n[[sensor.channel]]\ninput = 0\nscale = nan\n", "sensor[0].channel[0].scale", "finite"},
		{"channel dup", "[[sensor]]\nkind = \"ads1115\"\n[[sensor.channel]]\ninput = 0\n[[sensor.channel]]\ninput = 0\n", "sensor[0].channel[1].name", "used twice"},
		{"pin missing", "[[sensor]]\nkind = \"gpio\"\n[[sensor.pin]]\nname = \"door\"\n", "sensor[0].pin[0].pin", "required"},
		{"pin pull", "[[sensor]]\nkind = \"gpio\"\n[[sensor.pin]]\npin = \"GPIO4\"\npull = \"sideways\"\n", "sensor[0].pin[0].pull", "not up, down or none"},
		{"pin edge", "[[sensor]]\nkind = \"gpio\"\n[[sensor.pin]]\npin = \"GPIO4\"\nedge = \"up\"\n", "sensor[0].pin[0].edge", "not both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ce := checkConfigError(t, tt.doc, tt.key, -1, tt.msg)
			if ce != nil && ce.Line < 1 {
				t.Errorf("line = %d, want at least the [[sensor]] line", ce.Line)
			}
		})
	}
}

// checkConfigError parses doc and checks the *Error's key, line (unless
// line < 0) and message.
func checkConfigError(t *testing.T, doc, key string, line int, msg string) *Error {
	t.Helper()
	_, err := Parse("eddy.toml", []byte(doc))
	if err == nil {
		t.Fatalf("Parse accepted:\n%s", doc)
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *config.Error", err, err)
	}
	if ce.Key != key {
		t.Errorf("key = %q, want %q (%v)", ce.Key, key, err)
	}
	if line >= 0 && ce.Line != line {
		t.Errorf("line = %d, want %d (%v)", ce.Line, line, err)
	}
	if !strings.Contains(ce.Msg, msg) {
		t.Errorf("message %q does not contain %q", ce.Msg, msg)
	}
	if ce.File != "eddy.toml" {
		t.Errorf("file = %q", ce.File)
	}
	return ce
}

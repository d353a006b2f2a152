package sensors

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/eddy-iot/eddy/config"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2ctest"
)

// BME280 traffic recorded from a real device at 0x76, as published in
// periph.io/x/devices/v3@v3.7.4 bmxx80/bmx280_test.go
// (TestI2CSenseBME280_success), with the driver's DefaultOpts (4x
// oversampling). Expected: 23.72 °C, 1009.42695 hPa, 65.3056 %RH.
var (
	bme280Probe = []i2ctest.IO{
		{Addr: 0x76, W: []byte{0xd0}, R: []byte{0x60}}, // chip id: BME280
		{Addr: 0x76, W: []byte{0x88}, R: []byte{0x10, 0x6e, 0x6c, 0x66, 0x32, 0x0, 0x5d, 0x95, 0xb8, 0xd5, 0xd0, 0xb, 0x77, 0x1e, 0x9d, 0xff, 0xf9, 0xff, 0xac, 0x26, 0xa, 0xd8, 0xbd, 0x10, 0x0, 0x4b}},
		{Addr: 0x76, W: []byte{0xe1}, R: []byte{0x6e, 0x1, 0x0, 0x13, 0x5, 0x0, 0x1e}}, // humidity calibration
		{Addr: 0x76, W: []byte{0xf4, 0x6c, 0xf2, 0x3, 0xf5, 0xa0, 0xf4, 0x6c}},         // ctrl_meas, ctrl_hum, config
	}
	bme280Sense = []i2ctest.IO{
		{Addr: 0x76, W: []byte{0xf4, 0x6d}},            // forced mode
		{Addr: 0x76, W: []byte{0xf3}, R: []byte{0x08}}, // status: measuring
		{Addr: 0x76, W: []byte{0xf3}, R: []byte{0x00}}, // status: idle
		{Addr: 0x76, W: []byte{0xf7}, R: []byte{0x4a, 0x52, 0xc0, 0x80, 0x96, 0xc0, 0x7a, 0x76}},
	}
	// The same recording for a BMP280 (chip id 0x58, no humidity).
	bmp280Probe = []i2ctest.IO{
		{Addr: 0x76, W: []byte{0xd0}, R: []byte{0x58}},
		bme280Probe[1],
		{Addr: 0x76, W: []byte{0xf4, 0x6c, 0xf5, 0xa0, 0xf4, 0x6c}},
	}
	bmp280Sense = []i2ctest.IO{
		bme280Sense[0], bme280Sense[1], bme280Sense[2],
		{Addr: 0x76, W: []byte{0xf7}, R: []byte{0x4a, 0x52, 0xc0, 0x80, 0x96, 0xc0}},
	}
)

func ops(parts ...[]i2ctest.IO) []i2ctest.IO {
	var all []i2ctest.IO
	for _, p := range parts {
		all = append(all, p...)
	}
	return all
}

// busOpener hands out the given buses in turn, one per open, and records
// how often it was asked. An exhausted opener reports no bus.
type busOpener struct {
	mu     sync.Mutex
	buses  []*i2ctest.Playback
	opened int
}

func (o *busOpener) open(name string) (i2c.BusCloser, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.opened++
	if len(o.buses) == 0 {
		return nil, errors.New("no such bus")
	}
	b := o.buses[0]
	o.buses = o.buses[1:]
	return b, nil
}

func near(got, want, tol float64) bool { return math.Abs(got-want) <= tol }

func TestBME280(t *testing.T) {
	bus := &i2ctest.Playback{Ops: ops(bme280Probe, bme280Sense, bme280Sense)}
	o := &busOpener{buses: []*i2ctest.Playback{bus}}
	env := testEnv()
	env.OpenI2C = o.open
	s, err := New(config.Sensor{Kind: "bme280", Bus: "1", Address: 0x76}, env)
	if err != nil {
		t.Fatal(err)
	}
	if o.opened != 0 {
		t.Error("New opened the bus: devices are opened on the first Read")
	}
	for i := range 2 {
		rs, err := s.Read(context.Background())
		if err != nil {
			t.Fatalf("Read %d: %v", i, err)
		}
		m := byQuantity(rs)
		formatReadings(t, rs) // checks the timestamps
		if r := m["temperature"]; !near(r.Value, 23.72, 0.01) || r.Unit != "°C" {
			t.Errorf("temperature = %+v, want 23.72 °C", r)
		}
		if r := m["pressure"]; !near(r.Value, 1009.42695, 0.001) || r.Unit != "hPa" {
			t.Errorf("pressure = %+v, want 1009.427 hPa", r)
		}
		if r := m["humidity"]; !near(r.Value, 65.3056, 0.01) || r.Unit != "%RH" {
			t.Errorf("humidity = %+v, want 65.31 %%RH", r)
		}
	}
	// Close closes the Playback, which fails unless every recorded
	// transaction was played.
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if o.opened != 1 {
		t.Errorf("bus opened %d times, want 1", o.opened)
	}
}

func TestBMP280(t *testing.T) {
	bus := &i2ctest.Playback{Ops: ops(bmp280Probe, bmp280Sense)}
	env := testEnv()
	env.OpenI2C = (&busOpener{buses: []*i2ctest.Playback{bus}}).open
	s, err := New(config.Sensor{Kind: "bmp280"}, env)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := s.Read(context.Background())
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	m := byQuantity(rs)
	if len(rs) != 2 || !near(m["temperature"].Value, 23.72, 0.01) || !near(m["pressure"].Value, 1009.42695, 0.001) {
		t.Errorf("readings = %+v, want temperature and pressure only", rs)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// A configured bme280 that turns out to be a BMP280 still reports
// temperature and pressure, and says why humidity is missing.
func TestBME280IsBMP280(t *testing.T) {
	bus := &i2ctest.Playback{Ops: ops(bmp280Probe, bmp280Sense)}
	env := testEnv()
	env.OpenI2C = (&busOpener{buses: []*i2ctest.Playback{bus}}).open
	s, _ := New(config.Sensor{Kind: "bme280"}, env)
	defer s.Close()
	rs, err := s.Read(context.Background())
	if err == nil || len(rs) != 2 {
		t.Errorf("Read = %v, %v; want 2 readings and an error about humidity", rs, err)
	}
}

// No chip answering, then a chip that fails mid-way, then a working one:
// each Read probes afresh and the last one reports values.
func TestBMxx80MissingThenPresent(t *testing.T) {
	silent := &i2ctest.Playback{DontPanic: true} // every transaction fails: no chip
	failing := &i2ctest.Playback{Ops: bme280Probe, DontPanic: true}
	good := &i2ctest.Playback{Ops: ops(bme280Probe, bme280Sense), DontPanic: true}
	o := &busOpener{buses: []*i2ctest.Playback{silent, failing, good}}
	env := testEnv()
	env.OpenI2C = o.open
	s, _ := New(config.Sensor{Kind: "bme280", Address: 0x76}, env)
	defer s.Close()

	if _, err := s.Read(context.Background()); !errors.Is(err, ErrNoDevice) {
		t.Errorf("no chip: error = %v, want ErrNoDevice", err)
	}
	if _, err := s.Read(context.Background()); err == nil || errors.Is(err, ErrNoDevice) {
		t.Errorf("failed measurement: error = %v, want an I/O error", err)
	}
	rs, err := s.Read(context.Background())
	if err != nil || !near(byQuantity(rs)["temperature"].Value, 23.72, 0.01) {
		t.Errorf("after reconnect: %v, %v", rs, err)
	}
	// good's recording is used up: the next Read fails and closes it, and
	// then the opener has no bus left.
	if _, err := s.Read(context.Background()); err == nil || errors.Is(err, ErrNoDevice) {
		t.Errorf("recording used up: error = %v, want an I/O error", err)
	}
	if _, err := s.Read(context.Background()); !errors.Is(err, ErrNoDevice) {
		t.Errorf("bus gone: error = %v, want ErrNoDevice", err)
	}
	if o.opened != 4 {
		t.Errorf("bus opened %d times, want 4: a new open after each failure", o.opened)
	}
}

// ADS1115 conversions per the datasheet: config register 0x01 written with
// OS=1 (start), MUX=1xx (AINx single-ended), PGA, MODE=1 (single shot),
// DR=100 (128 SPS), COMP_QUE=11 (comparator off); then the conversion
// register 0x00 read as a signed 16-bit count of full-scale/32768.
func TestADS1115(t *testing.T) {
	conv := []i2ctest.IO{
		// AIN0, PGA=001 (±4.096 V): 0xC383; 0x4000 counts = 2.048 V.
		{Addr: 0x49, W: []byte{0x01, 0xC3, 0x83}},
		{Addr: 0x49, W: []byte{0x00}, R: []byte{0x40, 0x00}},
		// AIN3, PGA=000 (±6.144 V): 0xF183; 0xC000 = -16384 counts = -3.072 V.
		{Addr: 0x49, W: []byte{0x01, 0xF1, 0x83}},
		{Addr: 0x49, W: []byte{0x00}, R: []byte{0xC0, 0x00}},
	}
	bus := &i2ctest.Playback{Ops: conv}
	env := testEnv()
	env.OpenI2C = (&busOpener{buses: []*i2ctest.Playback{bus}}).open
	cfg := config.Sensor{Kind: "ads1115", Address: 0x49, Channels: []config.ADCChannel{
		{Input: 0, Gain: 1, Scale: 2.5, Offset: -1.25, Unit: "bar", Name: "pressure"},
		{Input: 3, Gain: 2.0 / 3, Scale: 1, Unit: "V", Name: "ch3"},
	}}
	s, err := New(cfg, env)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := s.Read(context.Background())
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	got := formatReadings(t, rs)
	if want := "pressure 3.87 bar\nch3 -3.072 V\n"; got != want {
		t.Errorf("readings:\n%s want:\n%s", got, want)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close (every recorded transaction played?): %v", err)
	}
}

func TestADS1115NoDevice(t *testing.T) {
	env := testEnv()
	o := &busOpener{buses: []*i2ctest.Playback{{DontPanic: true}}}
	env.OpenI2C = o.open
	s, _ := New(config.Sensor{Kind: "ads1115", Channels: []config.ADCChannel{{Input: 1, Gain: 1, Scale: 1, Name: "ch1", Unit: "V"}}}, env)
	defer s.Close()
	for i := range 2 { // a chip that does not answer, then no bus at all
		if rs, err := s.Read(context.Background()); !errors.Is(err, ErrNoDevice) || len(rs) != 0 {
			t.Errorf("Read %d = %v, %v; want ErrNoDevice", i, rs, err)
		}
	}
	if o.opened != 2 {
		t.Errorf("bus opened %d times, want 2", o.opened)
	}
}

func pinLookup(pins ...*gpiotest.Pin) func(string) (gpio.PinIO, error) {
	return func(name string) (gpio.PinIO, error) {
		for _, p := range pins {
			if p.N == name {
				return p, nil
			}
		}
		return nil, errors.New("unknown pin")
	}
}

// waitReading reads until quantity has value want, or fails after a
// generous deadline.
func waitReading(t *testing.T, s Sensor, quantity string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rs, err := s.Read(context.Background())
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		got, ok := byQuantity(rs)[quantity]
		if ok && got.Value == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %+v (present %v), want %g", quantity, got, ok, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestGPIOEdges(t *testing.T) {
	door := &gpiotest.Pin{N: "GPIO17", Num: 17, EdgesChan: make(chan gpio.Level)}
	env := testEnv()
	env.GPIOPin = pinLookup(door)
	s, err := New(config.Sensor{Kind: "gpio", Pins: []config.GPIOPin{{Pin: "GPIO17", Name: "door", Pull: "up", Edge: "both"}}}, env)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rs, err := s.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := formatReadings(t, rs); got != "door/level 1 \ndoor/edges 0 \n" {
		t.Errorf("first read (pulled up, no edge yet):\n%s", got)
	}
	if door.P != gpio.PullUp {
		t.Errorf("pull = %v, want up", door.P)
	}
	// Three edges; the sends return once the counter has taken each one.
	for _, l := range []gpio.Level{gpio.Low, gpio.High, gpio.Low} {
		door.EdgesChan <- l
	}
	waitReading(t, s, "door/edges", 3)
	waitReading(t, s, "door/level", 0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// After Close nobody waits for edges any more.
	select {
	case door.EdgesChan <- gpio.High:
		t.Error("an edge was taken after Close")
	case <-time.After(3 * edgeWait):
	}
}

// A pin without edge detection (a gpiotest.Pin without EdgesChan refuses
// In with an edge) is sampled every PollPeriod, and its level changes are
// counted as edges. synctest's clock makes the sampling deterministic.
func TestGPIOPolledEdges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		meter := &gpiotest.Pin{N: "GPIO22", Num: 22}
		plain := &gpiotest.Pin{N: "GPIO23", Num: 23, L: gpio.High}
		env := testEnv()
		env.GPIOPin = pinLookup(meter, plain)
		s, err := New(config.Sensor{Kind: "gpio", Pins: []config.GPIOPin{
			{Pin: "GPIO22", Name: "meter", Pull: "down", Edge: "rising"},
			{Pin: "GPIO23", Name: "switch", Edge: "none"},
		}}, env)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		read := func() map[string]Reading {
			rs, err := s.Read(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			return byQuantity(rs)
		}
		if m := read(); m["meter/level"].Value != 0 || m["meter/edges"].Value != 0 {
			t.Fatalf("pulled down, no pulse yet: %v", m)
		}
		for i := 1; i <= 3; i++ {
			meter.Out(gpio.High)
			time.Sleep(2 * PollPeriod)
			meter.Out(gpio.Low) // a falling edge: not counted
			time.Sleep(2 * PollPeriod)
			synctest.Wait()
			if m := read(); m["meter/edges"].Value != float64(i) || m["meter/level"].Value != 0 {
				t.Fatalf("after %d pulses: %v", i, m)
			}
		}
		// A pulse shorter than PollPeriod is not seen: the documented limit.
		meter.Out(gpio.High)
		meter.Out(gpio.Low)
		time.Sleep(2 * PollPeriod)
		synctest.Wait()
		m := read()
		if m["meter/edges"].Value != 3 || m["switch/level"].Value != 1 {
			t.Errorf("readings %v", m)
		}
		if _, ok := m["switch/edges"]; ok {
			t.Error("switch/edges reported for edge = \"none\"")
		}
	})
}

func TestGPIONoDevice(t *testing.T) {
	env := testEnv()
	env.GPIOPin = pinLookup()
	s, _ := New(config.Sensor{Kind: "gpio", Pins: []config.GPIOPin{{Pin: "GPIO99", Edge: "both"}}}, env)
	defer s.Close()
	if rs, err := s.Read(context.Background()); !errors.Is(err, ErrNoDevice) || len(rs) != 0 {
		t.Errorf("Read = %v, %v; want ErrNoDevice", rs, err)
	}
}

func TestNewKinds(t *testing.T) {
	for _, kind := range []string{"system", "thermal", "ds18b20", "bme280", "bmp280"} {
		s, err := New(config.Sensor{Kind: kind}, nil)
		if err != nil {
			t.Errorf("New(%s): %v", kind, err)
			continue
		}
		s.Close()
	}
	bad := []config.Sensor{
		{Kind: "sht31"},
		{Kind: "bme280", Address: 0x48},
		{Kind: "ads1115"},
		{Kind: "ads1115", Channels: []config.ADCChannel{{Input: 5, Gain: 1, Name: "x"}}},
		{Kind: "gpio"},
		{Kind: "gpio", Pins: []config.GPIOPin{{Pin: "GPIO4", Pull: "sideways"}}},
	}
	for _, c := range bad {
		if _, err := New(c, nil); !errors.Is(err, ErrConfig) {
			t.Errorf("New(%+v) = %v, want ErrConfig", c, err)
		}
	}
}

// On a machine without the hardware (this one), the real periph.io host
// path reports ErrNoDevice rather than failing or crashing.
func TestHostMissingHardware(t *testing.T) {
	for _, c := range []config.Sensor{
		{Kind: "bme280", Bus: "/dev/i2c-99", Address: 0x77},
		{Kind: "ads1115", Bus: "99", Channels: []config.ADCChannel{{Input: 0, Gain: 1, Scale: 1, Name: "ch0", Unit: "V"}}},
		{Kind: "gpio", Pins: []config.GPIOPin{{Pin: "GPIO_NONEXISTENT_99", Edge: "both"}}},
	} {
		s, err := New(c, nil)
		if err != nil {
			t.Fatalf("New(%s): %v", c.Kind, err)
		}
		rs, err := s.Read(context.Background())
		if !errors.Is(err, ErrNoDevice) || len(rs) != 0 {
			t.Errorf("%s: Read = %v, %v; want ErrNoDevice", c.Kind, rs, err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("%s: Close: %v", c.Kind, err)
		}
	}
}

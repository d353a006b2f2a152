package sensors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/eddy-iot/eddy/config"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/host/v3"
)

// Reading is one value taken from a sensor.
type Reading struct {
	Quantity string    // topic suffix: "load1", "temperature", "door/edges"
	Value    float64   // in Unit
	Unit     string    // "°C", "hPa", "%", "B", "" for a plain number
	Time     time.Time // when it was taken
}

// Sensor is one configured sensor.
type Sensor interface {
	// Read takes the current values. It may return readings and an error
	// together when part of the device failed; an error wrapping
	// ErrNoDevice means the hardware is not there (yet).
	Read(ctx context.Context) ([]Reading, error)
	// Close releases the device and ends the sensor's goroutines.
	Close() error
}

// ErrNoDevice is wrapped by Read's error when the sensor's hardware is
// missing: no bus, no chip answering at the address, no probe, no pin. It is
// "no data", not a failure of eddy; the device is looked for again on the
// next Read.
var ErrNoDevice = errors.New("sensors: no device")

// ErrConfig is wrapped by New's error for a configuration it cannot use.
var ErrConfig = errors.New("sensors: bad configuration")

// Env is how sensors reach hardware and the clock. The zero value means the
// real machine: periph.io's host drivers (host.Init runs on the first
// device open) and time.Now.
type Env struct {
	// OpenI2C opens an I2C bus by name or number ("1", "/dev/i2c-1", "" for
	// the first one). Default: host.Init and i2creg.Open.
	OpenI2C func(name string) (i2c.BusCloser, error)
	// GPIOPin looks up a GPIO pin by name. Default: host.Init and
	// gpioreg.ByName.
	GPIOPin func(name string) (gpio.PinIO, error)
	// Now stamps readings. Default: time.Now.
	Now func() time.Time
	// DataDir is the system sensor's disk path when its config has none.
	DataDir string
	// Logger receives debug details (skipped inputs). Default: discard.
	Logger *slog.Logger
}

func (e *Env) withDefaults() Env {
	var r Env
	if e != nil {
		r = *e
	}
	if r.OpenI2C == nil {
		r.OpenI2C = hostOpenI2C
	}
	if r.GPIOPin == nil {
		r.GPIOPin = hostGPIOPin
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.DataDir == "" {
		r.DataDir = "."
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return r
}

// New builds the sensor a [[sensor]] block describes (validated by package
// config; empty roots and addresses take their defaults here too). It does
// not touch the hardware: a missing device is reported by Read, not here.
// Its only error, wrapping ErrConfig, is for a configuration it cannot use.
func New(cfg config.Sensor, env *Env) (Sensor, error) {
	e := env.withDefaults()
	switch cfg.Kind {
	case "system":
		disk := cfg.DiskPath
		if disk == "" {
			disk = e.DataDir
		}
		return NewSystem(orDefault(cfg.ProcRoot, config.DefaultProcRoot), orDefault(cfg.SysRoot, config.DefaultSysRoot), disk, &e), nil
	case "thermal":
		return NewThermal(orDefault(cfg.SysRoot, config.DefaultSysRoot), &e), nil
	case "ds18b20":
		return NewDS18B20(orDefault(cfg.W1Root, config.DefaultW1Root), &e), nil
	case "bme280", "bmp280":
		return NewBMxx80(cfg.Kind, cfg.Bus, uint16(orDefaultInt(cfg.Address, 0x76)), &e)
	case "ads1115":
		return NewADS1115(cfg.Bus, uint16(orDefaultInt(cfg.Address, 0x48)), cfg.Channels, &e)
	case "gpio":
		return NewGPIO(cfg.Pins, &e)
	}
	return nil, fmt.Errorf("%w: unknown sensor kind %q", ErrConfig, cfg.Kind)
}

func hostOpenI2C(name string) (i2c.BusCloser, error) {
	if _, err := host.Init(); err != nil {
		return nil, fmt.Errorf("%w: periph host init: %v", ErrNoDevice, err)
	}
	b, err := i2creg.Open(name)
	if err != nil {
		return nil, fmt.Errorf("%w: i2c bus %q: %v", ErrNoDevice, name, err)
	}
	return b, nil
}

func hostGPIOPin(name string) (gpio.PinIO, error) {
	if _, err := host.Init(); err != nil {
		return nil, fmt.Errorf("%w: periph host init: %v", ErrNoDevice, err)
	}
	p := gpioreg.ByName(name)
	if p == nil {
		return nil, fmt.Errorf("%w: no gpio pin %q", ErrNoDevice, name)
	}
	return p, nil
}

// cleanName turns a sysfs label ("Core 0", "cpu-thermal") into one topic
// level: lower case, letters, digits, '-', '_' and '.', others as '_'.
func cleanName(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	b := []byte(s)
	for i, c := range b {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		if !ok {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "unnamed"
	}
	return string(b)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func orDefaultInt(n, def int) int {
	if n == 0 {
		return def
	}
	return n
}

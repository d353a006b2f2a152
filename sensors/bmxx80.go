package sensors

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/bmxx80"
)

// BMxx80 reads a Bosch BME280 (temperature, pressure, humidity) or BMP280
// (temperature, pressure) on I2C through periph.io's bmxx80 driver, one
// forced measurement per Read at 4x oversampling.
//
// Quantities: temperature (°C), pressure (hPa), humidity (%RH, BME280 only).
type BMxx80 struct {
	kind string // "bme280" or "bmp280"
	bus  string
	addr uint16
	open func(string) (i2c.BusCloser, error)
	now  func() time.Time

	mu  sync.Mutex // protects the open device below
	bc  i2c.BusCloser
	dev *bmxx80.Dev
}

// NewBMxx80 reads the chip at addr (0x76 or 0x77) on the named bus; kind
// is "bme280" or "bmp280". The bus is opened on the first Read.
func NewBMxx80(kind, bus string, addr uint16, env *Env) (*BMxx80, error) {
	if kind != "bme280" && kind != "bmp280" {
		return nil, fmt.Errorf("%w: bmxx80: kind %q", ErrConfig, kind)
	}
	if addr != 0x76 && addr != 0x77 {
		return nil, fmt.Errorf("%w: %s: address %#x is not 0x76 or 0x77", ErrConfig, kind, addr)
	}
	e := env.withDefaults()
	return &BMxx80{kind: kind, bus: bus, addr: addr, open: e.OpenI2C, now: e.Now}, nil
}

var _ Sensor = (*BMxx80)(nil)

// Read implements Sensor. A failed measurement closes the device, so the
// next Read probes and calibrates it afresh (it may have been replaced).
func (b *BMxx80) Read(ctx context.Context) ([]Reading, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.openLocked(); err != nil {
		return nil, err
	}
	var env physic.Env
	if err := b.dev.Sense(&env); err != nil {
		b.closeLocked()
		return nil, fmt.Errorf("sensors: %s at %#x: %w", b.kind, b.addr, err)
	}
	now := b.now()
	out := []Reading{
		{Quantity: "temperature", Value: celsius(env.Temperature), Unit: "°C", Time: now},
		{Quantity: "pressure", Value: float64(env.Pressure) / float64(100*physic.Pascal), Unit: "hPa", Time: now},
	}
	isBME := strings.HasPrefix(b.dev.String(), "BME280")
	if isBME && b.kind == "bme280" {
		out = append(out, Reading{Quantity: "humidity", Value: float64(env.Humidity) / float64(physic.PercentRH), Unit: "%RH", Time: now})
	}
	if !isBME && b.kind == "bme280" {
		return out, fmt.Errorf("sensors: bme280 at %#x: the chip is a %s, which has no humidity sensor: configure kind bmp280", b.addr, b.dev)
	}
	return out, nil
}

func (b *BMxx80) openLocked() error {
	if b.dev != nil {
		return nil
	}
	bc, err := b.open(b.bus)
	if err != nil {
		return fmt.Errorf("%w: %s: open i2c bus %q: %w", ErrNoDevice, b.kind, b.bus, err)
	}
	dev, err := bmxx80.NewI2C(bc, b.addr, &bmxx80.DefaultOpts)
	if err != nil {
		bc.Close()
		return fmt.Errorf("%w: %s at %#x on i2c bus %q: %v", ErrNoDevice, b.kind, b.addr, b.bus, err)
	}
	b.bc, b.dev = bc, dev
	return nil
}

func (b *BMxx80) closeLocked() error {
	if b.dev == nil {
		return nil
	}
	err := errors.Join(b.dev.Halt(), b.bc.Close())
	b.bc, b.dev = nil, nil
	return err
}

// Close implements Sensor.
func (b *BMxx80) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.closeLocked(); err != nil {
		return fmt.Errorf("sensors: %s close: %w", b.kind, err)
	}
	return nil
}

func celsius(t physic.Temperature) float64 {
	return float64(t-physic.ZeroCelsius) / float64(physic.Celsius)
}

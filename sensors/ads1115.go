package sensors

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/eddy-iot/eddy/config"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/ads1x15"
)

// ADS1115 reads single-ended inputs of a TI ADS1115 16-bit ADC through
// periph.io's ads1x15 driver: one single-shot conversion per channel and
// Read at 128 samples/s (about 8 ms each), at the channel's gain, scaled to
// engineering units as volts*scale + offset. Each channel is published under
// its configured name in its configured unit.
type ADS1115 struct {
	bus      string
	addr     uint16
	channels []config.ADCChannel
	open     func(string) (i2c.BusCloser, error)
	now      func() time.Time

	mu       sync.Mutex // protects the open device below
	bc       i2c.BusCloser
	pins     []ads1x15.PinADC
	verified bool // a conversion has succeeded since the device was opened
}

// adcRate is the conversion rate asked of the ADS1115: its power-on
// default, a balance of noise and time per channel.
const adcRate = 128 * physic.Hertz

// NewADS1115 reads channels from the ADC at addr (0x48 to 0x4B) on the
// named bus. The bus is opened on the first Read.
func NewADS1115(bus string, addr uint16, channels []config.ADCChannel, env *Env) (*ADS1115, error) {
	if addr < 0x48 || addr > 0x4B {
		return nil, fmt.Errorf("%w: ads1115: address %#x is not 0x48 to 0x4b", ErrConfig, addr)
	}
	if len(channels) == 0 {
		return nil, fmt.Errorf("%w: ads1115: no channel", ErrConfig)
	}
	for _, c := range channels {
		if c.Input < 0 || c.Input > 3 || c.FullScale() == 0 || c.Name == "" {
			return nil, fmt.Errorf("%w: ads1115: channel %+v (not validated by package config?)", ErrConfig, c)
		}
	}
	e := env.withDefaults()
	return &ADS1115{bus: bus, addr: addr, channels: channels, open: e.OpenI2C, now: e.Now}, nil
}

var _ Sensor = (*ADS1115)(nil)

// Read implements Sensor. A failed conversion closes the bus so the next
// Read starts afresh; until one conversion has succeeded after opening,
// failures are reported as ErrNoDevice (the chip does not answer).
func (a *ADS1115) Read(ctx context.Context) ([]Reading, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.openLocked(); err != nil {
		return nil, err
	}
	var out []Reading
	for i, c := range a.channels {
		if err := ctx.Err(); err != nil {
			return out, fmt.Errorf("sensors: ads1115: %w", err)
		}
		s, err := a.pins[i].Read()
		if err != nil {
			verified := a.verified
			a.closeLocked()
			if !verified {
				return out, fmt.Errorf("%w: ads1115 at %#x on i2c bus %q: %v", ErrNoDevice, a.addr, a.bus, err)
			}
			return out, fmt.Errorf("sensors: ads1115 at %#x input %d: %w", a.addr, c.Input, err)
		}
		a.verified = true
		volts := float64(s.V) / float64(physic.Volt)
		out = append(out, Reading{Quantity: c.Name, Value: volts*c.Scale + c.Offset, Unit: c.Unit, Time: a.now()})
	}
	return out, nil
}

func (a *ADS1115) openLocked() error {
	if a.bc != nil {
		return nil
	}
	bc, err := a.open(a.bus)
	if err != nil {
		return fmt.Errorf("%w: ads1115: open i2c bus %q: %w", ErrNoDevice, a.bus, err)
	}
	dev, err := ads1x15.NewADS1115(bc, &ads1x15.Opts{I2cAddress: a.addr})
	if err != nil {
		bc.Close()
		return fmt.Errorf("sensors: ads1115: %w", err)
	}
	pins := make([]ads1x15.PinADC, len(a.channels))
	for i, c := range a.channels {
		fs := physic.ElectricPotential(math.Round(c.FullScale()*1000)) * physic.MilliVolt
		p, err := dev.PinForChannel(ads1x15.Channel0+ads1x15.Channel(c.Input), fs, adcRate, ads1x15.BestQuality)
		if err != nil {
			bc.Close()
			return fmt.Errorf("sensors: ads1115: input %d: %w", c.Input, err)
		}
		pins[i] = p
	}
	a.bc, a.pins, a.verified = bc, pins, false
	return nil
}

func (a *ADS1115) closeLocked() error {
	if a.bc == nil {
		return nil
	}
	err := a.bc.Close()
	a.bc, a.pins = nil, nil
	return err
}

// Close implements Sensor.
func (a *ADS1115) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.closeLocked(); err != nil {
		return fmt.Errorf("sensors: ads1115 close: %w", err)
	}
	return nil
}

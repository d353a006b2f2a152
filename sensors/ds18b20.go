package sensors

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// DS18B20 reads every 1-wire temperature probe the kernel's w1 driver lists
// (directories 28-* and the DS18S20/DS1822/MAX31850 families 10-*, 22-*,
// 3b-* under /sys/bus/w1/devices), each published as its ROM id
// ("28-0316a2795bff") in °C.
//
// It reads w1_slave, whose first line carries the bus CRC check, and falls
// back to the newer temperature file. A CRC failure ("NO"), an all-zero
// scratchpad (a probe with a broken data line) and 85 °C (the power-on
// value: the probe never converted, usually a power problem) are errors.
type DS18B20 struct {
	root string
	now  func() time.Time
}

// NewDS18B20 lists probes under root (normally /sys/bus/w1/devices).
func NewDS18B20(root string, env *Env) *DS18B20 {
	e := env.withDefaults()
	return &DS18B20{root: root, now: e.Now}
}

var _ Sensor = (*DS18B20)(nil)

// ErrProbe is wrapped by the error for a probe that answered with a value
// that is known to be wrong (CRC mismatch, power-on value, all zeros).
var ErrProbe = errors.New("sensors: bad probe reading")

// powerOnMilli is the DS18B20's scratchpad value before its first
// conversion: +85.000 °C.
const powerOnMilli = 85000

var errPowerOn = errors.New("85 °C power-on value (no conversion; check the probe's power)")

// Read implements Sensor. Each probe takes up to 750 ms to convert; ctx is
// checked between probes. Good probes are returned beside the errors of bad
// ones.
func (d *DS18B20) Read(ctx context.Context) ([]Reading, error) {
	probes, err := d.probes()
	if err != nil {
		return nil, err
	}
	var out []Reading
	var errs []error
	for _, p := range probes {
		if err := ctx.Err(); err != nil {
			return out, fmt.Errorf("sensors: ds18b20: %w", err)
		}
		v, err := readProbe(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, Reading{Quantity: filepath.Base(p), Value: v, Unit: "°C", Time: d.now()})
	}
	return out, errors.Join(errs...)
}

// Close implements Sensor; DS18B20 holds nothing open.
func (d *DS18B20) Close() error { return nil }

func (d *DS18B20) probes() ([]string, error) {
	var all []string
	for _, fam := range []string{"10-*", "22-*", "28-*", "3b-*"} {
		m, err := filepath.Glob(filepath.Join(d.root, fam))
		if err != nil {
			return nil, fmt.Errorf("sensors: ds18b20: %w", err)
		}
		all = append(all, m...)
	}
	if len(all) == 0 {
		if _, err := os.Stat(d.root); err != nil {
			return nil, fmt.Errorf("%w: ds18b20: no w1 bus (%v); is the w1-gpio overlay enabled?", ErrNoDevice, err)
		}
		return nil, fmt.Errorf("%w: ds18b20: no probe under %s", ErrNoDevice, d.root)
	}
	return all, nil
}

func readProbe(dir string) (float64, error) {
	id := filepath.Base(dir)
	b, err := os.ReadFile(filepath.Join(dir, "w1_slave"))
	if errors.Is(err, os.ErrNotExist) {
		return readTemperatureFile(dir)
	}
	if err != nil {
		return 0, fmt.Errorf("sensors: ds18b20 %s: %w", id, err)
	}
	milli, err := parseW1Slave(b)
	if err != nil {
		return 0, fmt.Errorf("%w: ds18b20 %s: %v", ErrProbe, id, err)
	}
	return float64(milli) / 1000, nil
}

func readTemperatureFile(dir string) (float64, error) {
	id := filepath.Base(dir)
	b, err := os.ReadFile(filepath.Join(dir, "temperature"))
	if err != nil {
		return 0, fmt.Errorf("sensors: ds18b20 %s: %w", id, err)
	}
	s := strings.TrimSpace(string(b))
	milli, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		// The driver returns an empty read (or an error) on a CRC failure.
		return 0, fmt.Errorf("%w: ds18b20 %s: temperature %q", ErrProbe, id, s)
	}
	if milli == powerOnMilli {
		return 0, fmt.Errorf("%w: ds18b20 %s: %v", ErrProbe, id, errPowerOn)
	}
	return float64(milli) / 1000, nil
}

// parseW1Slave returns the temperature in m°C from the two lines the w1_therm driver writes:
//
//	72 01 4b 46 7f ff 0e 10 57 : crc=57 YES
//	72 01 4b 46 7f ff 0e 10 57 t=23125
func parseW1Slave(b []byte) (int64, error) {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) < 2 {
		return 0, fmt.Errorf("w1_slave has %d lines, want 2", len(lines))
	}
	crcLine := strings.TrimSpace(lines[0])
	if !strings.HasSuffix(crcLine, "YES") {
		return 0, fmt.Errorf("CRC check failed (%q)", crcLine)
	}
	scratch, _, _ := strings.Cut(crcLine, ":")
	if strings.Trim(scratch, "0 ") == "" {
		return 0, errors.New("scratchpad is all zeros (data line shorted or probe missing)")
	}
	_, t, ok := strings.Cut(lines[1], "t=")
	if !ok {
		return 0, fmt.Errorf("no t= in %q", lines[1])
	}
	milli, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
	if err != nil {
		return 0, err
	}
	if milli == powerOnMilli {
		return 0, errPowerOn
	}
	return milli, nil
}

package sensors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Thermal reads every thermal zone (/sys/class/thermal/thermal_zone*/temp,
// named by its type: "cpu-thermal") and every hwmon temperature input
// (/sys/class/hwmon/hwmon*/temp*_input, named <hwmon name>/<label>, or
// <hwmon name>/tempN without a label), in °C. Names that occur twice get the
// zone or hwmon number appended ("acpitz-1").
type Thermal struct {
	sys string
	now func() time.Time
	log *slog.Logger
}

// NewThermal reads under sysRoot (normally /sys).
func NewThermal(sysRoot string, env *Env) *Thermal {
	e := env.withDefaults()
	return &Thermal{sys: sysRoot, now: e.Now, log: e.Logger}
}

var _ Sensor = (*Thermal)(nil)

// thermalInput is one temperature file and the quantity it is published as.
type thermalInput struct {
	quantity string
	path     string
}

// Read implements Sensor. Inputs that cannot be read (a sensor that is
// powered down answers ENODATA) are skipped when at least one other input
// was read; with none at all, the error wraps ErrNoDevice.
func (t *Thermal) Read(ctx context.Context) ([]Reading, error) {
	inputs := append(t.zones(), t.hwmons()...)
	if len(inputs) == 0 {
		return nil, fmt.Errorf("%w: no thermal zone or hwmon temperature under %s", ErrNoDevice, t.sys)
	}
	now := t.now()
	var out []Reading
	var errs []error
	for _, in := range inputs {
		v, err := readMilli(in.path)
		if err != nil {
			t.log.Debug("thermal input unreadable", "path", in.path, "err", err)
			errs = append(errs, err)
			continue
		}
		out = append(out, Reading{Quantity: in.quantity, Value: v, Unit: "°C", Time: now})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("sensors: thermal: %w", errors.Join(errs...))
	}
	return out, nil
}

// Close implements Sensor; Thermal holds nothing open.
func (t *Thermal) Close() error { return nil }

func (t *Thermal) zones() []thermalInput {
	dirs, _ := filepath.Glob(filepath.Join(t.sys, "class/thermal/thermal_zone*"))
	var ins []thermalInput
	var names, nums []string
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "temp")); err != nil {
			continue
		}
		ins = append(ins, thermalInput{path: filepath.Join(d, "temp")})
		names = append(names, cleanName(readLine(filepath.Join(d, "type"), "zone")))
		nums = append(nums, strings.TrimPrefix(filepath.Base(d), "thermal_zone"))
	}
	for i, n := range uniqueNames(names, nums) {
		ins[i].quantity = n
	}
	return ins
}

func (t *Thermal) hwmons() []thermalInput {
	dirs, _ := filepath.Glob(filepath.Join(t.sys, "class/hwmon/hwmon*"))
	var names, nums []string
	var perDir [][]thermalInput
	for _, d := range dirs {
		files, _ := filepath.Glob(filepath.Join(d, "temp*_input"))
		if len(files) == 0 {
			continue
		}
		var ins []thermalInput
		for _, f := range files {
			base := strings.TrimSuffix(filepath.Base(f), "_input") // "temp1"
			label := cleanName(readLine(filepath.Join(d, base+"_label"), base))
			ins = append(ins, thermalInput{quantity: label, path: f})
		}
		perDir = append(perDir, ins)
		names = append(names, cleanName(readLine(filepath.Join(d, "name"), "hwmon")))
		nums = append(nums, strings.TrimPrefix(filepath.Base(d), "hwmon"))
	}
	var out []thermalInput
	for i, n := range uniqueNames(names, nums) {
		labels := make([]string, len(perDir[i]))
		inNums := make([]string, len(perDir[i]))
		for j, in := range perDir[i] {
			labels[j] = in.quantity
			inNums[j] = strings.TrimSuffix(strings.TrimPrefix(filepath.Base(in.path), "temp"), "_input")
		}
		for j, l := range uniqueNames(labels, inNums) {
			out = append(out, thermalInput{quantity: n + "/" + l, path: perDir[i][j].path})
		}
	}
	return out
}

// uniqueNames appends "-<num>" to every name that occurs more than once.
func uniqueNames(names, nums []string) []string {
	count := map[string]int{}
	for _, n := range names {
		count[n]++
	}
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = n
		if count[n] > 1 {
			out[i] = n + "-" + nums[i]
		}
	}
	return out
}

// readMilli reads a sysfs value in thousandths (millidegrees) as units.
func readMilli(path string) (float64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("sensors: %w", err)
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("sensors: %s: %w", path, err)
	}
	return float64(v) / 1000, nil
}

// readLine returns the first line of a small sysfs file, or def.
func readLine(path, def string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return def
	}
	s, _, _ := strings.Cut(string(b), "\n")
	if s = strings.TrimSpace(s); s == "" {
		return def
	}
	return s
}

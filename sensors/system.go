package sensors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// System reads the machine's own health: load averages, memory, the usage
// of the file system holding the data directory, uptime, network byte
// counters, CPU usage and, where the machine has any, its temperatures.
//
// Quantities: load1 load5 load15; mem/total mem/available (B) mem/used_pct
// (%); disk/used disk/free (B) disk/used_pct (%); uptime (s);
// net/<iface>/rx_bytes net/<iface>/tx_bytes (B, every interface but lo);
// cpu/usage_pct (% busy since the previous Read; absent on the first);
// temp/<zone> (°C, as the thermal kind names them).
type System struct {
	proc    string
	disk    string
	thermal *Thermal
	now     func() time.Time

	mu      sync.Mutex // protects prevCPU
	prevCPU cpuTimes
}

// NewSystem reads /proc under procRoot, temperatures under sysRoot and the
// file system usage of diskPath.
func NewSystem(procRoot, sysRoot, diskPath string, env *Env) *System {
	e := env.withDefaults()
	return &System{proc: procRoot, disk: diskPath, thermal: NewThermal(sysRoot, &e), now: e.Now}
}

var _ Sensor = (*System)(nil)

// Read implements Sensor. Every part is read even when another fails; the
// error joins the failures. Missing temperatures are not an error.
func (s *System) Read(ctx context.Context) ([]Reading, error) {
	now := s.now()
	var out []Reading
	var errs []error
	add := func(rs []Reading, err error) {
		for i := range rs {
			rs[i].Time = now
		}
		out = append(out, rs...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range procParsers {
		b, err := s.readProc(p.file)
		if err != nil {
			add(nil, err)
			continue
		}
		add(p.parse(b))
	}
	add(s.diskUsage())
	add(s.cpu())
	temps, err := s.thermal.Read(ctx)
	for _, r := range temps {
		r.Quantity = "temp/" + r.Quantity
		out = append(out, r)
	}
	if err != nil && !errors.Is(err, ErrNoDevice) {
		errs = append(errs, err)
	}
	return out, errors.Join(errs...)
}

// Close implements Sensor; System holds nothing open.
func (s *System) Close() error { return nil }

func (s *System) readProc(name string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(s.proc, name))
	if err != nil {
		return nil, fmt.Errorf("sensors: system: %w", err)
	}
	return b, nil
}

// procParsers read the /proc files that need no state between reads.
var procParsers = []struct {
	file  string
	parse func([]byte) ([]Reading, error)
}{
	{"loadavg", parseLoadavg},
	{"meminfo", parseMeminfo},
	{"uptime", parseUptime},
	{"net/dev", parseNetDev},
}

func parseLoadavg(b []byte) ([]Reading, error) {
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return nil, fmt.Errorf("sensors: system: loadavg: %q has fewer than 3 fields", b)
	}
	var out []Reading
	for i, q := range []string{"load1", "load5", "load15"} {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return nil, fmt.Errorf("sensors: system: loadavg: %w", err)
		}
		out = append(out, Reading{Quantity: q, Value: v})
	}
	return out, nil
}

func parseMeminfo(b []byte) ([]Reading, error) {
	kb := map[string]float64{}
	for line := range strings.Lines(string(b)) {
		key, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			kb[key] = v
		}
	}
	total, ok := kb["MemTotal"]
	if !ok || total <= 0 {
		return nil, errors.New("sensors: system: meminfo: no MemTotal")
	}
	avail, ok := kb["MemAvailable"]
	if !ok { // kernels before 3.14
		avail = kb["MemFree"] + kb["Buffers"] + kb["Cached"]
	}
	return []Reading{
		{Quantity: "mem/total", Value: total * 1024, Unit: "B"},
		{Quantity: "mem/available", Value: avail * 1024, Unit: "B"},
		{Quantity: "mem/used_pct", Value: 100 * (total - avail) / total, Unit: "%"},
	}, nil
}

func (s *System) diskUsage() ([]Reading, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.disk, &st); err != nil {
		return nil, fmt.Errorf("sensors: system: statfs %s: %w", s.disk, err)
	}
	bs := float64(st.Bsize)
	used := float64(st.Blocks-st.Bfree) * bs
	avail := float64(st.Bavail) * bs
	pct := 0.0
	if used+avail > 0 {
		// As df: the share of what non-root users can have.
		pct = 100 * used / (used + avail)
	}
	return []Reading{
		{Quantity: "disk/used", Value: used, Unit: "B"},
		{Quantity: "disk/free", Value: avail, Unit: "B"},
		{Quantity: "disk/used_pct", Value: pct, Unit: "%"},
	}, nil
}

func parseUptime(b []byte) ([]Reading, error) {
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return nil, errors.New("sensors: system: uptime: empty")
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return nil, fmt.Errorf("sensors: system: uptime: %w", err)
	}
	return []Reading{{Quantity: "uptime", Value: v, Unit: "s"}}, nil
}

// parseNetDev reads /proc/net/dev: after two header lines, "iface:
// rx_bytes rx_packets ... (8 rx fields) tx_bytes ...".
func parseNetDev(b []byte) ([]Reading, error) {
	var out []Reading
	for line := range strings.Lines(string(b)) {
		name, rest, ok := strings.Cut(line, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "lo" || strings.Contains(name, "|") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 9 {
			return out, fmt.Errorf("sensors: system: net/dev: %s: %d fields, want 16", name, len(f))
		}
		rx, err1 := strconv.ParseFloat(f[0], 64)
		tx, err2 := strconv.ParseFloat(f[8], 64)
		if err := errors.Join(err1, err2); err != nil {
			return out, fmt.Errorf("sensors: system: net/dev: %s: %w", name, err)
		}
		n := cleanName(name)
		out = append(out,
			Reading{Quantity: "net/" + n + "/rx_bytes", Value: rx, Unit: "B"},
			Reading{Quantity: "net/" + n + "/tx_bytes", Value: tx, Unit: "B"})
	}
	return out, nil
}

// cpuTimes are the aggregate jiffies of /proc/stat's "cpu" line.
type cpuTimes struct{ busy, total uint64 }

func (s *System) cpu() ([]Reading, error) {
	b, err := s.readProc("stat")
	if err != nil {
		return nil, err
	}
	cur, err := parseCPU(b)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	prev := s.prevCPU
	s.prevCPU = cur
	s.mu.Unlock()
	if prev.total == 0 || cur.total <= prev.total || cur.busy < prev.busy {
		return nil, nil // first read, or counters reset: no interval to measure
	}
	pct := 100 * float64(cur.busy-prev.busy) / float64(cur.total-prev.total)
	return []Reading{{Quantity: "cpu/usage_pct", Value: pct, Unit: "%"}}, nil
}

// parseCPU reads "cpu user nice system idle iowait irq softirq steal ...";
// guest time is already counted in user, so only the first 8 are summed.
func parseCPU(b []byte) (cpuTimes, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return cpuTimes{}, fmt.Errorf("sensors: system: stat: first line %q is not the cpu total", line)
	}
	var t cpuTimes
	for i, s := range f[1:min(len(f), 9)] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil || v > 1<<60 { // bounded so the sums cannot wrap
			return cpuTimes{}, fmt.Errorf("sensors: system: stat: bad jiffies %q", s)
		}
		t.total += v
		if i != 3 && i != 4 { // idle, iowait
			t.busy += v
		}
	}
	return t, nil
}

package sensors

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fixedNow is the clock of every test Env: readings must carry it.
var fixedNow = time.Date(2026, 11, 23, 17, 0, 0, 0, time.UTC)

func testEnv() *Env { return &Env{Now: func() time.Time { return fixedNow }} }

// formatReadings writes one "quantity value unit" line per reading and
// checks that each carries the Env's time.
func formatReadings(t *testing.T, rs []Reading) string {
	t.Helper()
	var b strings.Builder
	for _, r := range rs {
		if !r.Time.Equal(fixedNow) {
			t.Errorf("%s: time %v, want the time it was taken (%v)", r.Quantity, r.Time, fixedNow)
		}
		fmt.Fprintf(&b, "%s %s %s\n", r.Quantity, strconv.FormatFloat(r.Value, 'g', -1, 64), r.Unit)
	}
	return b.String()
}

// golden compares got with testdata/<name>.golden (rewritten with -update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden file: %v (run go test -update once)", err)
	}
	if got != string(want) {
		t.Errorf("readings differ from %s:\n--- got\n%s--- want\n%s", path, got, want)
	}
}

// copyTree copies testdata/<src> into a fresh temporary directory.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	if err := os.CopyFS(dst, os.DirFS(filepath.Join("testdata", src))); err != nil {
		t.Fatal(err)
	}
	return dst
}

func byQuantity(rs []Reading) map[string]Reading {
	m := map[string]Reading{}
	for _, r := range rs {
		m[r.Quantity] = r
	}
	return m
}

func TestSystemRead(t *testing.T) {
	proc := copyTree(t, "proc")
	s := NewSystem(proc, "testdata/sys", t.TempDir(), testEnv())
	defer s.Close()
	rs, err := s.Read(context.Background())
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	checkDisk(t, byQuantity(rs))
	var stable []Reading
	for _, r := range rs {
		if !strings.HasPrefix(r.Quantity, "disk/") { // the test machine's disk
			stable = append(stable, r)
		}
	}
	golden(t, "system", formatReadings(t, stable))
	if _, ok := byQuantity(rs)["cpu/usage_pct"]; ok {
		t.Error("cpu/usage_pct on the first read: there is no interval to measure yet")
	}

	// 400 busy jiffies out of 1000 since the first read: 40% busy.
	copyFile(t, "testdata/stat.2", filepath.Join(proc, "stat"))
	rs, err = s.Read(context.Background())
	if err != nil {
		t.Fatalf("second Read: %v", err)
	}
	cpu, ok := byQuantity(rs)["cpu/usage_pct"]
	if !ok || cpu.Value != 40 || cpu.Unit != "%" {
		t.Errorf("cpu/usage_pct = %+v (present %v), want 40 %%", cpu, ok)
	}
}

func checkDisk(t *testing.T, m map[string]Reading) {
	t.Helper()
	used, free, pct := m["disk/used"], m["disk/free"], m["disk/used_pct"]
	if used.Unit != "B" || free.Unit != "B" || pct.Unit != "%" {
		t.Errorf("disk units: %q %q %q", used.Unit, free.Unit, pct.Unit)
	}
	if used.Value <= 0 || free.Value < 0 || pct.Value <= 0 || pct.Value > 100 {
		t.Errorf("implausible disk usage: used %g free %g pct %g", used.Value, free.Value, pct.Value)
	}
	if want := 100 * used.Value / (used.Value + free.Value); pct.Value != want {
		t.Errorf("disk/used_pct = %g, want %g", pct.Value, want)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A machine without some /proc files (a container) still reports the rest.
func TestSystemPartial(t *testing.T) {
	proc := copyTree(t, "proc")
	if err := os.Remove(filepath.Join(proc, "meminfo")); err != nil {
		t.Fatal(err)
	}
	s := NewSystem(proc, filepath.Join(t.TempDir(), "nosys"), t.TempDir(), testEnv())
	rs, err := s.Read(context.Background())
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "meminfo") {
		t.Errorf("error = %v, want the missing meminfo", err)
	}
	m := byQuantity(rs)
	if _, ok := m["mem/total"]; ok {
		t.Error("mem/total without meminfo")
	}
	if m["load1"].Value != 0.52 || m["uptime"].Value != 86417.33 {
		t.Errorf("the readable parts are missing: %v", rs)
	}
	for q := range m {
		if strings.HasPrefix(q, "temp/") {
			t.Errorf("temperature %s without a /sys", q)
		}
	}
}

func TestThermalRead(t *testing.T) {
	th := NewThermal("testdata/sys", testEnv())
	rs, err := th.Read(context.Background())
	if err != nil {
		t.Fatalf("Read: %v (the unreadable zone must be skipped)", err)
	}
	golden(t, "thermal", formatReadings(t, rs))
	if cpu := byQuantity(rs)["cpu-thermal"]; cpu.Value != 47.236 || cpu.Unit != "°C" {
		t.Errorf("cpu-thermal = %+v, want 47.236 °C", cpu)
	}
}

func TestThermalNoDevice(t *testing.T) {
	th := NewThermal(t.TempDir(), testEnv())
	rs, err := th.Read(context.Background())
	if !errors.Is(err, ErrNoDevice) || len(rs) != 0 {
		t.Errorf("Read = %v, %v; want no readings and ErrNoDevice", rs, err)
	}
}

func TestDS18B20Read(t *testing.T) {
	d := NewDS18B20("testdata/w1/devices", testEnv())
	rs, err := d.Read(context.Background())
	golden(t, "ds18b20", formatReadings(t, rs))
	if !errors.Is(err, ErrProbe) {
		t.Fatalf("error = %v, want ErrProbe for the bad probes", err)
	}
	for _, id := range []string{"28-000005e2fdc3", "28-0000075a1d2b", "28-00000a1b2c3d"} {
		if !strings.Contains(err.Error(), id) {
			t.Errorf("error does not name bad probe %s: %v", id, err)
		}
	}
	for _, what := range []string{"CRC", "85 °C", "all zeros"} {
		if !strings.Contains(err.Error(), what) {
			t.Errorf("error does not say %q: %v", what, err)
		}
	}
	m := byQuantity(rs)
	if m["28-0316a2795bff"].Value != 23.125 || m["28-01144f9e7aaa"].Value != 21.5 {
		t.Errorf("good probes: %v", rs)
	}
}

func TestDS18B20NoDevice(t *testing.T) {
	for _, root := range []string{t.TempDir(), filepath.Join(t.TempDir(), "absent")} {
		rs, err := NewDS18B20(root, testEnv()).Read(context.Background())
		if !errors.Is(err, ErrNoDevice) || len(rs) != 0 {
			t.Errorf("%s: Read = %v, %v; want ErrNoDevice", root, rs, err)
		}
	}
}

func TestParseW1Slave(t *testing.T) {
	tests := []struct {
		in    string
		milli int64
		ok    bool
	}{
		{"72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n", 23125, true},
		{"5e ff 4b 46 7f ff 02 10 d7 : crc=d7 YES\n5e ff 4b 46 7f ff 02 10 d7 t=-10125\n", -10125, true},
		{"72 01 4b 46 7f ff 0e 10 57 : crc=57 NO\n72 01 4b 46 7f ff 0e 10 57 t=23125\n", 0, false},
		{"50 05 4b 46 7f ff 0c 10 1c : crc=1c YES\n50 05 4b 46 7f ff 0c 10 1c t=85000\n", 0, false},
		{"00 00 00 00 00 00 00 00 00 : crc=00 YES\n00 00 00 00 00 00 00 00 00 t=0\n", 0, false},
		{"72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n", 0, false},
		{"72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 t=x\n", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, err := parseW1Slave([]byte(tt.in))
		if (err == nil) != tt.ok || got != tt.milli {
			t.Errorf("parseW1Slave(%q) = %d, %v; want %d, ok %v", tt.in, got, err, tt.milli, tt.ok)
		}
	}
}

func FuzzParseW1Slave(f *testing.F) {
	f.Add([]byte("72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"))
	f.Add([]byte("72 01 : crc=57 NO\n t=1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		milli, err := parseW1Slave(b)
		if err != nil && milli != 0 {
			t.Fatalf("error %v with value %d", err, milli)
		}
		if err == nil && (milli == powerOnMilli || !strings.Contains(string(b), "YES")) {
			t.Fatalf("accepted %q as %d", b, milli)
		}
	})
}

func FuzzParseCPU(f *testing.F) {
	f.Add([]byte("cpu  10000 500 3000 80000 1000 100 50 0 0 0\ncpu0 1 2 3\n"))
	f.Add([]byte("cpu 1 2 3 4"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseCPU(b)
		if err == nil && c.busy > c.total {
			t.Fatalf("busy %d > total %d for %q", c.busy, c.total, b)
		}
	})
}

func BenchmarkSystemRead(b *testing.B) {
	s := NewSystem("/proc", "/sys", b.TempDir(), nil)
	ctx := context.Background()
	for b.Loop() {
		if _, err := s.Read(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProcReadBaseline is the floor under BenchmarkSystemRead: one
// read of one /proc file (System reads six files, statfs and sysfs).
func BenchmarkProcReadBaseline(b *testing.B) {
	for b.Loop() {
		if _, err := os.ReadFile("/proc/loadavg"); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzProcParsers(f *testing.F) {
	for _, name := range []string{"loadavg", "meminfo", "uptime", "net/dev"} {
		b, err := os.ReadFile(filepath.Join("testdata/proc", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, p := range procParsers {
			rs, err := p.parse(b)
			if err != nil && p.file != "net/dev" && len(rs) != 0 {
				t.Fatalf("%s: readings %v beside error %v", p.file, rs, err)
			}
			for _, r := range rs {
				if r.Quantity == "" || strings.HasSuffix(r.Quantity, "/") {
					t.Fatalf("%s: bad quantity in %+v", p.file, r)
				}
			}
		}
	})
}

package ingest

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/eddy-iot/eddy/config"
	"github.com/eddy-iot/eddy/ringlog"
	"github.com/eddy-iot/eddy/sensors"
	"go.uber.org/goleak"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2ctest"
)

// The fake /proc, /sys and w1 trees of package sensors.
const sensorTestdata = "../sensors/testdata"

// sensorTestLog opens a real ring log in a fresh directory. Inside a
// synctest bubble it must be closed before the bubble ends, so the caller
// closes it.
func sensorTestLog(t *testing.T) *ringlog.Log {
	t.Helper()
	l, err := ringlog.Open(t.TempDir(), &ringlog.Options{SyncInterval: 50 * time.Millisecond, MaxBytes: 16 << 20})
	if err != nil {
		t.Fatalf("ringlog.Open: %v", err)
	}
	return l
}

func sensorRecords(t *testing.T, l *ringlog.Log) []ringlog.Record {
	t.Helper()
	recs, err := l.ReadAfter(nil, 0, 1<<20)
	if err != nil {
		t.Fatalf("ReadAfter: %v", err)
	}
	return recs
}

// byTopic groups records by topic, in log order.
func byTopic(recs []ringlog.Record) map[string][]ringlog.Record {
	m := map[string][]ringlog.Record{}
	for _, r := range recs {
		m[r.Topic] = append(m[r.Topic], r)
	}
	return m
}

func copyTestTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	if err := os.CopyFS(dst, os.DirFS(filepath.Join(sensorTestdata, src))); err != nil {
		t.Fatal(err)
	}
	return dst
}

// BME280 traffic recorded from a real device (periph.io/x/devices/v3@v3.7.4
// bmxx80/bmx280_test.go, TestI2CSenseBME280_success): 23.72 °C,
// 1009.42695 hPa, 65.3056 %RH.
func bme280Playback(reads int) *i2ctest.Playback {
	ops := []i2ctest.IO{
		{Addr: 0x76, W: []byte{0xd0}, R: []byte{0x60}},
		{Addr: 0x76, W: []byte{0x88}, R: []byte{0x10, 0x6e, 0x6c, 0x66, 0x32, 0x0, 0x5d, 0x95, 0xb8, 0xd5, 0xd0, 0xb, 0x77, 0x1e, 0x9d, 0xff, 0xf9, 0xff, 0xac, 0x26, 0xa, 0xd8, 0xbd, 0x10, 0x0, 0x4b}},
		{Addr: 0x76, W: []byte{0xe1}, R: []byte{0x6e, 0x1, 0x0, 0x13, 0x5, 0x0, 0x1e}},
		{Addr: 0x76, W: []byte{0xf4, 0x6c, 0xf2, 0x3, 0xf5, 0xa0, 0xf4, 0x6c}},
	}
	for range reads {
		ops = append(ops,
			i2ctest.IO{Addr: 0x76, W: []byte{0xf4, 0x6d}},
			i2ctest.IO{Addr: 0x76, W: []byte{0xf3}, R: []byte{0x00}},
			i2ctest.IO{Addr: 0x76, W: []byte{0xf7}, R: []byte{0x4a, 0x52, 0xc0, 0x80, 0x96, 0xc0, 0x7a, 0x76}})
	}
	return &i2ctest.Playback{Ops: ops, DontPanic: true}
}

func oneBus(b i2c.BusCloser) func(string) (i2c.BusCloser, error) {
	var once sync.Once
	return func(string) (i2c.BusCloser, error) {
		var got i2c.BusCloser
		once.Do(func() { got = b })
		if got == nil {
			return nil, errors.New("no such bus")
		}
		return got, nil
	}
}

func sensorCfg(kind, name string, every time.Duration) config.Sensor {
	return config.Sensor{Kind: kind, Name: name, Interval: config.Duration{Duration: every}}
}

// startSensors runs s in the background; stop cancels and waits for Run
// (once; later calls do nothing).
func startSensors(t *testing.T, s *Sensors) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
}

func TestSensorsPollIntoLog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := sensorTestLog(t)
		defer l.Close()
		start := time.Now()
		sys := sensorCfg("system", "system", time.Second)
		sys.ProcRoot = copyTestTree(t, "proc")
		sys.SysRoot = filepath.Join(sensorTestdata, "sys")
		sys.DiskPath = t.TempDir()
		th := sensorCfg("thermal", "", 2*time.Second)
		th.SysRoot = filepath.Join(sensorTestdata, "sys")
		bme := sensorCfg("bme280", "room", time.Second)
		bus := bme280Playback(4)

		s, err := NewSensors([]config.Sensor{sys, th, bme}, l, nil,
			WithSensorEnv(sensors.Env{OpenI2C: oneBus(bus)}))
		if err != nil {
			t.Fatal(err)
		}
		stop := startSensors(t, s)
		time.Sleep(3500 * time.Millisecond) // reads at 0, 1, 2, 3 s
		synctest.Wait()
		stop()

		m := byTopic(sensorRecords(t, l))
		want := []struct {
			topic, value, unit string
			n                  int
			every              time.Duration
		}{
			{"system/load1", "0.52", "", 4, time.Second},
			{"system/mem/total", "9.71063296e+08", "B", 4, time.Second},
			{"system/mem/used_pct", "25.008436113313874", "%", 4, time.Second},
			{"system/uptime", "86417.33", "s", 4, time.Second},
			{"system/net/eth0/rx_bytes", "9.8127341e+07", "B", 4, time.Second},
			{"system/temp/cpu-thermal", "47.236", "°C", 4, time.Second},
			{"system/cpu/usage_pct", "", "%", 0, time.Second}, // the fake counters stand still: no interval to measure
			{"thermal/cpu-thermal", "47.236", "°C", 2, 2 * time.Second},
			{"thermal/coretemp/core_0", "49", "°C", 2, 2 * time.Second},
			{"room/temperature", "23.72", "°C", 4, time.Second},
			{"room/humidity", "65.3056", "%RH", 4, time.Second},
		}
		for _, w := range want {
			recs := m[w.topic]
			if len(recs) != w.n {
				t.Errorf("%s: %d records, want %d", w.topic, len(recs), w.n)
				continue
			}
			for i, r := range recs {
				if !strings.HasPrefix(string(r.Value), w.value) || r.Unit != w.unit || r.Kind != ringlog.KindJSON {
					t.Errorf("%s: %s %q kind %v, want %s %q json", w.topic, r.Value, r.Unit, r.Kind, w.value, w.unit)
				}
				// Stamped when taken: file reads take no fake time, the
				// BME280's forced measurement 26 ms; the period holds.
				at := start.Add(time.Duration(i) * w.every)
				if r.Time.Before(at) || r.Time.After(at.Add(50*time.Millisecond)) {
					t.Errorf("%s: record %d at %v, want the time of poll %d (%v)", w.topic, i, r.Time, i, at)
				}
			}
		}
		if recs := m["system/disk/used_pct"]; len(recs) != 4 || !strings.ContainsAny(string(recs[0].Value), "123456789") {
			t.Errorf("disk usage records: %v", recs)
		}
		for _, name := range []string{"system", "thermal", "room"} {
			st := m[name+"/status"]
			if len(st) != 1 || string(st[0].Value) != "ok" || st[0].Kind != ringlog.KindText {
				t.Errorf("%s/status: %v, want one \"ok\" text record", name, st)
			}
		}
		for _, h := range s.Health() {
			if !h.Up || h.Errors != 0 || h.Records == 0 || h.Reads == 0 || h.LastOK.IsZero() {
				t.Errorf("health %+v", h)
			}
			if h.Name == "room" && h.LastDuration < 20*time.Millisecond {
				t.Errorf("room: last read took %v; the BME280's forced measurement alone takes 26 ms", h.LastDuration)
			}
		}
		if err := bus.Close(); err != nil {
			t.Errorf("recorded BME280 traffic not played exactly: %v", err)
		}
	})
}

// syncBuffer is a log destination safe for the sensor goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A missing 1-wire bus is reported once (status record, one warning),
// retried at 1, 2, 4, 8, 8... s, and picked up when the probe appears,
// while the system sensor beside it keeps its 1 s period.
func TestSensorsFailureBackoffRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := sensorTestLog(t)
		defer l.Close()
		var logs syncBuffer
		logger := slog.New(slog.NewTextHandler(&logs, nil))
		w1 := filepath.Join(t.TempDir(), "devices")
		ds := sensorCfg("ds18b20", "tank", time.Second)
		ds.W1Root = w1
		sys := sensorCfg("system", "system", time.Second)
		sys.ProcRoot = copyTestTree(t, "proc")
		sys.DiskPath = t.TempDir()
		s, err := NewSensors([]config.Sensor{ds, sys}, l, logger, WithSensorMaxBackoff(8*time.Second))
		if err != nil {
			t.Fatalf("a missing device must not fail the constructor: %v", err)
		}
		stop := startSensors(t, s)

		// Attempts at 0, 2, 6, 14 s (delays 2, 4, 8 s), then every 8 s.
		time.Sleep(21500 * time.Millisecond)
		synctest.Wait()
		tank := s.Health()[0]
		if tank.Up || tank.Reads != 4 || tank.Errors != 4 || !strings.Contains(tank.LastError, "no w1 bus") || tank.Retry != 8*time.Second {
			t.Errorf("tank health after 21.5 s: %+v; want 4 failed reads, retry in 8s", tank)
		}
		if n := strings.Count(logs.String(), "sensor failing"); n != 1 {
			t.Errorf("%d 'sensor failing' warnings, want 1:\n%s", n, logs.String())
		}

		// The probe appears; the attempt at 22 s finds it, then 1 s polls.
		probe := filepath.Join(w1, "28-0316a2795bff")
		if err := os.MkdirAll(probe, 0o755); err != nil {
			t.Fatal(err)
		}
		good := "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
		if err := os.WriteFile(filepath.Join(probe, "w1_slave"), []byte(good), 0o644); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second) // to 24.5 s: reads at 22, 23, 24
		synctest.Wait()
		stop()

		m := byTopic(sensorRecords(t, l))
		st := m["tank/status"]
		if len(st) != 2 || !strings.Contains(string(st[0].Value), "no w1 bus") || string(st[1].Value) != "ok" {
			t.Errorf("tank/status records %v, want the error once then ok", st)
		}
		if got := m["tank/28-0316a2795bff"]; len(got) != 3 || string(got[0].Value) != "23.125" || got[0].Unit != "°C" {
			t.Errorf("probe records %v, want 3 of 23.125 °C", got)
		}
		if got := len(m["system/load1"]); got != 25 {
			t.Errorf("system/load1: %d records, want 25 (0..24 s): a failing sensor must not slow others", got)
		}
		if h := s.Health()[0]; !h.Up || h.LastError != "" || h.Retry != time.Second {
			t.Errorf("tank health after recovery: %+v", h)
		}
		if !strings.Contains(logs.String(), "sensor recovered") {
			t.Errorf("no recovery logged:\n%s", logs.String())
		}
	})
}

// One of two probes fails its CRC every other read (a partial failure:
// no backoff): a status record at every change, but the log sees at most
// one failure and one recovery line a minute.
func TestSensorsFlappingRateLimited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := sensorTestLog(t)
		defer l.Close()
		var logs syncBuffer
		probe := filepath.Join(t.TempDir(), "28-0316a2795bff")
		if err := os.MkdirAll(probe, 0o755); err != nil {
			t.Fatal(err)
		}
		good := "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
		bad := "72 01 4b 46 7f ff 0e 10 ff : crc=57 NO\n72 01 4b 46 7f ff 0e 10 ff t=23125\n"
		ds := sensorCfg("ds18b20", "tank", time.Second)
		ds.W1Root = filepath.Dir(probe)
		write := func(content string) {
			if err := os.WriteFile(filepath.Join(probe, "w1_slave"), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		write(good)
		steady := filepath.Join(ds.W1Root, "28-01144f9e7aaa")
		if err := os.MkdirAll(steady, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(steady, "temperature"), []byte("21500\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := NewSensors([]config.Sensor{ds}, l, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		stop := startSensors(t, s)
		synctest.Wait() // the read at 0 s: good
		// Reads at 1..39 s, bad at odd seconds; the file changes between reads.
		for i := 1; i < 40; i++ {
			if i%2 == 1 {
				write(bad)
			} else {
				write(good)
			}
			time.Sleep(time.Second)
			synctest.Wait()
		}
		stop()
		m := byTopic(sensorRecords(t, l))
		if st := m["tank/status"]; len(st) != 40 {
			t.Errorf("%d status records, want 40 (one per change)", len(st))
		}
		if n, n2 := len(m["tank/28-0316a2795bff"]), len(m["tank/28-01144f9e7aaa"]); n != 20 || n2 != 40 {
			t.Errorf("%d and %d readings, want 20 (the good reads) and 40", n, n2)
		}
		out := logs.String()
		if f, r := strings.Count(out, "sensor failing"), strings.Count(out, "sensor recovered"); f != 1 || r != 1 {
			t.Errorf("%d failure and %d recovery lines in 40 s, want 1 and 1:\n%s", f, r, out)
		}
		if h := s.Health()[0]; h.Reads != 40 || h.Errors != 20 {
			t.Errorf("health %+v, want 40 reads, 20 errors", h)
		}
	})
}

// A probe that keeps failing differently from the bus still yields its good
// neighbours; readings that are not JSON numbers are counted, not stored.
func TestSensorsPartialAndSkipped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := sensorTestLog(t)
		defer l.Close()
		ds := sensorCfg("ds18b20", "", time.Second)
		ds.W1Root = filepath.Join(sensorTestdata, "w1/devices")
		// 0x4000 counts = 2.048 V; scaled by 1e308 it is +Inf.
		bus := &i2ctest.Playback{Ops: []i2ctest.IO{
			{Addr: 0x48, W: []byte{0x01, 0xC3, 0x83}},
			{Addr: 0x48, W: []byte{0x00}, R: []byte{0x40, 0x00}},
			{Addr: 0x48, W: []byte{0x01, 0xD3, 0x83}},
			{Addr: 0x48, W: []byte{0x00}, R: []byte{0x40, 0x00}},
		}}
		adc := sensorCfg("ads1115", "adc", time.Second)
		adc.Channels = []config.ADCChannel{
			{Input: 0, Gain: 1, Scale: 1e308, Unit: "V", Name: "huge"},
			{Input: 1, Gain: 1, Scale: 2.5, Offset: -1.25, Unit: "bar", Name: "pressure"},
		}
		s, err := NewSensors([]config.Sensor{ds, adc}, l, nil, WithSensorEnv(sensors.Env{OpenI2C: oneBus(bus)}))
		if err != nil {
			t.Fatal(err)
		}
		stop := startSensors(t, s)
		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		stop()

		m := byTopic(sensorRecords(t, l))
		if got := m["ds18b20/28-0316a2795bff"]; len(got) != 1 || string(got[0].Value) != "23.125" {
			t.Errorf("good probe: %v", got)
		}
		if st := m["ds18b20/status"]; len(st) != 1 || !strings.Contains(string(st[0].Value), "CRC") {
			t.Errorf("ds18b20/status %v, want the bad probes' error", st)
		}
		if len(m["adc/huge"]) != 0 || len(m["adc/pressure"]) != 1 || string(m["adc/pressure"][0].Value) != "3.87" {
			t.Errorf("adc records: %v", m)
		}
		h := s.Health()
		if h[0].Up || h[0].Records != 2 || h[0].Retry != time.Second {
			t.Errorf("ds18b20 health %+v: partial reads are errors but not backed off", h[0])
		}
		if !h[1].Up || h[1].Skipped != 1 || h[1].Records != 1 || h[1].Bytes != uint64(len("adc/pressure")+len("3.87")) {
			t.Errorf("adc health %+v: want 1 skipped (Inf), 1 stored", h[1])
		}
		if err := bus.Close(); err != nil {
			t.Errorf("ADS1115 traffic: %v", err)
		}
	})
}

// Shutdown on the real clock: Run returns after cancel, the GPIO edge
// counter goroutine is gone, nothing leaks.
func TestSensorsShutdown(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	l := sensorTestLog(t)
	defer l.Close()
	pin := &gpiotest.Pin{N: "GPIO17", Num: 17, EdgesChan: make(chan gpio.Level)}
	gp := sensorCfg("gpio", "door", 50*time.Millisecond)
	gp.Pins = []config.GPIOPin{{Pin: "GPIO17", Name: "contact", Pull: "up", Edge: "both"}}
	sys := sensorCfg("system", "system", 50*time.Millisecond)
	sys.ProcRoot = filepath.Join(sensorTestdata, "proc")
	env := sensors.Env{GPIOPin: func(name string) (gpio.PinIO, error) {
		if name == pin.N {
			return pin, nil
		}
		return nil, errors.New("no pin")
	}}
	s, err := NewSensors([]config.Sensor{gp, sys}, l, nil, WithSensorEnv(env))
	if err != nil {
		t.Fatal(err)
	}
	stop := startSensors(t, s)
	defer stop() // before goleak's check
	// The first record means the pin is configured (gpiotest's In drops
	// pending edges); then the counter goroutine takes each edge.
	waitSensorValue(t, l, "door/contact/edges", "0")
	pin.EdgesChan <- gpio.Low
	pin.EdgesChan <- gpio.High
	waitSensorValue(t, l, "door/contact/edges", "2")
	stop()
	if err := s.Run(context.Background()); err == nil {
		t.Error("a second Run was accepted")
	}
}

// waitSensorValue waits (on the real clock, with a generous deadline) until
// the latest record of topic has value want.
func waitSensorValue(t *testing.T, l *ringlog.Log, topic, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		recs := byTopic(sensorRecords(t, l))[topic]
		if len(recs) > 0 && string(recs[len(recs)-1].Value) == want {
			return
		}
		if time.Now().After(deadline) {
			last := "none"
			if len(recs) > 0 {
				last = string(recs[len(recs)-1].Value)
			}
			t.Fatalf("%s never reached %s (%d records, last %s)", topic, want, len(recs), last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNewSensorsErrors(t *testing.T) {
	l := sensorTestLog(t)
	defer l.Close()
	bad := [][]config.Sensor{
		{sensorCfg("sht31", "", time.Second)},
		{sensorCfg("system", "", time.Second), sensorCfg("thermal", "system", time.Second)},
		{sensorCfg("system", "bad/+", time.Second)},
		{sensorCfg("ads1115", "", time.Second)}, // no channel
	}
	for _, cfgs := range bad {
		if _, err := NewSensors(cfgs, l, nil); err == nil {
			t.Errorf("NewSensors(%+v) accepted a bad configuration", cfgs)
		}
	}
	// Missing hardware is not a configuration error.
	missing := []config.Sensor{
		{Kind: "bme280", Bus: "/dev/i2c-99", Address: 0x77},
		{Kind: "gpio", Pins: []config.GPIOPin{{Pin: "GPIO99", Edge: "both"}}},
		{Kind: "ds18b20", W1Root: "/nonexistent"},
	}
	s, err := NewSensors(missing, l, nil)
	if err != nil {
		t.Fatalf("missing devices failed the constructor: %v", err)
	}
	if h := s.Health(); len(h) != 3 || h[0].Name != "bme280" || h[1].Name != "gpio" {
		t.Errorf("health %+v", h)
	}
}

func TestSensorRetryDelay(t *testing.T) {
	tests := []struct {
		interval, max time.Duration
		failures      int
		want          time.Duration
	}{
		{time.Second, time.Minute, 0, time.Second},
		{time.Second, time.Minute, 1, 2 * time.Second},
		{time.Second, time.Minute, 5, 32 * time.Second},
		{time.Second, time.Minute, 6, time.Minute},
		{time.Second, time.Minute, 1000, time.Minute},
		{5 * time.Minute, time.Minute, 3, 5 * time.Minute},
		{10 * time.Millisecond, time.Minute, 40, time.Minute},
	}
	for _, tt := range tests {
		l := &sensorLoop{cfg: sensorCfg("system", "s", tt.interval), maxBackoff: tt.max, failures: tt.failures}
		if got := l.retryDelay(); got != tt.want {
			t.Errorf("interval %v, max %v, %d failures: %v, want %v", tt.interval, tt.max, tt.failures, got, tt.want)
		}
	}
}

// A log that refuses appends (closed here) is counted and logged; polling
// goes on.
func TestSensorsAppendRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := sensorTestLog(t)
		sys := sensorCfg("system", "system", time.Second)
		sys.ProcRoot = filepath.Join(sensorTestdata, "proc")
		var logs syncBuffer
		s, err := NewSensors([]config.Sensor{sys}, l, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
		stop := startSensors(t, s)
		time.Sleep(2500 * time.Millisecond)
		synctest.Wait()
		stop()
		h := s.Health()[0]
		if h.Reads != 3 || h.Records != 0 || h.AppendErrors == 0 || !h.Up {
			t.Errorf("health %+v: want 3 good reads, nothing stored, append errors counted", h)
		}
		if n := strings.Count(logs.String(), "not stored"); n != 1 {
			t.Errorf("%d 'not stored' lines, want 1 (rate limited):\n%s", n, logs.String())
		}
	})
}

func TestSensorTruncate(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"abcdef", 3, "abc"},
		{"ab°C", 3, "ab"}, // '°' is 2 bytes: not split
		{"ab°C", 4, "ab°"},
	}
	for _, tt := range tests {
		if got := sensorTruncate(tt.in, tt.n); got != tt.want {
			t.Errorf("sensorTruncate(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

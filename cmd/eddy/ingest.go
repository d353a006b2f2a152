package main

import (
	"context"
	"log/slog"
	"reflect"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-iot/eddy/config"
	"github.com/eddy-iot/eddy/ingest"
	"github.com/eddy-iot/eddy/metrics"
	"github.com/eddy-iot/eddy/ringlog"
)

// ingestGroup owns the sensor poller and the MQTT clients: their
// goroutines run until stop, and a reload replaces them.
type ingestGroup struct {
	mu      sync.Mutex // protects sensors, mqtt and their configs
	log     *ringlog.Log
	logger  *slog.Logger
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	sensors *ingest.Sensors
	mqtt    []*ingest.MQTT
	cfgS    []config.Sensor
	cfgM    []config.MQTT
}

// startIngest builds every sensor and MQTT client before starting any, so
// that a configuration they refuse stops eddy at start (exit status 2). A
// missing device is not such an error: the sensor reports and retries.
func startIngest(cfg *config.Config, log *ringlog.Log, reg prometheus.Registerer, logger *slog.Logger) (*ingestGroup, error) {
	g := &ingestGroup{log: log, logger: logger, cancel: func() {}}
	if err := g.start(cfg.Sensors, cfg.MQTT); err != nil {
		return nil, err
	}
	registerIngestMetrics(reg, g)
	return g, nil
}

// start builds and runs the sensors and MQTT clients of a config; when
// one cannot be built, none runs.
func (g *ingestGroup) start(sensors []config.Sensor, mqtts []config.MQTT) error {
	var s *ingest.Sensors
	if len(sensors) > 0 {
		var err error
		if s, err = ingest.NewSensors(sensors, g.log, g.logger.With("component", "sensors")); err != nil {
			return err
		}
	}
	var ms []*ingest.MQTT
	for _, mc := range mqtts {
		m, err := ingest.NewMQTT(mc, g.log, g.logger.With("component", "mqtt"))
		if err != nil {
			return err
		}
		ms = append(ms, m)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g.mu.Lock()
	defer g.mu.Unlock()
	g.cancel, g.cfgS, g.cfgM, g.sensors, g.mqtt = cancel, sensors, mqtts, s, ms
	if s != nil {
		g.goRun(ctx, "sensors", s.Run)
	}
	for i, m := range ms {
		g.goRun(ctx, "mqtt "+mqtts[i].Broker, m.Run)
	}
	return nil
}

func (g *ingestGroup) goRun(ctx context.Context, name string, run func(context.Context) error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := run(ctx); err != nil && ctx.Err() == nil {
			g.logger.Error("ingest stopped", "part", name, "err", err)
		}
	}()
}

// stop ends every ingest goroutine and waits for them.
func (g *ingestGroup) stop() {
	g.mu.Lock()
	cancel := g.cancel
	g.mu.Unlock()
	cancel()
	g.wg.Wait()
}

// reload restarts ingest when the sensor or MQTT config changed. Streams
// and the log are untouched; the MQTT sessions are persistent, so a
// restart loses no QoS 1/2 message. When the new parts cannot be built
// the old ones are started again.
func (g *ingestGroup) reload(sensors []config.Sensor, mqtts []config.MQTT) (bool, error) {
	g.mu.Lock()
	oldS, oldM := g.cfgS, g.cfgM
	g.mu.Unlock()
	if reflect.DeepEqual(sensors, oldS) && reflect.DeepEqual(mqtts, oldM) {
		return false, nil
	}
	g.stop()
	if err := g.start(sensors, mqtts); err != nil {
		if rerr := g.start(oldS, oldM); rerr != nil {
			g.logger.Error("reload: could not restart the previous ingest either", "err", rerr)
		}
		return false, err
	}
	return true, nil
}

// snapshot returns the running parts for metrics.
func (g *ingestGroup) snapshot() (*ingest.Sensors, []*ingest.MQTT) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sensors, g.mqtt
}

func registerIngestMetrics(reg prometheus.Registerer, g *ingestGroup) {
	metrics.RegisterIngest(reg, func() ([]ingest.MQTTStats, []ingest.SensorHealth) {
		sensors, mqtts := g.snapshot()
		var ms []ingest.MQTTStats
		for _, m := range mqtts {
			ms = append(ms, m.Stats())
		}
		var hs []ingest.SensorHealth
		if sensors != nil {
			hs = sensors.Health()
		}
		return ms, hs
	})
}

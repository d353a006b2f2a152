package config

import (
	"fmt"
	"time"
)

// Sensor is one [[sensor]] block.
type Sensor struct {
	Kind     string   `toml:"kind"` // system, thermal, bme280, bmp280, ds18b20, ads1115, gpio
	Name     string   `toml:"name"` // topic prefix; defaults to the kind
	Interval Duration `toml:"interval"`
}

func defaultSystemSensor() Sensor {
	return Sensor{Kind: "system", Name: "system", Interval: Duration{time.Second}}
}

func (s *Sensor) validate(key string) error {
	switch s.Kind {
	case "system", "thermal", "bme280", "bmp280", "ds18b20", "ads1115", "gpio":
	case "":
		return &Error{Key: key + ".kind", Msg: "is required"}
	default:
		return &Error{Key: key + ".kind", Msg: fmt.Sprintf("unknown sensor kind %q", s.Kind)}
	}
	if s.Name == "" {
		s.Name = s.Kind
	}
	if s.Interval.Duration == 0 {
		s.Interval.Duration = time.Second
	}
	if s.Interval.Duration < 10*time.Millisecond {
		return &Error{Key: key + ".interval", Msg: "must be at least 10ms"}
	}
	return nil
}

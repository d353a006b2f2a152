// Package sensors owns eddy's local sensor drivers: system statistics from
// /proc and statfs, temperatures from sysfs (thermal zones, hwmon), BME280
// and BMP280 environment sensors and ADS1115 ADCs on I2C (through periph.io's
// drivers), DS18B20 probes on the kernel's 1-wire sysfs interface, and GPIO
// inputs.
//
// Every kind implements Sensor: Read returns the current values as
// Readings named by quantity ("load1", "temperature", "door/edges"), each
// stamped with the time it was taken. The caller (package ingest) turns them
// into records <sensor name>/<quantity>.
//
// Guarantees:
//
//   - Missing hardware is not a crash and not a configuration error: New
//     succeeds for a bus or device that is not there, and Read returns an
//     error wrapping ErrNoDevice until it appears. Devices are opened lazily
//     on the first Read and reopened after a failed one, so a sensor plugged
//     in (or fixed) later starts reporting without a restart.
//   - A Read may return readings together with an error when only part of
//     the device failed (one of several probes, one /proc file): the
//     readings are good, the error says what is missing.
//   - Values that a device reports but that are known to be wrong (a
//     DS18B20's CRC mismatch or 85 °C power-on value) are errors, never
//     readings.
//   - The filesystem roots (/proc, /sys, the w1 devices directory) and the
//     hardware buses come from configuration and Env, so tests run the real
//     parsing and the real periph.io drivers against fake trees and
//     recorded bus traffic.
//   - A Sensor's Read and Close may be called from different goroutines;
//     after Close, goroutines the sensor started (GPIO edge counting) have
//     ended.
package sensors

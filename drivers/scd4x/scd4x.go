// Package scd4x drives the Sensirion SCD40 and SCD41 photoacoustic CO2
// sensors (with their temperature and humidity outputs) over I2C.
//
// Written from the Sensirion SCD4x datasheet ("CO2, humidity and temperature
// sensor", version 1.1 and later): the command set with its execution
// times (stop_periodic_measurement 500 ms, get_serial_number,
// set_automatic_self_calibration_enabled, set_sensor_altitude and
// get_data_ready_status 1 ms each), periodic measurement with a new value
// every 5 s, the CRC-8 after every word and the read_measurement conversion
// formulas.
//
// New puts the sensor into a known state (stop_periodic_measurement), checks
// its serial number, applies the self-calibration and altitude settings
// (volatile: nothing is written to the sensor's EEPROM) and starts periodic
// measurement. Sense polls get_data_ready_status and reads the new
// measurement. Halt stops periodic measurement.
package scd4x

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/cityedge/cityedge/drivers/sensirion"
	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
)

// Commands.
const (
	cmdStartPeriodic = 0x21B1
	cmdReadMeasure   = 0xEC05
	cmdStopPeriodic  = 0x3F86
	cmdSetASC        = 0x2416
	cmdGetASC        = 0x2313
	cmdSetAltitude   = 0x2427
	cmdGetAltitude   = 0x2322
	cmdDataReady     = 0xE4B8
	cmdSerial        = 0x3682
	cmdReinit        = 0x3646
)

// Execution times from the datasheet's command table, and the periodic
// measurement's signal update interval.
const (
	stopWait       = 500 * time.Millisecond
	commandWait    = time.Millisecond
	updateInterval = 5 * time.Second
)

// How Sense polls for a new measurement: often enough to add little delay,
// and no longer than one update interval plus a margin before giving up.
const (
	pollInterval = 250 * time.Millisecond
	readyTimeout = updateInterval + time.Second
)

// MaxAltitude is the highest sensor altitude the datasheet accepts, in m.
const MaxAltitude = 3000

// Opts configures a Dev.
type Opts struct {
	Addr uint16 // always 0x62

	// SelfCalibration enables automatic self-calibration (ASC), the
	// sensor's default: it assumes the lowest CO2 seen over a week is fresh
	// air (about 400 ppm). Disable it where the sensor never sees fresh air.
	SelfCalibration bool
	// Altitude is the sensor's height above sea level in metres
	// (0..MaxAltitude), for the sensor's pressure compensation.
	Altitude uint16

	// Clock measures the chip's execution times; nil is the real clock.
	// Tests inject a fake one.
	Clock clockwork.Clock
}

// DefaultOpts are the sensor's own defaults.
var DefaultOpts = Opts{Addr: 0x62, SelfCalibration: true}

// Validate reports an altitude above the datasheet's MaxAltitude.
func (o *Opts) Validate() error {
	if o.Altitude > MaxAltitude {
		return fmt.Errorf("altitude %d m above the datasheet's %d m", o.Altitude, MaxAltitude)
	}
	return nil
}

// Measurement is one reading.
type Measurement struct {
	CO2         uint16 // ppm
	Temperature physic.Temperature
	Humidity    physic.RelativeHumidity
}

// Datasheet ranges: CO2 output range and the operating temperature range.
const (
	maxCO2  = 40000
	minTemp = -10
	maxTemp = 60
)

// Dev is an open SCD4x in periodic measurement mode.
type Dev struct {
	mu     sync.Mutex
	s      sensirion.Dev
	serial uint64
	opts   Opts
}

var _ conn.Resource = &Dev{}

// New stops whatever the sensor was doing, reads its serial number, applies
// opts and starts periodic measurement. The first measurement is ready about
// 5 s later.
func New(bus i2c.Bus, opts *Opts) (*Dev, error) {
	if opts == nil {
		opts = &DefaultOpts
	}
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("scd4x: %w", err)
	}
	d := &Dev{s: sensirion.Dev{I2C: i2c.Dev{Bus: bus, Addr: opts.Addr}, Clock: opts.Clock}, opts: *opts}
	ctx := context.Background()

	// The settings commands are accepted only in idle mode; a sensor left
	// measuring (agent restart, re-plug) needs stopping first.
	if _, err := d.s.Exec(ctx, sensirion.Cmd16(cmdStopPeriodic), nil, stopWait, 0); err != nil {
		return nil, fmt.Errorf("scd4x: stop_periodic_measurement: %w", err)
	}
	raw, err := d.s.Exec(ctx, sensirion.Cmd16(cmdSerial), nil, commandWait, 3)
	if err != nil {
		return nil, fmt.Errorf("scd4x: get_serial_number: %w", err)
	}
	w, err := sensirion.Words(raw)
	if err != nil {
		return nil, fmt.Errorf("scd4x: serial number: %w (not an SCD4x?)", err)
	}
	d.serial = uint64(w[0])<<32 | uint64(w[1])<<16 | uint64(w[2])

	asc := uint16(0)
	if opts.SelfCalibration {
		asc = 1
	}
	if _, err := d.s.Exec(ctx, sensirion.Cmd16(cmdSetASC), []uint16{asc}, commandWait, 0); err != nil {
		return nil, fmt.Errorf("scd4x: set_automatic_self_calibration_enabled: %w", err)
	}
	if _, err := d.s.Exec(ctx, sensirion.Cmd16(cmdSetAltitude), []uint16{opts.Altitude}, commandWait, 0); err != nil {
		return nil, fmt.Errorf("scd4x: set_sensor_altitude: %w", err)
	}
	if _, err := d.s.Exec(ctx, sensirion.Cmd16(cmdStartPeriodic), nil, 0, 0); err != nil {
		return nil, fmt.Errorf("scd4x: start_periodic_measurement: %w", err)
	}
	return d, nil
}

// Serial returns the sensor's 48-bit serial number.
func (d *Dev) Serial() uint64 { return d.serial }

// Sense returns the next new measurement: it polls get_data_ready_status
// until the sensor has one (at most one update interval, 5 s, plus a margin)
// and reads it. Each measurement is returned once.
func (d *Dev) Sense(ctx context.Context) (Measurement, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	// Ready when any of the 11 least significant bits is set.
	if err := d.s.WaitReady(ctx, sensirion.Cmd16(cmdDataReady), commandWait, pollInterval, readyTimeout,
		func(w uint16) bool { return w&0x07FF != 0 }); err != nil {
		return Measurement{}, fmt.Errorf("scd4x: get_data_ready_status: %w (is periodic measurement running?)", err)
	}
	m, err := sensirion.Read(ctx, &d.s, sensirion.Cmd16(cmdReadMeasure), commandWait, 3, decode)
	if err != nil {
		return Measurement{}, fmt.Errorf("scd4x: read_measurement: %w", err)
	}
	return m, nil
}

// Halt stops periodic measurement and waits the command's 500 ms, after which
// the sensor accepts commands again (a later New).
func (d *Dev) Halt() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.s.Exec(context.Background(), sensirion.Cmd16(cmdStopPeriodic), nil, stopWait, 0); err != nil {
		return fmt.Errorf("scd4x: stop_periodic_measurement: %w", err)
	}
	return nil
}

// String implements conn.Resource.
func (d *Dev) String() string {
	return fmt.Sprintf("SCD4x serial %012x on %s address %#02x", d.serial, d.s.I2C.Bus, d.s.I2C.Addr)
}

// decode turns the 9 bytes of read_measurement (CO2, temperature, humidity
// words, each with its CRC) into a Measurement:
//
//	CO2 = word ppm    T = -45 °C + 175 °C · word / (2¹⁶ - 1)    RH = 100 %RH · word / (2¹⁶ - 1)
//
// CO2 above the 40000 ppm output range or a temperature outside the operating
// range of -10..60 °C is an error (sensirion.ErrRange).
func decode(raw []byte) (Measurement, error) {
	w, err := sensirion.Decode(raw, 3)
	if err != nil {
		return Measurement{}, err
	}
	if w[0] > maxCO2 {
		return Measurement{}, fmt.Errorf("CO2 %d ppm %w (0..%d ppm)", w[0], sensirion.ErrRange, maxCO2)
	}
	t, err := sensirion.Temperature(w[1], minTemp, maxTemp)
	if err != nil {
		return Measurement{}, err
	}
	return Measurement{CO2: w[0], Temperature: t, Humidity: sensirion.Humidity(w[2])}, nil
}

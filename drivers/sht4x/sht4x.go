// Package sht4x drives the Sensirion SHT40, SHT41, SHT43 and SHT45
// temperature and humidity sensors over I2C.
//
// Written from the datasheet "SHT4x 4th Generation, High-Accuracy,
// Ultra-Low-Power, 16-bit Relative Humidity and Temperature Sensor"
// (Sensirion, version 6, February 2023): the one-byte command set
// (high-precision measurement 0xFD, serial number 0x89, soft reset 0x94), the
// CRC-8 after every word, and the "conversion of signal output" formulas.
// Each Sense starts one measurement, waits for it, and reads the result; the
// sensor idles in between.
package sht4x

import (
	"context"
	"fmt"
	"time"

	"github.com/cityedge/cityedge/drivers/sensirion"
	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
)

// Commands (datasheet command table).
const (
	cmdMeasureHigh = 0xFD // T and RH with high precision (high repeatability)
	cmdSerial      = 0x89
	cmdSoftReset   = 0x94
)

// Timing. A high-precision measurement takes at most 8.3 ms (datasheet
// timing table, measurement duration); we wait 9 ms. The datasheet gives no duration for reading the
// serial number; 10 ms is what Sensirion's own reference driver waits.
const (
	measureWait = 9 * time.Millisecond
	serialWait  = 10 * time.Millisecond
)

// Opts configures a Dev.
type Opts struct {
	Addr uint16 // 0x44 for most parts; 0x45 or 0x46 for the SHT40-B/C variants

	// Clock measures the chip's execution times; nil is the real clock.
	// Tests inject a fake one.
	Clock clockwork.Clock
}

// DefaultOpts is the address of the common SHT40/41/45-AD1B parts.
var DefaultOpts = Opts{Addr: 0x44}

// Measurement is one reading: temperature and relative humidity.
type Measurement = sensirion.Climate

// Dev is an open SHT4x.
type Dev struct {
	s      sensirion.Dev
	serial uint32
}

var _ conn.Resource = &Dev{}

// New opens the SHT4x at opts.Addr and reads its serial number, whose CRCs
// show that an SHT4x answered.
func New(bus i2c.Bus, opts *Opts) (*Dev, error) {
	if opts == nil {
		opts = &DefaultOpts
	}
	d := &Dev{s: sensirion.Dev{I2C: i2c.Dev{Bus: bus, Addr: opts.Addr}, Clock: opts.Clock}}
	raw, err := d.s.Exec(context.Background(), []byte{cmdSerial}, nil, serialWait, 2)
	if err != nil {
		return nil, fmt.Errorf("sht4x: read serial number: %w", err)
	}
	w, err := sensirion.Words(raw)
	if err != nil {
		return nil, fmt.Errorf("sht4x: serial number: %w (not an SHT4x?)", err)
	}
	d.serial = uint32(w[0])<<16 | uint32(w[1])
	return d, nil
}

// Serial returns the chip's serial number.
func (d *Dev) Serial() uint32 { return d.serial }

// Sense takes one high-precision measurement.
func (d *Dev) Sense(ctx context.Context) (Measurement, error) {
	m, err := sensirion.Read(ctx, &d.s, []byte{cmdMeasureHigh}, measureWait, 2, decode)
	if err != nil {
		return Measurement{}, fmt.Errorf("sht4x: measure: %w", err)
	}
	return m, nil
}

// Halt implements conn.Resource. The sensor returns to idle after each
// measurement by itself, so there is nothing to stop.
func (d *Dev) Halt() error { return nil }

// String implements conn.Resource.
func (d *Dev) String() string {
	return fmt.Sprintf("SHT4x serial %08x on %s address %#02x", d.serial, d.s.I2C.Bus, d.s.I2C.Addr)
}

// decode turns the 6 bytes of a measurement (temperature word, CRC, humidity
// word, CRC) into a Measurement, with the datasheet's conversion formulas:
//
//	T = -45 °C + 175 °C · S_T / (2¹⁶ - 1)    RH = -6 %RH + 125 %RH · S_RH / (2¹⁶ - 1)
//
// RH is cropped to 0..100 %RH as the datasheet prescribes (the signal's range
// is wider so that cropping, not the sensor, limits it). Temperatures outside
// the operating range of -40..125 °C are errors (sensirion.ErrRange).
func decode(raw []byte) (Measurement, error) {
	w, err := sensirion.Decode(raw, 2)
	if err != nil {
		return Measurement{}, err
	}
	t, err := sensirion.Temperature(w[0], -40, 125)
	if err != nil {
		return Measurement{}, err
	}
	rh := -6*int64(physic.PercentRH) + (int64(w[1])*125*int64(physic.PercentRH)+32767)/65535
	rh = min(max(rh, 0), 100*int64(physic.PercentRH))
	return Measurement{Temperature: t, Humidity: physic.RelativeHumidity(rh)}, nil
}

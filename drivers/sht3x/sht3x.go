// Package sht3x drives the Sensirion SHT30, SHT31 and SHT35 temperature and
// humidity sensors over I2C.
//
// Written from the datasheet "SHT3x-DIS Humidity and Temperature Sensor"
// (Sensirion, version 5, May 2018): single-shot measurement with high
// repeatability and clock stretching disabled (section 4.3, table 9), status
// register (section 4.11), CRC-8 on every word (section 4.12) and the
// conversion formulas of section 4.13. The serial number command 0x3780 is
// not in that datasheet; Sensirion's own drivers use it, so it is read when
// the chip answers it. Each Sense starts one measurement, waits for it, and
// reads the result; the sensor sleeps in between.
package sht3x

import (
	"context"
	"fmt"
	"time"

	"github.com/cityedge/cityedge/drivers/sensirion"
	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/i2c"
)

// Commands (section 4.3 table 9, 4.11 table 17).
const (
	cmdMeasureHigh = 0x2400 // single shot, high repeatability, no clock stretching
	cmdStatus      = 0xF32D
	cmdSerial      = 0x3780 // not in the version 5 datasheet, see the package doc
	cmdSoftReset   = 0x30A2
	cmdClearStatus = 0x3041
	cmdBreak       = 0x3093
)

// Timing. The datasheet gives at most 15 ms for a high-repeatability
// measurement (timing specification, measurement duration); a read before
// the end is not acknowledged, so we wait a little longer. Other commands
// get the 1 ms minimal waiting time of section 4.3, table 9.
const (
	measureWait = 16 * time.Millisecond
	commandWait = time.Millisecond
)

// Opts configures a Dev.
type Opts struct {
	Addr uint16 // 0x44 (ADDR pin low) or 0x45 (ADDR pin high)

	// Clock measures the chip's execution times; nil is the real clock.
	// Tests inject a fake one.
	Clock clockwork.Clock
}

// DefaultOpts is the address with the ADDR pin to ground.
var DefaultOpts = Opts{Addr: 0x44}

// Measurement is one reading: temperature and relative humidity.
type Measurement = sensirion.Climate

// Dev is an open SHT3x.
type Dev struct {
	s         sensirion.Dev
	status    uint16
	serial    uint32
	hasSerial bool
}

var _ conn.Resource = &Dev{}

// New opens the SHT3x at opts.Addr. It reads the status register, whose CRC
// shows that a Sensirion chip answered, and the serial number. Chips made
// before the serial number command was documented do not acknowledge it;
// they are accepted without a serial number.
func New(bus i2c.Bus, opts *Opts) (*Dev, error) {
	if opts == nil {
		opts = &DefaultOpts
	}
	d := &Dev{s: sensirion.Dev{I2C: i2c.Dev{Bus: bus, Addr: opts.Addr}, Clock: opts.Clock}}
	ctx := context.Background()
	raw, err := d.s.Exec(ctx, sensirion.Cmd16(cmdStatus), nil, commandWait, 1)
	if err != nil {
		return nil, fmt.Errorf("sht3x: read status: %w", err)
	}
	w, err := sensirion.Words(raw)
	if err != nil {
		return nil, fmt.Errorf("sht3x: status register: %w (not an SHT3x?)", err)
	}
	d.status = w[0]

	raw, err = d.s.Exec(ctx, sensirion.Cmd16(cmdSerial), nil, commandWait, 2)
	if err != nil {
		return d, nil // an older chip: identity rests on the status CRC
	}
	if w, err = sensirion.Words(raw); err != nil {
		return nil, fmt.Errorf("sht3x: serial number: %w", err)
	}
	d.serial, d.hasSerial = uint32(w[0])<<16|uint32(w[1]), true
	return d, nil
}

// Serial returns the chip's serial number, and false when the chip predates
// the serial number command.
func (d *Dev) Serial() (uint32, bool) { return d.serial, d.hasSerial }

// Sense takes one single-shot measurement.
func (d *Dev) Sense(ctx context.Context) (Measurement, error) {
	m, err := sensirion.Read(ctx, &d.s, sensirion.Cmd16(cmdMeasureHigh), measureWait, 2, decode)
	if err != nil {
		return Measurement{}, fmt.Errorf("sht3x: measure: %w", err)
	}
	return m, nil
}

// Halt implements conn.Resource. In single-shot mode the sensor goes to sleep
// by itself after each measurement (section 4.1), so there is nothing to stop.
func (d *Dev) Halt() error { return nil }

// String implements conn.Resource.
func (d *Dev) String() string {
	if !d.hasSerial {
		return fmt.Sprintf("SHT3x on %s address %#02x", d.s.I2C.Bus, d.s.I2C.Addr)
	}
	return fmt.Sprintf("SHT3x serial %08x on %s address %#02x", d.serial, d.s.I2C.Bus, d.s.I2C.Addr)
}

// decode turns the 6 bytes of a measurement (temperature word, CRC, humidity
// word, CRC) into a Measurement, with the formulas of section 4.13:
//
//	T = -45 °C + 175 °C · S_T / (2¹⁶ - 1)    RH = 100 %RH · S_RH / (2¹⁶ - 1)
//
// Temperatures outside the specified range of -40..125 °C are errors
// (sensirion.ErrRange); humidity cannot leave 0..100 %RH by construction.
func decode(raw []byte) (Measurement, error) {
	w, err := sensirion.Decode(raw, 2)
	if err != nil {
		return Measurement{}, err
	}
	t, err := sensirion.Temperature(w[0], -40, 125)
	if err != nil {
		return Measurement{}, err
	}
	return Measurement{Temperature: t, Humidity: sensirion.Humidity(w[1])}, nil
}

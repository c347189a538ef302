// Package ads1115 drives the Texas Instruments ADS1115 16-bit analog-to-
// digital converter (I2C address 0x48 to 0x4B by the ADDR pin), following
// the "ADS111x Ultra-Small, Low-Power, I2C-Compatible, 860-SPS, 16-Bit ADCs"
// datasheet, TI SBAS444D.
//
// Each reading is a single-shot conversion of one input against ground:
// write the config register with OS = 1 (start), the input (MUX), the
// full-scale range (PGA), single-shot mode, the data rate and the comparator
// disabled; wait one conversion period; poll OS until it reads 1 (idle);
// read the conversion register (datasheet "Register Map": address pointer,
// conversion, config). The result is a two's-complement code of FSR / 2^15
// per count ("Full-Scale Range (FSR) and LSB Size"); the codes 7FFFh and
// 8000h mean the input is at or beyond full scale and are errors here, not
// values.
//
// The chip has no identity register. New writes the config register and
// reads it back, which an absent chip or most other chips at these
// addresses fail; an ADS1015 (same register map, 12 bits) passes.
package ads1115

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cityedge/cityedge/drivers/internal/wait"
	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
)

// Register addresses (address pointer register, P[1:0]).
const (
	regConversion = 0x00
	regConfig     = 0x01
)

// Config register fields.
const (
	cfgOS         = 1 << 15 // write: start a single conversion; read: 1 = idle
	cfgMuxSingle  = 4 << 12 // MUX 100b..111b: AINx against GND
	cfgSingleShot = 1 << 8
	cfgCompOff    = 0x03 // COMP_QUE 11b: comparator disabled, ALERT/RDY high-Z
)

// Gain is the programmable gain amplifier's full-scale range (PGA bits).
type Gain uint8

// Full-scale ranges. The FSR is the span of the code, not what the input may
// take: an input must stay within GND − 0.3 V and VDD + 0.3 V whatever the
// gain.
const (
	FSR6144mV Gain = 0 // ±6.144 V
	FSR4096mV Gain = 1 // ±4.096 V
	FSR2048mV Gain = 2 // ±2.048 V (the chip's reset value)
	FSR1024mV Gain = 3 // ±1.024 V
	FSR512mV  Gain = 4 // ±0.512 V
	FSR256mV  Gain = 5 // ±0.256 V (110b and 111b are ±0.256 V too)
)

var fullScale = [...]physic.ElectricPotential{
	6144 * physic.MilliVolt, 4096 * physic.MilliVolt, 2048 * physic.MilliVolt,
	1024 * physic.MilliVolt, 512 * physic.MilliVolt, 256 * physic.MilliVolt,
}

// FullScale returns the range's full-scale voltage.
func (g Gain) FullScale() physic.ElectricPotential {
	if int(g) >= len(fullScale) {
		return 0
	}
	return fullScale[g]
}

func (g Gain) String() string { return "±" + g.FullScale().String() }

// ParseGain takes a full-scale range as written in configuration:
// "6.144V", "4.096V", "2.048V", "1.024V", "0.512V" or "0.256V".
func ParseGain(s string) (Gain, error) {
	for g, fs := range fullScale {
		if s == fmt.Sprintf("%.3fV", float64(fs)/float64(physic.Volt)) {
			return Gain(g), nil
		}
	}
	return 0, fmt.Errorf("gain %q: want one of \"6.144V\", \"4.096V\", \"2.048V\", \"1.024V\", \"0.512V\", \"0.256V\" (the full-scale range)", s)
}

// Rate is the data rate (DR bits).
type Rate uint8

var samplesPerSecond = [...]int{8, 16, 32, 64, 128, 250, 475, 860}

// Data rates, in samples per second.
const (
	SPS8 Rate = iota
	SPS16
	SPS32
	SPS64
	SPS128 // the chip's reset value
	SPS250
	SPS475
	SPS860
)

// ParseRate takes a data rate in samples per second.
func ParseRate(sps int) (Rate, error) {
	for r, v := range samplesPerSecond {
		if v == sps {
			return Rate(r), nil
		}
	}
	return 0, fmt.Errorf("data rate %d: want one of 8, 16, 32, 64, 128, 250, 475, 860 (samples per second)", sps)
}

// period is one conversion at r, plus the datasheet's ±10 % data-rate
// tolerance and the wake-up from power-down.
func (r Rate) period() time.Duration {
	p := time.Second / time.Duration(samplesPerSecond[r&7])
	return p + p/10 + 50*time.Microsecond
}

// Opts configures the converter.
type Opts struct {
	Addr uint16
	// Rate trades noise for speed: slower rates average longer. 128 SPS
	// (about 8 ms per channel) is the chip's default.
	Rate Rate
	// Clock measures the chip's conversion and wait times; nil is the real
	// clock. Tests inject a fake one.
	Clock clockwork.Clock
}

// DefaultOpts is ADDR tied to GND and the chip's default data rate.
var DefaultOpts = Opts{Addr: 0x48, Rate: SPS128}

// Validate reports a rate the chip does not have.
func (o *Opts) Validate() error {
	if o.Rate > SPS860 {
		return fmt.Errorf("invalid rate %d", o.Rate)
	}
	return nil
}

// Dev is an opened ADS1115.
type Dev struct {
	c     i2c.Dev
	rate  Rate
	clock clockwork.Clock
}

var _ conn.Resource = &Dev{}

// New checks that an ADS111x answers at opts.Addr by writing the config
// register (without starting a conversion) and reading it back.
func New(bus i2c.Bus, opts *Opts) (*Dev, error) {
	if opts == nil {
		opts = &DefaultOpts
	}
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("ads1115: %w", err)
	}
	d := &Dev{c: i2c.Dev{Bus: bus, Addr: opts.Addr}, rate: opts.Rate, clock: wait.Clock(opts.Clock)}
	want := d.config(0, FSR6144mV) &^ cfgOS
	if err := d.c.Tx([]byte{regConfig, byte(want >> 8), byte(want)}, nil); err != nil {
		return nil, fmt.Errorf("ads1115: write config: %w", err)
	}
	var got [2]byte
	if err := d.c.Tx([]byte{regConfig}, got[:]); err != nil {
		return nil, fmt.Errorf("ads1115: read config: %w", err)
	}
	// OS reads back as status, not as written.
	if g := binary.BigEndian.Uint16(got[:]); g&^cfgOS != want {
		return nil, fmt.Errorf("ads1115: config register reads %#04x after writing %#04x: not an ADS1113/4/5", g, want)
	}
	return d, nil
}

func (d *Dev) config(ain int, g Gain) uint16 {
	return cfgOS | cfgMuxSingle | uint16(ain)<<12 | uint16(g)<<9 | cfgSingleShot | uint16(d.rate)<<5 | cfgCompOff
}

// Sense converts input AINx (0..3) against ground at gain g.
func (d *Dev) Sense(ctx context.Context, ain int, g Gain) (physic.ElectricPotential, error) {
	if ain < 0 || ain > 3 {
		return 0, fmt.Errorf("ads1115: input AIN%d: want 0 to 3", ain)
	}
	if g > FSR256mV {
		return 0, fmt.Errorf("ads1115: invalid gain %d", g)
	}
	cfg := d.config(ain, g)
	if err := d.c.Tx([]byte{regConfig, byte(cfg >> 8), byte(cfg)}, nil); err != nil {
		return 0, fmt.Errorf("ads1115: start conversion of AIN%d: %w", ain, err)
	}
	period := d.rate.period()
	if err := wait.Sleep(ctx, d.clock, period); err != nil {
		return 0, err
	}
	// Poll OS for up to two more periods (a chip that never finishes is
	// not there any more, or was reconfigured by someone else).
	const polls = 16
	poll := period / (polls / 2)
	var raw [2]byte
	for i := 0; ; i++ {
		if err := d.c.Tx([]byte{regConfig}, raw[:]); err != nil {
			return 0, fmt.Errorf("ads1115: read status of AIN%d: %w", ain, err)
		}
		if raw[0]&(cfgOS>>8) != 0 {
			break
		}
		if i == polls {
			return 0, fmt.Errorf("ads1115: AIN%d: conversion not done after %s", ain, period+polls*poll)
		}
		if err := wait.Sleep(ctx, d.clock, poll); err != nil {
			return 0, err
		}
	}
	if err := d.c.Tx([]byte{regConversion}, raw[:]); err != nil {
		return 0, fmt.Errorf("ads1115: read conversion of AIN%d: %w", ain, err)
	}
	v, err := decode(raw[:], g)
	if err != nil {
		return 0, fmt.Errorf("ads1115: AIN%d: %w", ain, err)
	}
	return v, nil
}

// decode converts a conversion register (big-endian two's complement) at
// gain g into a voltage.
func decode(raw []byte, g Gain) (physic.ElectricPotential, error) {
	if len(raw) != 2 {
		return 0, fmt.Errorf("decode: %d bytes, want 2", len(raw))
	}
	if g > FSR256mV {
		return 0, fmt.Errorf("decode: invalid gain %d", g)
	}
	code := int64(int16(binary.BigEndian.Uint16(raw)))
	switch code {
	case 0x7FFF:
		return 0, fmt.Errorf("input at or above +%s full scale: choose a wider gain, or check the wiring", g.FullScale())
	case -0x8000:
		return 0, fmt.Errorf("input at or below −%s full scale: check the wiring", g.FullScale())
	}
	// code × FSR / 2^15, rounded half away from zero (±0.256 V has half-nV
	// steps).
	n := code * int64(g.FullScale())
	if n < 0 {
		return physic.ElectricPotential((n - 1<<14) / (1 << 15)), nil
	}
	return physic.ElectricPotential((n + 1<<14) / (1 << 15)), nil
}

// Halt does nothing: in single-shot mode the chip powers down by itself
// after each conversion.
func (d *Dev) Halt() error { return nil }

// String implements conn.Resource.
func (d *Dev) String() string { return fmt.Sprintf("ads1115(%s %#02x)", d.c.Bus, d.c.Addr) }

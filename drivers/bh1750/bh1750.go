// Package bh1750 drives the ROHM BH1750FVI ambient light sensor (I2C address
// 0x23 with ADDR low, 0x5C with ADDR high), following the "BH1750FVI
// Technical Note", ROHM, 2009.04 Rev. B.
//
// Each reading is a one-time H-resolution measurement: power on (opcode
// 0x01), one-time H-resolution mode (0x20), wait the maximum measurement time,
// read two bytes. The chip powers itself down after a one-time measurement,
// so between readings it draws about 1 µA. The chip takes one opcode per
// write, each followed by a stop condition (p. 10, write format), so every
// opcode is its own transaction.
//
// Illuminance is count / 1.2 × 69 / MTreg lx (section "Adjust measurement
// result for influence of optical window"); the measurement time scales with
// MTreg too, from 180 ms at the default of 69 (electrical characteristics,
// H-resolution maximum). The chip has no identity register.
package bh1750

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"time"

	"github.com/cityedge/cityedge/drivers/internal/wait"
	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/i2c"
)

// Opcodes (instruction set architecture table).
const (
	opPowerDown = 0x00
	opPowerOn   = 0x01
	opOneTimeH  = 0x20
	opMTregHigh = 0x40 // | MTreg[7:5]
	opMTregLow  = 0x60 // | MTreg[4:0]
)

// MTreg limits and default (optical window section).
const (
	MTregMin     = 31
	MTregDefault = 69
	MTregMax     = 254
)

// maxTimeH is the maximum H-resolution measurement time at MTreg 69.
const maxTimeH = 180 * time.Millisecond

// Illuminance is in millilux (periph's physic has no illuminance unit).
type Illuminance int64

// Units of Illuminance.
const (
	MilliLux Illuminance = 1
	Lux      Illuminance = 1000 * MilliLux
)

func (l Illuminance) String() string {
	return strconv.FormatFloat(float64(l)/float64(Lux), 'f', -1, 64) + "lx"
}

// Opts configures the sensor.
type Opts struct {
	Addr uint16
	// MTreg sets the measurement time and sensitivity (31..254): 69 gives
	// 1 lx resolution up to 54612 lx; 31 reaches 121557 lx (direct sun); 254
	// resolves 0.23 lx for night-time readings, up to 14835 lx.
	MTreg uint8
	// Clock measures the chip's conversion and wait times; nil is the real
	// clock. Tests inject a fake one.
	Clock clockwork.Clock
}

// DefaultOpts is ADDR low and the chip's default sensitivity.
var DefaultOpts = Opts{Addr: 0x23, MTreg: MTregDefault}

// Validate reports an MTreg outside MTregMin..MTregMax.
func (o *Opts) Validate() error {
	if o.MTreg < MTregMin || o.MTreg > MTregMax {
		return fmt.Errorf("MTreg %d is outside %d..%d", o.MTreg, MTregMin, MTregMax)
	}
	return nil
}

// Dev is an opened BH1750.
type Dev struct {
	c     i2c.Dev
	mt    uint8
	clock clockwork.Clock
}

var _ conn.Resource = &Dev{}

// New powers the chip on and sets its measurement time register. A
// successful power-on only proves that something acknowledges at the
// address: the chip has no identity to check.
func New(bus i2c.Bus, opts *Opts) (*Dev, error) {
	if opts == nil {
		opts = &DefaultOpts
	}
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("bh1750: %w", err)
	}
	d := &Dev{c: i2c.Dev{Bus: bus, Addr: opts.Addr}, mt: opts.MTreg, clock: wait.Clock(opts.Clock)}
	if err := d.c.Tx([]byte{opPowerOn}, nil); err != nil {
		return nil, fmt.Errorf("bh1750: power on: %w", err)
	}
	if err := d.c.Tx([]byte{opMTregHigh | d.mt>>5}, nil); err != nil {
		return nil, fmt.Errorf("bh1750: set MTreg high bits: %w", err)
	}
	if err := d.c.Tx([]byte{opMTregLow | d.mt&0x1F}, nil); err != nil {
		return nil, fmt.Errorf("bh1750: set MTreg low bits: %w", err)
	}
	return d, nil
}

// measureTime is the maximum H-resolution measurement time at d.mt.
func (d *Dev) measureTime() time.Duration {
	return (maxTimeH*time.Duration(d.mt) + MTregDefault - 1) / MTregDefault
}

// Sense takes one measurement (180 ms at the default MTreg).
func (d *Dev) Sense(ctx context.Context) (Illuminance, error) {
	if err := d.c.Tx([]byte{opPowerOn}, nil); err != nil {
		return 0, fmt.Errorf("bh1750: power on: %w", err)
	}
	if err := d.c.Tx([]byte{opOneTimeH}, nil); err != nil {
		return 0, fmt.Errorf("bh1750: start measurement: %w", err)
	}
	if err := wait.Sleep(ctx, d.clock, d.measureTime()); err != nil {
		return 0, err
	}
	var raw [2]byte
	if err := d.c.Tx(nil, raw[:]); err != nil {
		return 0, fmt.Errorf("bh1750: read measurement: %w", err)
	}
	return decode(raw[:], d.mt)
}

// decode converts the two result bytes (high first) of an H-resolution
// measurement at MTreg mt into an illuminance.
func decode(raw []byte, mt uint8) (Illuminance, error) {
	if len(raw) != 2 {
		return 0, fmt.Errorf("bh1750: decode: %d bytes, want 2", len(raw))
	}
	if mt < MTregMin || mt > MTregMax {
		return 0, fmt.Errorf("bh1750: decode: MTreg %d is outside %d..%d", mt, MTregMin, MTregMax)
	}
	count := int64(binary.BigEndian.Uint16(raw))
	// lx = count / 1.2 × 69 / mt = count × 690 / (12 × mt)
	num, den := count*690*int64(Lux), 12*int64(mt)
	if count == 0xFFFF {
		return 0, fmt.Errorf("bh1750: saturated: more than %s (use a lower MTreg for more range)", Illuminance(num/den))
	}
	return Illuminance((num + den/2) / den), nil
}

// Halt powers the chip down (it also does so by itself after each
// measurement).
func (d *Dev) Halt() error {
	if err := d.c.Tx([]byte{opPowerDown}, nil); err != nil {
		return fmt.Errorf("bh1750: power down: %w", err)
	}
	return nil
}

// String implements conn.Resource.
func (d *Dev) String() string { return fmt.Sprintf("bh1750(%s %#02x)", d.c.Bus, d.c.Addr) }

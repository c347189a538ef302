// Package qmc5883l drives the QST QMC5883L three-axis magnetometer (I2C
// address 0x0D) as an in-ground vehicle detector, following the "QMC5883L
// 3-Axis Magnetic Sensor" datasheet, QST, revision 1.0.
//
// The chip measures the earth's field continuously; a parked car's steel
// body distorts that field by tens of microtesla at a sensor under it. The
// driver reads the raw field (Sense) and Detector turns a stream of fields
// into an occupancy decision.
//
// # The detector
//
//   - Baseline. The first LearnSamples fields are averaged into a baseline:
//     the field of the empty bay, including the earth's field, the rebar in
//     the road and the sensor's own offset. Learning assumes the bay is empty;
//     if a sample strays from the running average by more than the release
//     level, learning starts again from that sample, so a car driving over
//     the sensor while it learns does not become part of the baseline. No
//     occupancy is reported until the baseline is learned.
//   - Deviation. Each later field is compared with the baseline as the length
//     of the difference vector |B − baseline|: a car bends the field in any
//     direction, so the magnitude of the change, not of the field, is what
//     counts.
//   - Hysteresis. The bay becomes occupied when the deviation rises above
//     Threshold and empty again only when it falls below
//     Threshold × ReleaseRatio, so noise around one level cannot make the
//     state flicker.
//   - Drift. The sensor's offset and the local field drift slowly with
//     temperature and season. While the bay is clearly empty (deviation below
//     the release level) the baseline follows the field with an exponential
//     moving average of time constant DriftTau; while occupied, or in the
//     hysteresis band, it stays put, so a parked car is never learned away.
//
// A bay that holds a car when learning starts will read as occupied once the
// car leaves; learn again (a new Detector) with the bay empty. To survive a
// restart without learning again, save the detector's state
// (MarshalBinary) and restore it into the new detector (UnmarshalBinary):
// a car parked across the restart then leaves as one change to free.
package qmc5883l

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cityedge/cityedge/drivers/internal/wait"
	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
)

// Registers (datasheet section 9.1, table 13, and the register descriptions
// that follow it).
const (
	regDataX   = 0x00 // X LSB; X MSB, Y, Z follow, little-endian two's complement
	regStatus  = 0x06 // DRDY bit 0, OVL bit 1, DOR bit 2
	regCtrl1   = 0x09 // control 1: OSR[7:6] RNG[5:4] ODR[3:2] MODE[1:0]
	regCtrl2   = 0x0A // control 2: SOFT_RST bit 7, ROL_PNT bit 6, INT_ENB bit 0
	regSetRst  = 0x0B // SET/RESET period; the datasheet recommends 0x01
	regChipID  = 0x0D // chip id, reads 0xFF
	chipID     = 0xFF
	statusDRDY = 0x01
	statusOVL  = 0x02
	softReset  = 0x80
	modeCont   = 0x01
	setRstRec  = 0x01
)

// Range is the full-scale field range (RNG bits).
type Range uint8

// Field ranges and their sensitivities (datasheet, magnetic specifications:
// 12000 LSB/G at ±2 G, 3000 LSB/G at ±8 G; 1 G = 100 µT).
const (
	Range2G Range = 0
	Range8G Range = 1
)

func (r Range) lsbPerGauss() int64 {
	if r == Range8G {
		return 3000
	}
	return 12000
}

// FullScale is the largest field r measures on each axis: 200 µT at ±2 G,
// 800 µT at ±8 G.
func (r Range) FullScale() physic.MagneticFluxDensity {
	if r == Range8G {
		return 800 * physic.MicroTesla
	}
	return 200 * physic.MicroTesla
}

func (r Range) String() string {
	if r == Range8G {
		return "±8G"
	}
	return "±2G"
}

// Rate is the output data rate in continuous mode (ODR bits).
type Rate uint8

// Output data rates.
const (
	Rate10Hz  Rate = 0
	Rate50Hz  Rate = 1
	Rate100Hz Rate = 2
	Rate200Hz Rate = 3
)

// period is the time between two samples at r.
func (r Rate) period() time.Duration {
	return [...]time.Duration{100 * time.Millisecond, 20 * time.Millisecond, 10 * time.Millisecond, 5 * time.Millisecond}[r&3]
}

// Oversampling is the over-sample ratio (OSR bits): more is less noise and
// more current.
type Oversampling uint8

// Over-sample ratios.
const (
	OSR512 Oversampling = 0
	OSR256 Oversampling = 1
	OSR128 Oversampling = 2
	OSR64  Oversampling = 3
)

// Opts configures the chip.
type Opts struct {
	Addr         uint16
	Range        Range
	Rate         Rate
	Oversampling Oversampling
	// Clock measures the chip's conversion and wait times; nil is the real
	// clock. Tests inject a fake one.
	Clock clockwork.Clock
}

// DefaultOpts: ±2 G is four times the earth's field and gives 8.3 nT per
// count; 10 Hz and OSR 512 are the slowest, quietest setting, plenty for
// cars that stand for minutes.
var DefaultOpts = Opts{Addr: 0x0D, Range: Range2G, Rate: Rate10Hz, Oversampling: OSR512}

// Validate reports a range, rate or over-sample ratio the chip does not
// have.
func (o *Opts) Validate() error {
	if o.Range > Range8G || o.Rate > Rate200Hz || o.Oversampling > OSR64 {
		return fmt.Errorf("invalid options %+v", *o)
	}
	return nil
}

// Field is one measurement of the magnetic flux density on the chip's axes.
type Field struct {
	X, Y, Z physic.MagneticFluxDensity
}

func (f Field) String() string { return fmt.Sprintf("(%s, %s, %s)", f.X, f.Y, f.Z) }

// ErrOverflow is returned when the chip flags a field beyond its range.
var ErrOverflow = errors.New("qmc5883l: field beyond the measurement range")

// Dev is an opened QMC5883L.
type Dev struct {
	c     i2c.Dev
	opts  Opts
	clock clockwork.Clock
}

var _ conn.Resource = &Dev{}

// New checks the chip id, resets the chip and starts continuous measurement.
func New(bus i2c.Bus, opts *Opts) (*Dev, error) {
	if opts == nil {
		opts = &DefaultOpts
	}
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("qmc5883l: %w", err)
	}
	d := &Dev{c: i2c.Dev{Bus: bus, Addr: opts.Addr}, opts: *opts, clock: wait.Clock(opts.Clock)}
	var id [1]byte
	if err := d.c.Tx([]byte{regChipID}, id[:]); err != nil {
		return nil, fmt.Errorf("qmc5883l: read chip id: %w", err)
	}
	if id[0] != chipID {
		// 0xFF is a weak signature (an idle bus reads as 0xFF too), but a
		// chip that acknowledges and answers anything else is not ours.
		return nil, fmt.Errorf("qmc5883l: chip id %#02x, want %#02x: not a QMC5883L (an HMC5883L answers at 0x1e instead)", id[0], chipID)
	}
	// Soft reset first, so a chip re-plugged or left configured by someone
	// else starts from its register defaults; it is ready again within the
	// power-on completion time (350 µs, electrical characteristics), rounded
	// up.
	if err := d.c.Tx([]byte{regCtrl2, softReset}, nil); err != nil {
		return nil, fmt.Errorf("qmc5883l: soft reset: %w", err)
	}
	if err := wait.Sleep(context.Background(), d.clock, time.Millisecond); err != nil {
		return nil, err
	}
	if err := d.c.Tx([]byte{regSetRst, setRstRec}, nil); err != nil {
		return nil, fmt.Errorf("qmc5883l: write set/reset period: %w", err)
	}
	if err := d.c.Tx([]byte{regCtrl1, d.ctrl1()}, nil); err != nil {
		return nil, fmt.Errorf("qmc5883l: start continuous mode: %w", err)
	}
	return d, nil
}

func (d *Dev) ctrl1() byte {
	return byte(d.opts.Oversampling)<<6 | byte(d.opts.Range)<<4 | byte(d.opts.Rate)<<2 | modeCont
}

// Sense waits for the next sample (polling the data-ready bit) and returns
// it. Reading the data clears data-ready (status register), so every call
// returns a fresh sample, at most one sample period plus a poll interval later.
func (d *Dev) Sense(ctx context.Context) (Field, error) {
	period := d.opts.Rate.period()
	poll := max(period/5, time.Millisecond)
	deadline := 3 * period
	var status [1]byte
	for waited := time.Duration(0); ; waited += poll {
		if err := d.c.Tx([]byte{regStatus}, status[:]); err != nil {
			return Field{}, fmt.Errorf("qmc5883l: read status: %w", err)
		}
		if status[0]&statusDRDY != 0 {
			break
		}
		if waited >= deadline {
			return Field{}, fmt.Errorf("qmc5883l: no data ready after %s (status %#02x): chip not in continuous mode?", waited, status[0])
		}
		if err := wait.Sleep(ctx, d.clock, poll); err != nil {
			return Field{}, err
		}
	}
	// One burst of X, Y, Z and the status, so the overflow flag belongs to
	// the same sample as the data.
	var raw [7]byte
	if err := d.c.Tx([]byte{regDataX}, raw[:]); err != nil {
		return Field{}, fmt.Errorf("qmc5883l: read data: %w", err)
	}
	// Versions of the datasheet differ on whether reading the status
	// register clears OVL; keep the flag from the poll too.
	raw[6] |= status[0] & statusOVL
	return decode(raw[:], d.opts.Range)
}

// decode converts registers 0x00..0x06 (X, Y, Z little-endian, then status)
// into a Field at range r.
func decode(raw []byte, r Range) (Field, error) {
	if len(raw) != 7 {
		return Field{}, fmt.Errorf("qmc5883l: decode: %d bytes, want 7", len(raw))
	}
	if raw[6]&statusOVL != 0 {
		return Field{}, fmt.Errorf("%w %s (status %#02x); use the ±8G range if this is not a fault", ErrOverflow, r, raw[6])
	}
	lsb := r.lsbPerGauss()
	full := 2 * lsb // ±2 G is 24000 counts, ±8 G is 24000 counts too
	if r == Range8G {
		full = 8 * lsb
	}
	var v [3]physic.MagneticFluxDensity
	for i := range v {
		c := int64(int16(binary.LittleEndian.Uint16(raw[2*i:])))
		if c > full || c < -full {
			return Field{}, fmt.Errorf("%w %s: axis %c reads %d counts, beyond ±%d", ErrOverflow, r, "XYZ"[i], c, full)
		}
		v[i] = physic.MagneticFluxDensity(roundDiv(c*int64(100*physic.MicroTesla), lsb))
	}
	return Field{X: v[0], Y: v[1], Z: v[2]}, nil
}

// roundDiv divides rounding half away from zero.
func roundDiv(a, b int64) int64 {
	if a < 0 {
		return (a - b/2) / b
	}
	return (a + b/2) / b
}

// Halt puts the chip in standby (MODE = 00), where it draws a few µA.
func (d *Dev) Halt() error {
	if err := d.c.Tx([]byte{regCtrl1, 0x00}, nil); err != nil {
		return fmt.Errorf("qmc5883l: standby: %w", err)
	}
	return nil
}

// String implements conn.Resource.
func (d *Dev) String() string { return fmt.Sprintf("qmc5883l(%s %#02x)", d.c.Bus, d.c.Addr) }

// Package bme280 drives the Bosch Sensortec BME280 (temperature, humidity,
// pressure) and its humidity-less sibling BMP280 over I2C.
//
// Written from the BME280 datasheet BST-BME280-DS002 (revision 1.6, 2018):
// register map (section 5.3, 5.4), forced-mode sampling (section 3.3.3),
// integer compensation formulas (section 4.2.3, code in section 8.2) and
// measurement time (section 9.1). The BMP280 (BST-BMP280-DS001 revision 1.19)
// shares the register map, the temperature and pressure calibration words and
// formulas; it has no humidity registers (0xE1..0xE7, 0xF2, 0xFD..0xFE).
//
// The driver uses forced mode: each Sense writes the oversampling settings and
// starts one conversion, waits the datasheet's maximum measurement time, and
// reads the raw values in one burst. Between conversions the chip sleeps.
package bme280

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cityedge/cityedge/drivers/internal/wait"
	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
)

// Chip is the part found at the address.
type Chip uint8

// Parts this package drives.
const (
	BME280 Chip = iota + 1
	BMP280
)

func (c Chip) String() string {
	switch c {
	case BME280:
		return "BME280"
	case BMP280:
		return "BMP280"
	}
	return fmt.Sprintf("Chip(%d)", uint8(c))
}

// Chip ids in register 0xD0 (BME280 datasheet section 5.4.1; BMP280
// datasheet section 4.3.1: 0x56 and 0x57 are samples, 0x58 mass production).
const (
	idBME280 = 0x60
	idBMP280 = 0x58
)

// Registers (datasheet section 5.3, table 18).
const (
	regCalib1   = 0x88 // 0x88..0xA1: dig_T1..dig_P9, (0xA0 unused), dig_H1
	regID       = 0xD0
	regReset    = 0xE0
	regCalib2   = 0xE1 // 0xE1..0xE7: dig_H2..dig_H6
	regCtrlHum  = 0xF2
	regStatus   = 0xF3
	regCtrlMeas = 0xF4
	regConfig   = 0xF5
	regData     = 0xF7 // 0xF7..0xFE: press[3], temp[3], hum[2]

	resetWord   = 0xB6 // the only value that resets (section 5.4.2)
	statusNVM   = 0x01 // im_update: NVM being copied to image registers
	modeForced  = 0x01
	calib1Len   = 26
	calib2Len   = 7
	dataLenBME  = 8
	dataLenBMP  = 6
	tStartupMax = 2 * time.Millisecond // datasheet table 1, t_startup
)

// Oversampling is a field value of ctrl_meas / ctrl_hum (datasheet section
// 5.4.3, 5.4.5: osrs_x). Off skips the measurement.
type Oversampling uint8

// Oversampling settings, in register encoding.
const (
	Off Oversampling = iota
	X1
	X2
	X4
	X8
	X16
)

// Factor returns how many samples are averaged: 0, 1, 2, 4, 8 or 16.
func (o Oversampling) Factor() int {
	if o == Off || o > X16 {
		return 0
	}
	return 1 << (o - 1)
}

// Opts configures a Dev.
type Opts struct {
	Addr uint16 // 0x76 (SDO to GND) or 0x77 (SDO to VDDIO)

	// Oversampling of each quantity. Temperature cannot be Off: pressure and
	// humidity compensation need it. Humidity is ignored on a BMP280.
	Temperature, Pressure, Humidity Oversampling

	// Clock measures the chip's start-up and conversion times; nil is the
	// real clock. Tests inject a fake one here so no test sleeps for real.
	Clock clockwork.Clock
}

// DefaultOpts is the datasheet's "weather monitoring" setting (section
// 3.5.1): forced mode, 1x oversampling of everything, filter off.
var DefaultOpts = Opts{Addr: 0x76, Temperature: X1, Pressure: X1, Humidity: X1}

// Measurement is one compensated reading. Pressure and Humidity are valid only
// when HasPressure / HasHumidity are set.
type Measurement struct {
	Temperature physic.Temperature
	Pressure    physic.Pressure
	Humidity    physic.RelativeHumidity
	HasPressure bool
	HasHumidity bool
}

// Datasheet operating range (section 1, table 1): values outside are errors.
const (
	minTempCenti = -4000        // -40.00 °C
	maxTempCenti = 8500         // 85.00 °C
	minPressQ8   = 30000 * 256  // 300 hPa, Q24.8 Pa
	maxPressQ8   = 110000 * 256 // 1100 hPa
)

var (
	errNoData  = errors.New("no measurement in the data registers (reset value)")
	errRange   = errors.New("outside the datasheet operating range")
	errCalib   = errors.New("calibration data invalid")
	errRawSize = errors.New("wrong raw data length")
)

// Dev is an open BME280 or BMP280.
type Dev struct {
	mu    sync.Mutex
	d     i2c.Dev
	chip  Chip
	cal   calibration
	ctrl  []byte // the one write that starts a forced conversion
	wait  time.Duration
	clock clockwork.Clock
}

var _ conn.Resource = &Dev{}

// Validate reports oversampling settings the chip does not have:
// temperature X1..X16 (the pressure and humidity compensation need it),
// pressure and humidity Off..X16.
func (o *Opts) Validate() error {
	if o.Temperature < X1 || o.Temperature > X16 {
		return fmt.Errorf("temperature oversampling %d: must be X1..X16", o.Temperature)
	}
	if o.Pressure > X16 || o.Humidity > X16 {
		return errors.New("oversampling must be Off..X16")
	}
	return nil
}

// New opens the chip at opts.Addr on bus: it checks the chip id, soft-resets
// the chip, and reads its calibration words.
func New(bus i2c.Bus, opts *Opts) (*Dev, error) {
	if opts == nil {
		o := DefaultOpts
		opts = &o
	}
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("bme280: %w", err)
	}
	d := &Dev{d: i2c.Dev{Bus: bus, Addr: opts.Addr}, clock: wait.Clock(opts.Clock)}
	ctx := context.Background()

	var id [1]byte
	if err := d.d.Tx([]byte{regID}, id[:]); err != nil {
		return nil, fmt.Errorf("bme280: read chip id: %w", err)
	}
	switch id[0] {
	case idBME280:
		d.chip = BME280
	case 0x56, 0x57, idBMP280:
		d.chip = BMP280
	default:
		return nil, fmt.Errorf("bme280: chip id %#02x is neither a BME280 (0x60) nor a BMP280 (0x58)", id[0])
	}

	// A soft reset puts every control register at its reset value (sleep
	// mode, filter off, standby irrelevant), whatever left the chip running.
	if err := d.d.Tx([]byte{regReset, resetWord}, nil); err != nil {
		return nil, fmt.Errorf("bme280: soft reset: %w", err)
	}
	if err := wait.Sleep(ctx, d.clock, tStartupMax); err != nil {
		return nil, err
	}
	if err := d.waitNVM(ctx); err != nil {
		return nil, err
	}

	var c1 [calib1Len]byte
	if err := d.d.Tx([]byte{regCalib1}, c1[:]); err != nil {
		return nil, fmt.Errorf("bme280: read calibration 0x88..0xA1: %w", err)
	}
	var c2 []byte
	if d.chip == BME280 {
		c2 = make([]byte, calib2Len)
		if err := d.d.Tx([]byte{regCalib2}, c2); err != nil {
			return nil, fmt.Errorf("bme280: read calibration 0xE1..0xE7: %w", err)
		}
	}
	cal, err := parseCalibration(c1[:], c2)
	if err != nil {
		return nil, fmt.Errorf("bme280: %s: %w", d.chip, err)
	}
	d.cal = cal

	hum := opts.Humidity
	if d.chip == BMP280 {
		hum = Off
	}
	meas := byte(opts.Temperature)<<5 | byte(opts.Pressure)<<2 | modeForced
	if d.chip == BME280 {
		// ctrl_hum takes effect only after a write to ctrl_meas (section
		// 5.4.3): one I2C write of two address/data pairs does both, in
		// that order (section 6.2.1), and re-arms humidity after a reset.
		d.ctrl = []byte{regCtrlHum, byte(hum), regCtrlMeas, meas}
	} else {
		d.ctrl = []byte{regCtrlMeas, meas}
	}
	d.cal.pressure = opts.Pressure != Off
	d.cal.humidity = hum != Off
	d.wait = MeasureTime(opts.Temperature, opts.Pressure, hum)
	return d, nil
}

// waitNVM waits until the chip has copied its calibration NVM into the image
// registers after the reset (status bit im_update, section 5.4.4).
func (d *Dev) waitNVM(ctx context.Context) error {
	var st [1]byte
	for try := 0; ; try++ {
		if err := d.d.Tx([]byte{regStatus}, st[:]); err != nil {
			return fmt.Errorf("bme280: read status: %w", err)
		}
		if st[0]&statusNVM == 0 {
			return nil
		}
		if try == 4 {
			return fmt.Errorf("bme280: calibration NVM still copying %v after reset", tStartupMax*5)
		}
		if err := wait.Sleep(ctx, d.clock, tStartupMax); err != nil {
			return err
		}
	}
}

// Chip reports which part New found.
func (d *Dev) Chip() Chip { return d.chip }

// Sense starts one forced-mode conversion, waits for it and returns the
// compensated values. It fails, rather than guess, on a bus error, on data
// registers still at their reset value, and on values outside the datasheet's
// operating range.
func (d *Dev) Sense(ctx context.Context) (Measurement, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.d.Tx(d.ctrl, nil); err != nil {
		return Measurement{}, fmt.Errorf("bme280: start conversion: %w", err)
	}
	if err := wait.Sleep(ctx, d.clock, d.wait); err != nil {
		return Measurement{}, fmt.Errorf("bme280: wait for conversion: %w", err)
	}
	n := dataLenBMP
	if d.chip == BME280 {
		n = dataLenBME
	}
	raw := make([]byte, n)
	if err := d.d.Tx([]byte{regData}, raw); err != nil {
		return Measurement{}, fmt.Errorf("bme280: read data: %w", err)
	}
	m, err := decode(&d.cal, raw)
	if err != nil {
		return Measurement{}, fmt.Errorf("bme280: %w", err)
	}
	return m, nil
}

// Halt implements conn.Resource. In forced mode the chip returns to sleep
// mode by itself after each conversion (section 3.3.3), so there is nothing
// to stop.
func (d *Dev) Halt() error { return nil }

// String implements conn.Resource: the part found and where.
func (d *Dev) String() string {
	if d.chip == BMP280 {
		return fmt.Sprintf("BMP280 (no humidity) on %s address %#02x", d.d.Bus, d.d.Addr)
	}
	return fmt.Sprintf("%s on %s address %#02x", d.chip, d.d.Bus, d.d.Addr)
}

// MeasureTime is the maximum duration of one forced conversion with the given
// oversampling (datasheet section 9.1):
//
//	1.25 ms + 2.3 ms·T + [2.3 ms·P + 0.575 ms] + [2.3 ms·H + 0.575 ms]
//
// where a bracket counts only when that measurement is enabled.
func MeasureTime(t, p, h Oversampling) time.Duration {
	us := 1250 + 2300*t.Factor()
	if p != Off {
		us += 2300*p.Factor() + 575
	}
	if h != Off {
		us += 2300*h.Factor() + 575
	}
	return time.Duration(us) * time.Microsecond
}

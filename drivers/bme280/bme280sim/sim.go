// Package bme280sim simulates a Bosch BME280 or BMP280 at the register level
// for tests and `cityedge --simulate`, so the real bme280 driver runs against
// it. It is written from the datasheets on its own (registers, trimming
// words, inverted compensation formulas): a mistake in the driver is not
// mirrored here.
package bme280sim

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/cityedge/cityedge/drivers/sim"
	"github.com/jonboulle/clockwork"
)

// Chip is the simulated part.
type Chip uint8

// Parts the simulation can be.
const (
	BME280 Chip = iota + 1
	BMP280
)

// Registers and values (BME280 datasheet section 5.3, table 18; chip ids
// of section 5.4.1 and BMP280 section 4.3.1).
const (
	regCalib1   = 0x88 // dig_T1..dig_P9, dig_H1 at 0xA1
	regID       = 0xD0
	regReset    = 0xE0
	regCalib2   = 0xE1 // dig_H2..dig_H6
	regCtrlHum  = 0xF2
	regStatus   = 0xF3
	regCtrlMeas = 0xF4
	regConfig   = 0xF5
	regData     = 0xF7 // press[3], temp[3], hum[2]
	idBME280    = 0x60
	idBMP280    = 0x58
	resetWord   = 0xB6
	statusNVM   = 0x01 // im_update
	skipped20   = 0x80000
	skipped16   = 0x8000
)

// oversampling is an osrs_x field: 0 skips, 1..5 average 1..16 samples.
type oversampling uint8

const off oversampling = 0

func (o oversampling) factor() int {
	if o == off || o > 5 {
		return 0
	}
	return 1 << (o - 1)
}

// trim holds the simulated chip's trimming parameters, the numbers behind
// simCalib1 and simCalib2.
type trim struct {
	t1                             uint16
	t2, t3                         int16
	p1                             uint16
	p2, p3, p4, p5, p6, p7, p8, p9 int16
	h1, h3                         uint8
	h2, h4, h5                     int16
	h6                             int8
}

// simTrim: the temperature and pressure words are those of the BMP280
// datasheet's worked example (BST-BMP280-DS001 section 3.12); the humidity
// words are typical of a production BME280.
var simTrim = trim{t1: 27504, t2: 26435, t3: -1000, p1: 36477, p2: -10685, p3: 3024, p4: 2855, p5: 140, p6: -7,
	p7: 15500, p8: -14600, p9: 6000, h1: 75, h2: 362, h3: 0, h4: 313, h5: 50, h6: 30}

// simCalib1 and simCalib2 are simTrim as the chip's trimming registers hold
// it (section 5.3, table 16).
var (
	simCalib1 = calibBytes(simTrim)
	simCalib2 = []byte{0x6A, 0x01, 0x00, 0x13, 0x29, 0x03, 0x1E} // H2=362 H3=0 H4=313 H5=50 H6=30
)

func calibBytes(c trim) []byte {
	b := make([]byte, 26)
	le := binary.LittleEndian
	le.PutUint16(b[0:], c.t1)
	for i, v := range []int16{c.t2, c.t3} {
		le.PutUint16(b[2+2*i:], uint16(v))
	}
	le.PutUint16(b[6:], c.p1)
	for i, v := range []int16{c.p2, c.p3, c.p4, c.p5, c.p6, c.p7, c.p8, c.p9} {
		le.PutUint16(b[8+2*i:], uint16(v))
	}
	b[25] = c.h1
	return b
}

// Trimming returns the simulated chip's trimming registers as a driver reads
// them: 0x88..0xA1 and 0xE1..0xE7 (humidity, BME280 only).
func Trimming() (calib1, calib2 []byte) {
	return append([]byte(nil), simCalib1...), append([]byte(nil), simCalib2...)
}

// Sim is a simulated BME280 or BMP280 for `cityedge --simulate` and tests. It
// holds the real register map: chip id, calibration words, control
// registers and data registers. A forced-mode write to ctrl_meas samples the
// World and computes the raw ADC values by inverting the datasheet's
// compensation formulas (section 8.1) with the simulated calibration; the
// results appear in the data registers after the typical measurement time
// (section 9.1), as on the real chip, so a driver that reads too early gets
// the previous values.
type Sim struct {
	mu    sync.Mutex
	chip  Chip
	world *sim.World
	now   func() time.Time // the clock's Now
	cal   trim

	regs     [256]byte
	ptr      byte
	busy     bool
	readyAt  time.Time
	pending  [8]byte
	nvmUntil time.Time
	measured sim.Weather
}

var _ sim.Chip = (*Sim)(nil)

// NewSim returns a simulated chip measuring world. chip is BME280 or BMP280.
func NewSim(world *sim.World, chip Chip) *Sim {
	s := &Sim{chip: chip, world: world, now: time.Now}
	copy(s.regs[regCalib1:], simCalib1)
	if chip == BME280 {
		s.regs[regID] = idBME280
		copy(s.regs[regCalib2:], simCalib2)
	} else {
		s.regs[regID] = idBMP280
	}
	s.cal = simTrim
	s.reset()
	return s
}

// Measured returns the weather the last conversion encoded.
func (s *Sim) Measured() sim.Weather {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.measured
}

func (s *Sim) reset() {
	s.regs[regCtrlHum], s.regs[regCtrlMeas], s.regs[regConfig] = 0, 0, 0
	copy(s.regs[regData:], []byte{0x80, 0, 0, 0x80, 0, 0, 0x80, 0})
	s.busy = false
	s.nvmUntil = s.now().Add(time.Millisecond)
}

// SetClock makes the simulation read its time from c, such as a test's fake
// clock shared with the driver; the default is the real clock. Call it
// before the first transaction.
func (s *Sim) SetClock(c clockwork.Clock) { s.now = c.Now }

// Tx implements sim.Chip with the I2C protocol of datasheet section 6.2: a
// one-byte write sets the register pointer and a read continues from it,
// auto-incrementing; a longer write is a list of register/value pairs.
func (s *Sim) Tx(w, r []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.busy && !now.Before(s.readyAt) {
		copy(s.regs[regData:], s.pending[:])
		s.regs[regCtrlMeas] &^= 0x03 // back to sleep mode
		s.busy = false
	}
	switch {
	case len(w) == 1:
		s.ptr = w[0]
	case len(w) > 1:
		if len(w)%2 != 0 || len(r) != 0 {
			return fmt.Errorf("bme280 sim: write of %d bytes is not register/value pairs: %w", len(w), sim.ErrNACK)
		}
		for i := 0; i < len(w); i += 2 {
			if err := s.write(now, w[i], w[i+1]); err != nil {
				return err
			}
		}
	}
	for i := range r {
		r[i] = s.read(now, s.ptr)
		s.ptr++
	}
	return nil
}

func (s *Sim) read(now time.Time, reg byte) byte {
	if reg == regStatus {
		var st byte
		if s.busy {
			st |= 0x08
		}
		if now.Before(s.nvmUntil) {
			st |= statusNVM
		}
		return st
	}
	return s.regs[reg]
}

func (s *Sim) write(now time.Time, reg, v byte) error {
	switch reg {
	case regReset:
		if v != resetWord {
			return fmt.Errorf("bme280 sim: reset register takes only 0xB6, got %#02x", v)
		}
		s.reset()
	case regCtrlHum:
		if s.chip != BME280 {
			return fmt.Errorf("bme280 sim: a BMP280 has no ctrl_hum register: %w", sim.ErrNACK)
		}
		s.regs[reg] = v & 0x07
	case regConfig:
		s.regs[reg] = v
	case regCtrlMeas:
		s.regs[reg] = v
		switch v & 0x03 {
		case 0x01, 0x02:
			s.convert(now)
		case 0x03:
			return fmt.Errorf("bme280 sim: normal mode is not simulated (the driver uses forced mode)")
		}
	default:
		return fmt.Errorf("bme280 sim: register %#02x is read-only", reg)
	}
	return nil
}

// convert starts a forced conversion of the weather at now.
func (s *Sim) convert(now time.Time) {
	osT := oversampling(s.regs[regCtrlMeas] >> 5)
	osP := oversampling(s.regs[regCtrlMeas] >> 2 & 0x07)
	osH := oversampling(s.regs[regCtrlHum] & 0x07)
	if s.chip != BME280 {
		osH = off
	}
	wx := s.world.At(now)
	s.measured = wx

	adcT, adcP, adcH := int32(skipped20), int32(skipped20), int32(skipped16)
	tFine := wx.TempC * 5120 // float formula: T = t_fine / 5120
	if osT != off {
		adcT = s.invertT(tFine)
	}
	if osP != off {
		adcP = s.invertP(tFine, wx.PressurePa)
	}
	if osH != off {
		adcH = s.invertH(tFine, wx.RH)
	}
	s.pending = [8]byte{
		byte(adcP >> 12), byte(adcP >> 4), byte(adcP<<4) & 0xF0,
		byte(adcT >> 12), byte(adcT >> 4), byte(adcT<<4) & 0xF0,
		byte(adcH >> 8), byte(adcH),
	}
	if s.chip != BME280 {
		s.pending[6], s.pending[7] = s.regs[0xFD], s.regs[0xFE]
	}
	s.busy = true
	s.readyAt = now.Add(typicalMeasureTime(osT, osP, osH))
}

// typicalMeasureTime is t_measure,typ of section 9.1, in which the real chip
// usually finishes; the driver waits for the maximum.
func typicalMeasureTime(t, p, h oversampling) time.Duration {
	us := 1000 + 2000*t.factor()
	if p != off {
		us += 2000*p.factor() + 500
	}
	if h != off {
		us += 2000*h.factor() + 500
	}
	return time.Duration(us) * time.Microsecond
}

// invertT solves the floating-point temperature formula of section 8.1,
//
//	t_fine = (adc/16384 - T1/1024)·T2 + (adc/131072 - T1/8192)²·T3,
//
// for adc. With x = adc/131072 - T1/8192 it is T3·x² + 8·T2·x - t_fine = 0.
func (s *Sim) invertT(tFine float64) int32 {
	t1, t2, t3 := float64(s.cal.t1), float64(s.cal.t2), float64(s.cal.t3)
	var x float64
	if t3 == 0 {
		x = tFine / (8 * t2)
	} else {
		// The root that tends to t_fine/(8·T2) as T3 → 0, in the form that
		// does not cancel.
		x = 2 * tFine / (8*t2 + math.Copysign(math.Sqrt(64*t2*t2+4*t3*tFine), t2))
	}
	return clampADC((x+t1/8192)*131072, 1<<20-1)
}

// invertP solves the floating-point pressure formula of section 8.1 for adc:
// first the final quadratic correction p + (P9·p²/2³¹ + P8·p/2¹⁵ + P7)/16 for
// the intermediate p, then the linear step that maps adc to it.
func (s *Sim) invertP(tFine, pa float64) int32 {
	c := &s.cal
	var1 := tFine/2 - 64000
	var2 := var1 * var1 * float64(c.p6) / 32768
	var2 += var1 * float64(c.p5) * 2
	var2 = var2/4 + float64(c.p4)*65536
	var1 = (float64(c.p3)*var1*var1/524288 + float64(c.p2)*var1) / 524288
	var1 = (1 + var1/32768) * float64(c.p1)

	a := float64(c.p9) / 2147483648 / 16
	b := 1 + float64(c.p8)/32768/16
	k := float64(c.p7)/16 - pa
	var p float64
	if a == 0 {
		p = -k / b
	} else {
		p = 2 * -k / (b + math.Sqrt(b*b-4*a*k))
	}
	adc := 1048576 - (p*var1/6250 + var2/4096)
	return clampADC(adc, 1<<20-1)
}

// invertH solves the floating-point humidity formula of section 8.1 for adc:
// h = y·(1 - H1·y/524288) gives y, and y is linear in adc.
func (s *Sim) invertH(tFine, rh float64) int32 {
	c := &s.cal
	a := float64(c.h1) / 524288
	var y float64
	if a == 0 {
		y = rh
	} else {
		y = (1 - math.Sqrt(1-4*a*rh)) / (2 * a)
	}
	v := tFine - 76800
	scale := float64(c.h2) / 65536 * (1 + float64(c.h6)/67108864*v*(1+float64(c.h3)/67108864*v))
	adc := y/scale + float64(c.h4)*64 + float64(c.h5)/16384*v
	return clampADC(adc, 1<<16-1)
}

func clampADC(v float64, hi int32) int32 {
	if math.IsNaN(v) || v < 0 {
		return 0
	}
	if v > float64(hi) {
		return hi
	}
	return int32(math.Round(v))
}

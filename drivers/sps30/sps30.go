// Package sps30 drives the Sensirion SPS30 optical particulate matter sensor
// over I2C.
//
// Written from the datasheet "SPS30 Particulate Matter Sensor for Air Quality
// Monitoring and Control" (Sensirion, version 1.0, March 2020), section 6
// "Operation and Communication through the I2C Interface": the command set
// with its execution times, the CRC-8 after every 16-bit word, the
// big-endian IEEE 754 float output format (start measurement argument 0x03),
// the data-ready flag, the auto-cleaning interval and the device information
// commands (product type "00080000", serial number).
//
// New resets the sensor (whatever mode it was left in), checks its product
// type and serial number, sets the fan auto-cleaning interval when it differs
// and starts measurement; the sensor then measures every second. Sense waits
// for the data-ready flag and reads the values. Halt stops measurement (and
// the fan).
package sps30

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/cityedge/cityedge/drivers/sensirion"
	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/i2c"
)

// Commands (pointer addresses).
const (
	cmdStart        = 0x0010
	cmdStop         = 0x0104
	cmdDataReady    = 0x0202
	cmdReadValues   = 0x0300
	cmdFanCleaning  = 0x5607
	cmdAutoClean    = 0x8004
	cmdProductType  = 0xD002
	cmdSerial       = 0xD033
	cmdVersion      = 0xD100
	cmdReset        = 0xD304
	formatFloat     = 0x0300 // start measurement argument: IEEE 754 floats
	productTypeWant = "00080000"
)

// Execution times from the datasheet's command table.
const (
	resetWait     = 100 * time.Millisecond
	startStopWait = 20 * time.Millisecond
	intervalRead  = 5 * time.Millisecond
	intervalWrite = 20 * time.Millisecond
)

// The sensor measures once per second. Sense polls the data-ready flag at a
// tenth of that and gives up after three intervals.
const (
	measureInterval = time.Second
	pollInterval    = 100 * time.Millisecond
	readyTimeout    = 3 * time.Second
)

// DefaultCleaningInterval is the sensor's factory auto-cleaning interval:
// 604800 s, one week.
const DefaultCleaningInterval = 168 * time.Hour

// MaxMass is the top of the mass concentration range, µg/m³.
const MaxMass = 1000

// Opts configures a Dev.
type Opts struct {
	Addr uint16 // always 0x69

	// CleaningInterval is the fan auto-cleaning interval, in whole
	// seconds; 0 disables automatic cleaning.
	CleaningInterval time.Duration

	// Clock measures the chip's execution times; nil is the real clock.
	// Tests inject a fake one.
	Clock clockwork.Clock
}

// DefaultOpts are the sensor's own defaults.
var DefaultOpts = Opts{Addr: 0x69, CleaningInterval: DefaultCleaningInterval}

// Validate reports a cleaning interval the sensor cannot hold: it takes
// whole seconds, up to 2³²-1.
func (o *Opts) Validate() error {
	if d := o.CleaningInterval; d < 0 || d%time.Second != 0 || d/time.Second > math.MaxUint32 {
		return fmt.Errorf("cleaning interval %v: want whole seconds from 0 (off) to %v", d, time.Duration(math.MaxUint32)*time.Second)
	}
	return nil
}

// Measurement is one set of measured values, as floats the way the sensor
// sends them. Mass concentrations are cumulative: PM2.5 includes PM1.0.
type Measurement struct {
	MassPM1, MassPM2_5, MassPM4, MassPM10                      float32 // µg/m³
	NumberPM0_5, NumberPM1, NumberPM2_5, NumberPM4, NumberPM10 float32 // #/cm³
	TypicalSize                                                float32 // µm
}

// Dev is an open SPS30 in measurement mode.
type Dev struct {
	mu       sync.Mutex
	s        sensirion.Dev
	serial   string
	interval time.Duration
}

var _ conn.Resource = &Dev{}

// New resets the sensor, checks that it is an SPS30, applies the cleaning
// interval and starts measurement in float format.
func New(bus i2c.Bus, opts *Opts) (*Dev, error) {
	if opts == nil {
		opts = &DefaultOpts
	}
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("sps30: %w", err)
	}
	secs := opts.CleaningInterval / time.Second
	d := &Dev{s: sensirion.Dev{I2C: i2c.Dev{Bus: bus, Addr: opts.Addr}, Clock: opts.Clock}, interval: opts.CleaningInterval}
	ctx := context.Background()

	// A reset brings the sensor to idle mode from idle or measurement mode
	// (left measuring by a crashed agent or kept powered over a re-plug),
	// where the other commands below are accepted.
	if _, err := d.s.Exec(ctx, sensirion.Cmd16(cmdReset), nil, resetWait, 0); err != nil {
		return nil, fmt.Errorf("sps30: device reset: %w", err)
	}
	raw, err := d.s.Exec(ctx, sensirion.Cmd16(cmdProductType), nil, 0, 4)
	if err != nil {
		return nil, fmt.Errorf("sps30: read product type: %w", err)
	}
	pt, err := decodeString(raw)
	if err != nil {
		return nil, fmt.Errorf("sps30: product type: %w (not an SPS30?)", err)
	}
	if pt != productTypeWant {
		return nil, fmt.Errorf("sps30: product type %q is not an SPS30 (%q)", pt, productTypeWant)
	}
	raw, err = d.s.Exec(ctx, sensirion.Cmd16(cmdSerial), nil, 0, 16)
	if err != nil {
		return nil, fmt.Errorf("sps30: read serial number: %w", err)
	}
	if d.serial, err = decodeString(raw); err != nil {
		return nil, fmt.Errorf("sps30: serial number: %w", err)
	}

	// The interval lives in the sensor's flash: write it only when it
	// differs, to spare write cycles.
	w, err := d.s.ReadWords(ctx, sensirion.Cmd16(cmdAutoClean), intervalRead, 2)
	if err != nil {
		return nil, fmt.Errorf("sps30: read auto cleaning interval: %w", err)
	}
	if cur := uint32(w[0])<<16 | uint32(w[1]); cur != uint32(secs) {
		args := []uint16{uint16(secs >> 16), uint16(secs)}
		if _, err := d.s.Exec(ctx, sensirion.Cmd16(cmdAutoClean), args, intervalWrite, 0); err != nil {
			return nil, fmt.Errorf("sps30: write auto cleaning interval: %w", err)
		}
	}
	if _, err := d.s.Exec(ctx, sensirion.Cmd16(cmdStart), []uint16{formatFloat}, startStopWait, 0); err != nil {
		return nil, fmt.Errorf("sps30: start measurement: %w", err)
	}
	return d, nil
}

// Serial returns the sensor's serial number.
func (d *Dev) Serial() string { return d.serial }

// Sense waits for the next measurement (the sensor makes one per second) and
// reads it.
func (d *Dev) Sense(ctx context.Context) (Measurement, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.s.WaitReady(ctx, sensirion.Cmd16(cmdDataReady), 0, pollInterval, readyTimeout,
		func(w uint16) bool { return w == 1 }); err != nil {
		return Measurement{}, fmt.Errorf("sps30: read data-ready flag: %w (is measurement running?)", err)
	}
	m, err := sensirion.Read(ctx, &d.s, sensirion.Cmd16(cmdReadValues), 0, 20, decode)
	if err != nil {
		return Measurement{}, fmt.Errorf("sps30: read measured values: %w", err)
	}
	return m, nil
}

// Halt stops measurement: the fan and laser switch off.
func (d *Dev) Halt() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.s.Exec(context.Background(), sensirion.Cmd16(cmdStop), nil, startStopWait, 0); err != nil {
		return fmt.Errorf("sps30: stop measurement: %w", err)
	}
	return nil
}

// String implements conn.Resource.
func (d *Dev) String() string {
	return fmt.Sprintf("SPS30 serial %s on %s address %#02x", d.serial, d.s.I2C.Bus, d.s.I2C.Addr)
}

// decode turns the 60 bytes of "read measured values" in float format (ten
// big-endian IEEE 754 floats, each as two words with their CRCs) into a
// Measurement. A value that is not a number, negative, or a mass
// concentration above the 0..1000 µg/m³ range is an error (sensirion.ErrRange).
func decode(raw []byte) (Measurement, error) {
	w, err := sensirion.Decode(raw, 20)
	if err != nil {
		return Measurement{}, err
	}
	var f [10]float32
	for i := range f {
		f[i] = math.Float32frombits(uint32(w[2*i])<<16 | uint32(w[2*i+1]))
		if v := float64(f[i]); math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return Measurement{}, fmt.Errorf("value %d is %v: %w", i, v, sensirion.ErrRange)
		}
	}
	for i, name := range []string{"PM1.0", "PM2.5", "PM4.0", "PM10"} {
		if f[i] > MaxMass {
			return Measurement{}, fmt.Errorf("%s mass concentration %.1f µg/m³ %w (0..%d µg/m³)", name, f[i], sensirion.ErrRange, MaxMass)
		}
	}
	return Measurement{
		MassPM1: f[0], MassPM2_5: f[1], MassPM4: f[2], MassPM10: f[3],
		NumberPM0_5: f[4], NumberPM1: f[5], NumberPM2_5: f[6], NumberPM4: f[7], NumberPM10: f[8],
		TypicalSize: f[9],
	}, nil
}

// decodeString turns CRC-framed ASCII (product type, serial number) into a
// string, ending at the first NUL.
func decodeString(raw []byte) (string, error) {
	w, err := sensirion.Words(raw)
	if err != nil {
		return "", err
	}
	b := make([]byte, 0, 2*len(w))
	for _, v := range w {
		b = binary.BigEndian.AppendUint16(b, v)
	}
	if i := strings.IndexByte(string(b), 0); i >= 0 {
		b = b[:i]
	}
	for _, c := range b {
		if c < 0x20 || c > 0x7E {
			return "", fmt.Errorf("not printable ASCII: %q", b)
		}
	}
	return string(b), nil
}

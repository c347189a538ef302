// Package mb1242 drives the MaxBotix I2CXL-MaxSonar-EZ ultrasonic rangers
// (MB1202, MB1212, MB1222, MB1232, MB1242; default I2C address 0x70) as
// overhead vehicle detectors, following the "I2CXL-MaxSonar-EZ Series"
// datasheet, MaxBotix PD11848k.
//
// The protocol (datasheet page 3, command table) has two operations: writing
// the range command 81 (0x51) starts one reading, and reading two bytes
// (high, low) returns the distance of the last reading in centimetres. While
// it ranges the sensor ignores the bus (pin 2 is high and the address is not
// acknowledged); a reading is ready about 80 ms after the command, and
// MaxBotix recommends 100 ms between readings so that echoes of the previous
// ping have died away. Ranges are reported from 20 cm (25 cm on some models;
// closer objects read as the minimum) to 765 cm.
//
// The sensor has no identity register, so New can only check that something
// at the address takes a range command and answers with a plausible
// distance.
package mb1242

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/cityedge/cityedge/drivers/internal/wait"
	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
)

const (
	cmdRange = 0x51
	// rangeWait is the time from the range command to the read: the
	// datasheet's ~80 ms reading time, with the recommended 100 ms spacing.
	rangeWait  = 100 * time.Millisecond
	minCM      = 20
	centimetre = 10 * physic.MilliMetre
	maxCM      = 765
)

// Opts configures the sensor.
type Opts struct {
	Addr uint16
	// Clock measures the chip's conversion and wait times; nil is the real
	// clock. Tests inject a fake one.
	Clock clockwork.Clock
}

// DefaultOpts is the factory address (224 in the datasheet's 8-bit
// notation).
var DefaultOpts = Opts{Addr: 0x70}

// Dev is an opened ranger.
type Dev struct {
	c     i2c.Dev
	clock clockwork.Clock

	mu      sync.Mutex
	lastCmd time.Time // when the last range command went out
}

var _ conn.Resource = &Dev{}

// New checks that a ranger answers at opts.Addr by taking one reading (about
// 100 ms).
func New(bus i2c.Bus, opts *Opts) (*Dev, error) {
	if opts == nil {
		opts = &DefaultOpts
	}
	d := &Dev{c: i2c.Dev{Bus: bus, Addr: opts.Addr}, clock: wait.Clock(opts.Clock)}
	if _, err := d.Sense(context.Background()); err != nil {
		return nil, fmt.Errorf("%w (the I2CXL-MaxSonar has no identity register: this first reading is the only check)", err)
	}
	return d, nil
}

// Sense takes one reading: range command, wait, read. Calls closer together
// than 100 ms wait for the previous ping's echoes to fade first.
func (d *Dev) Sense(ctx context.Context) (physic.Distance, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.lastCmd.IsZero() {
		if left := rangeWait - d.clock.Now().Sub(d.lastCmd); left > 0 {
			if err := wait.Sleep(ctx, d.clock, left); err != nil {
				return 0, err
			}
		}
	}
	if err := d.c.Tx([]byte{cmdRange}, nil); err != nil {
		return 0, fmt.Errorf("mb1242: range command: %w", err)
	}
	d.lastCmd = d.clock.Now()
	if err := wait.Sleep(ctx, d.clock, rangeWait); err != nil {
		return 0, err
	}
	var raw [2]byte
	if err := d.c.Tx(nil, raw[:]); err != nil {
		return 0, fmt.Errorf("mb1242: read range: %w", err)
	}
	return decode(raw[:])
}

// decode converts the two range bytes (high first) into a distance.
func decode(raw []byte) (physic.Distance, error) {
	if len(raw) != 2 {
		return 0, fmt.Errorf("mb1242: decode: %d bytes, want 2", len(raw))
	}
	cm := binary.BigEndian.Uint16(raw)
	if cm < minCM || cm > maxCM {
		return 0, fmt.Errorf("mb1242: range %d cm is outside the sensor's %d to %d cm: not a MaxSonar, or no reading taken", cm, minCM, maxCM)
	}
	return physic.Distance(cm) * centimetre, nil
}

// Halt does nothing: the sensor only pings when commanded and idles at a few
// milliamperes otherwise.
func (d *Dev) Halt() error { return nil }

// String implements conn.Resource.
func (d *Dev) String() string { return fmt.Sprintf("mb1242(%s %#02x)", d.c.Bus, d.c.Addr) }

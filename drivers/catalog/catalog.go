// Package catalog is the table of sensor drivers the agent knows by their
// config name ("bme280", "gpio-presence", ...). Each entry says how the sensor
// is attached (I2C address or GPIO pin), which options its [[sensors]] table
// takes, how to open it as a drivers.Sensor, and how to simulate it for
// `cityedge --simulate` at the register or line level so the real driver runs.
//
// The catalog is a plain list, all (one entry per driver, each in the file
// named after it); the chip packages themselves know nothing of
// configuration or of each other. drivers/README.md says how to add one.
package catalog

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/sim"
	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/i2c"
)

// Kind says how a sensor is attached.
type Kind int

// Attachment kinds.
const (
	I2C Kind = iota + 1
	GPIO
)

var kindNames = map[Kind]string{I2C: "i2c", GPIO: "gpio"}

func (k Kind) String() string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Target is where one configured sensor is attached.
type Target struct {
	Sensor  string // the configured sensor name, for messages
	Bus     i2c.Bus
	BusName string // as configured ("1", "" for the first bus)
	Addr    uint16
	Pin     gpio.PinIn
	// Clock is what the sensor's waits and time stamps run on (the
	// drivers' Opts.Clock); nil is the real clock.
	Clock clockwork.Clock
}

// Where describes t for error messages: "bus 1 address 0x76" or "pin GPIO17".
func (t Target) Where() string {
	if t.Pin != nil {
		return "pin " + t.Pin.Name()
	}
	name := t.BusName
	if name == "" && t.Bus != nil {
		name = t.Bus.String()
	}
	return fmt.Sprintf("bus %s address %#02x", name, t.Addr)
}

// SimSpec is what a simulation of one sensor is built from.
type SimSpec struct {
	Sensor string
	Addr   uint16
	World  *sim.World // the shared street environment
	Bay    *sim.Bay   // this sensor's own parking bay (parking detectors)
	Seed   uint64     // per-sensor noise seed
}

// Driver is one entry of the catalog.
type Driver struct {
	Name  string
	Kind  Kind
	Chips string   // human description, e.g. "Bosch BME280/BMP280"
	Addrs []uint16 // addresses the chip can have, the default first (I2C)

	// Options returns a pointer to a fresh options struct holding the
	// defaults, or nil when the driver takes none. The config decoder fills
	// it strictly from the sensor's table using `toml` tags; if it has a
	// Validate() error method, that is called after decoding.
	Options func() any

	// Open opens the sensor at t with the decoded options (the value Options
	// returned). It verifies the chip's identity and returns an error naming
	// t.Where() and what it found when the chip is not the configured one.
	Open func(t Target, opts any) (drivers.Sensor, error)

	// SimChip returns a simulated chip for an I2C driver (nil for GPIO).
	SimChip func(s SimSpec, opts any) sim.Chip
	// SimPin returns a simulated pin for a GPIO driver and keeps it moving
	// until ctx is done (nil for I2C).
	SimPin func(ctx context.Context, s SimSpec, opts any) gpio.PinIn
}

// all is the catalog: every driver the agent knows, one entry each.
var all = []Driver{
	ads1115Driver,
	bh1750Driver,
	bme280Driver,
	gpiopresenceDriver,
	mb1242Driver,
	qmc5883lDriver,
	scd4xDriver,
	sht3xDriver,
	sht4xDriver,
	sps30Driver,
}

// Lookup returns the driver named name.
func Lookup(name string) (Driver, bool) {
	for _, d := range all {
		if d.Name == name {
			return d, true
		}
	}
	return Driver{}, false
}

// Names returns the driver names, sorted.
func Names() []string {
	out := make([]string, 0, len(all))
	for _, d := range all {
		out = append(out, d.Name)
	}
	sort.Strings(out)
	return out
}

// StateKeeper is a Sensor with learned state worth keeping across a restart
// (the qmc5883l's empty-bay baseline). The agent saves State where it keeps
// its own state and hands it back through Restore right after Open, before
// the first Read. State fails while there is nothing learned yet; Restore
// refuses damaged or foreign bytes with an error to log, leaving the sensor
// to learn afresh.
type StateKeeper interface {
	drivers.Sensor
	State() ([]byte, error)
	Restore(state []byte) error
}

// Duration is a time.Duration written as a Go duration string in TOML
// ("200ms", "10s").
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration (use e.g. \"200ms\", \"10s\", \"5m\")", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

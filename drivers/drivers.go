// Package drivers holds what every sensor driver shares with the agent: the
// Value and Reading types a driver reports, the quantity and unit names of the
// wire contract, and the Sensor interface the sampler schedules.
//
// Each chip lives in its own subpackage (drivers/bme280, drivers/sht3x, ...)
// written from the chip's datasheet on top of periph.io/x/conn/v3. Those
// packages speak integer physic units; drivers/catalog adapts them to Sensor
// and turns their measurements into Values in SenML units.
package drivers

import (
	"context"
	"math"
	"time"
)

// Quantity names. They are part of the wire contract: a SenML record's name is
// <agent id>/<sensor name>/<quantity>. Never rename one; add new ones.
const (
	Occupied    = "occupied"
	Distance    = "distance"
	X           = "x"
	Y           = "y"
	Z           = "z"
	Temperature = "temperature"
	Humidity    = "humidity"
	Pressure    = "pressure"
	CO2         = "co2"
	PM1         = "pm1"
	PM2_5       = "pm2_5"
	PM4         = "pm4"
	PM10        = "pm10"
	Illuminance = "illuminance"
)

// SenML units (RFC 8428 section 12.1 and the SenML units registry).
const (
	UnitCelsius   = "Cel"
	UnitPercentRH = "%RH"
	UnitPascal    = "Pa"
	UnitMetre     = "m"
	UnitTesla     = "T"
	UnitPPM       = "ppm"
	UnitUgM3      = "ug/m3"
	UnitLux       = "lx"
	UnitVolt      = "V"
	UnitDecibel   = "dB"
	UnitCount     = "count" // a number of things (RFC 8798): the agent's drop counters
)

// Value is one measured quantity: a number with its SenML unit, or a boolean
// (occupancy) when IsBool is set. Float32 says the number came from a
// float32 source (the SPS30's IEEE 754 words): it is stored and sent at
// float32 precision, in its shortest form, without float64 noise digits.
type Value struct {
	Quantity string
	Unit     string
	Num      float64
	Bool     bool
	IsBool   bool
	Float32  bool
}

// Number returns a numeric Value.
func Number(quantity, unit string, v float64) Value {
	return Value{Quantity: quantity, Unit: unit, Num: v}
}

// NumberAt returns a numeric Value rounded to the given number of decimal
// places: the resolution the chip's datasheet gives, so that a conversion
// through binary fractions (a BME280's pressure in 1/256 Pa) is sent as
// 101322.55, not 101322.5546875.
func NumberAt(quantity, unit string, v float64, decimals int) Value {
	p := math.Pow10(decimals)
	if r := math.Round(v*p) / p; !math.IsInf(r, 0) && !math.IsNaN(r) {
		v = r
	}
	return Value{Quantity: quantity, Unit: unit, Num: v}
}

// Number32 returns a numeric Value from a float32 source, sent at float32
// precision.
func Number32(quantity, unit string, v float32) Value {
	return Value{Quantity: quantity, Unit: unit, Num: float64(v), Float32: true}
}

// Flag returns a boolean Value (SenML "vb").
func Flag(quantity string, b bool) Value {
	return Value{Quantity: quantity, Bool: b, IsBool: true}
}

// Reading is what one sensor measured at one instant.
type Reading struct {
	Sensor string
	Time   time.Time
	Values []Value
}

// Occupancy reports whether r carries an occupancy value; such readings are
// sent at once and dropped last when the buffer is full.
func (r Reading) Occupancy() bool {
	for _, v := range r.Values {
		if v.Quantity == Occupied {
			return true
		}
	}
	return false
}

// Sensor is an opened sensor that the sampler reads on its schedule.
//
// Read takes one measurement; an error means no reading (a value is never
// invented). Read must honour ctx for any waiting it does.
type Sensor interface {
	Read(ctx context.Context) ([]Value, error)
	// Halt puts the chip into an inert state; the sensor is not used after.
	Halt() error
	String() string
}

// Watcher is a Sensor that also reports changes as they happen (edge-driven
// presence detectors). Watch calls emit with the current state once at start
// and after every debounced change, until ctx is done or the pin fails.
type Watcher interface {
	Sensor
	Watch(ctx context.Context, emit func([]Value)) error
}

// Sleep waits d, or until ctx is done. It is the default wait for a chip's
// conversion time in every driver; tests inject a fake clock instead.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

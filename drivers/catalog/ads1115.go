package catalog

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/ads1115"
	"github.com/cityedge/cityedge/drivers/ads1115/ads1115sim"
	"github.com/cityedge/cityedge/drivers/sim"
	"periph.io/x/conn/v3/physic"
)

// ads1115Driver is the catalog entry of driver "ads1115".
var ads1115Driver = Driver{
	Name:    "ads1115",
	Kind:    I2C,
	Chips:   "TI ADS1115 16-bit ADC with per-channel linear maps (noise meters, gas cells, 0–10 V/4–20 mA transmitters)",
	Addrs:   []uint16{0x48, 0x49, 0x4A, 0x4B},
	Options: func() any { return &adcOpts{DataRate: 128} },
	Open:    openADS1115,
	SimChip: simADS1115,
}

// adcOpts are the options of an ads1115 sensor. Unlike every other driver
// it cannot work without options: nothing says what its inputs measure.
type adcOpts struct {
	// DataRate in samples per second: 8, 16, 32, 64, 128 (default), 250,
	// 475 or 860. Slower is quieter.
	DataRate int `toml:"data_rate"`
	// Channels maps inputs to quantities; at least one is required.
	Channels []adcChannel `toml:"channels"`
}

// adcChannel maps one input's voltage linearly to a quantity:
// from[0] V → to[0], from[1] V → to[1].
type adcChannel struct {
	Channel  *int      `toml:"channel"`  // AIN0..AIN3 against GND; required
	Gain     string    `toml:"gain"`     // full-scale range; default "6.144V"
	Quantity string    `toml:"quantity"` // e.g. "noise"
	Unit     string    `toml:"unit"`     // SenML unit, e.g. "dB"
	From     []float64 `toml:"from"`     // two voltages
	To       []float64 `toml:"to"`       // the two values they stand for
}

var (
	quantityName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)
	unitName     = regexp.MustCompile(`^[A-Za-z0-9%/._-]{1,16}$`)
)

// adcTolerance is how far (as a fraction of the from span) a voltage may lie
// outside the configured from range and still be mapped: transmitters
// overshoot their nominal span a little, while a broken wire or a dead
// transmitter (a "live zero" of 0.4 V reading 0 V) goes far outside.
const adcTolerance = 0.02

// Validate checks the options, naming the offending key.
func (o *adcOpts) Validate() error {
	if _, err := ads1115.ParseRate(o.DataRate); err != nil {
		return fmt.Errorf("data_rate = %d: %v", o.DataRate, err)
	}
	if len(o.Channels) == 0 {
		return errors.New(`channels: required: the ADC needs to know what its inputs measure, e.g. channels = [{ channel = 0, gain = "4.096V", quantity = "noise", unit = "dB", from = [0.4, 2.0], to = [30.0, 130.0] }]`)
	}
	if len(o.Channels) > 8 {
		return fmt.Errorf("channels: %d entries; at most 8", len(o.Channels))
	}
	seen := map[string]int{}
	for i, c := range o.Channels {
		key := func(k string) string { return fmt.Sprintf("channels[%d].%s", i, k) }
		if c.Channel == nil {
			return fmt.Errorf("%s: required: the input, 0 to 3 (AIN0..AIN3)", key("channel"))
		}
		if *c.Channel < 0 || *c.Channel > 3 {
			return fmt.Errorf("%s = %d: want 0 to 3 (AIN0..AIN3)", key("channel"), *c.Channel)
		}
		g, err := c.gain()
		if err != nil {
			return fmt.Errorf("%s = %q: %v", key("gain"), c.Gain, err)
		}
		if !quantityName.MatchString(c.Quantity) {
			return fmt.Errorf("%s = %q: want a lower-case name of letters, digits and '_' starting with a letter, at most 32 characters", key("quantity"), c.Quantity)
		}
		if c.Quantity == drivers.Occupied {
			return fmt.Errorf("%s = %q: reserved for occupancy flags", key("quantity"), c.Quantity)
		}
		if j, dup := seen[c.Quantity]; dup {
			return fmt.Errorf("%s = %q: already used by channels[%d]", key("quantity"), c.Quantity, j)
		}
		seen[c.Quantity] = i
		if c.Unit == "" {
			return fmt.Errorf("%s: required: the SenML unit of %s (e.g. \"dB\", \"ppm\", \"V\")", key("unit"), c.Quantity)
		}
		if !unitName.MatchString(c.Unit) {
			return fmt.Errorf("%s = %q: want at most 16 letters, digits or %%/._-", key("unit"), c.Unit)
		}
		if err := pair(c.From); err != nil {
			return fmt.Errorf("%s = %s: %v", key("from"), list(c.From), err)
		}
		if err := pair(c.To); err != nil {
			return fmt.Errorf("%s = %s: %v", key("to"), list(c.To), err)
		}
		fs := float64(g.FullScale()) / float64(physic.Volt)
		for _, v := range c.From {
			if v < 0 || v >= fs {
				return fmt.Errorf("%s = %s: %g V is outside 0 to %g V, the measurable range at gain %s", key("from"), list(c.From), v, fs, g.String())
			}
		}
	}
	return nil
}

// pair checks a two-point map end: two different finite numbers.
func pair(p []float64) error {
	if len(p) != 2 {
		return fmt.Errorf("want two numbers, got %d", len(p))
	}
	for _, v := range p {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return errors.New("want finite numbers")
		}
	}
	if p[0] == p[1] {
		return errors.New("the two numbers must differ")
	}
	return nil
}

// list formats numbers as TOML writes them: [0.4, 2].
func list(p []float64) string {
	s := make([]string, len(p))
	for i, v := range p {
		s[i] = strconv.FormatFloat(v, 'g', -1, 64)
	}
	return "[" + strings.Join(s, ", ") + "]"
}

func (c adcChannel) gain() (ads1115.Gain, error) {
	if c.Gain == "" {
		return ads1115.FSR6144mV, nil
	}
	return ads1115.ParseGain(c.Gain)
}

// toValue maps a voltage to the channel's quantity.
func (c adcChannel) toValue(v float64) (float64, error) {
	lo, hi := math.Min(c.From[0], c.From[1]), math.Max(c.From[0], c.From[1])
	slack := adcTolerance * (hi - lo)
	if v < lo-slack || v > hi+slack {
		return 0, fmt.Errorf("AIN%d reads %.4f V, outside the configured from = %s for %s: transmitter fault or wiring?", *c.Channel, v, list(c.From), c.Quantity)
	}
	return c.To[0] + (v-c.From[0])*(c.To[1]-c.To[0])/(c.From[1]-c.From[0]), nil
}

// toVolts is toValue's inverse, for the simulation; values beyond the to
// range are clamped, as a transmitter's output is.
func (c adcChannel) toVolts(x float64) float64 {
	lo, hi := math.Min(c.To[0], c.To[1]), math.Max(c.To[0], c.To[1])
	x = math.Max(lo, math.Min(hi, x))
	return c.From[0] + (x-c.To[0])*(c.From[1]-c.From[0])/(c.To[1]-c.To[0])
}

// openADS1115 opens the converter. Unlike the other drivers' defaults, the
// default options are not usable (no channels), so Open runs the same
// Validate the config check ran rather than trusting what it is given.
func openADS1115(t Target, opts any) (drivers.Sensor, error) {
	o, ok := opts.(*adcOpts)
	if !ok || o == nil {
		return nil, fmt.Errorf("ads1115: options of type %T: the channels map is required", opts)
	}
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("ads1115: %w", err)
	}
	rate, _ := ads1115.ParseRate(o.DataRate) // validated
	dev, err := ads1115.New(t.Bus, &ads1115.Opts{Addr: t.Addr, Rate: rate, Clock: t.Clock})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.Where(), err)
	}
	return &adc{dev: dev, channels: o.Channels, where: t.Where()}, nil
}

// adc adapts an ads1115.Dev and its channel maps to drivers.Sensor.
type adc struct {
	dev      *ads1115.Dev
	channels []adcChannel
	where    string
}

// Read converts every configured channel. One bad channel fails the whole
// reading: a partial reading would hide the fault from the error counts.
func (a *adc) Read(ctx context.Context) ([]drivers.Value, error) {
	vals := make([]drivers.Value, 0, len(a.channels))
	for _, c := range a.channels {
		g, _ := c.gain()
		v, err := a.dev.Sense(ctx, *c.Channel, g)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", a.where, err)
		}
		x, err := c.toValue(float64(v) / float64(physic.Volt))
		if err != nil {
			return nil, fmt.Errorf("%s: ads1115: %w", a.where, err)
		}
		vals = append(vals, drivers.Number(c.Quantity, c.Unit, x))
	}
	return vals, nil
}

func (a *adc) Halt() error    { return a.dev.Halt() }
func (a *adc) String() string { return a.dev.String() }

// simADS1115 feeds each configured input with the voltage its transmitter
// would put out for the simulated street: the world's value for a quantity
// it knows, through the inverse of the channel's map.
func simADS1115(s SimSpec, opts any) sim.Chip {
	o, _ := opts.(*adcOpts)
	var byAIN [4]*adcChannel
	if o != nil {
		for i := range o.Channels {
			c := &o.Channels[i]
			if c.Channel != nil && *c.Channel >= 0 && *c.Channel <= 3 && byAIN[*c.Channel] == nil && c.valid() {
				byAIN[*c.Channel] = c
			}
		}
	}
	return ads1115sim.NewSim(func(ain int, t time.Time) float64 {
		c := byAIN[ain]
		if c == nil {
			return 0 // an unconnected input, pulled to ground
		}
		return c.toVolts(worldValue(s.World, c, t))
	})
}

// valid checks one channel on its own (for the simulation, which must not
// build on a map the config would reject).
func (c *adcChannel) valid() bool {
	o := adcOpts{DataRate: 128, Channels: []adcChannel{*c}}
	return o.Validate() == nil
}

// worldValue is what the simulated street says for c's quantity at t: the
// matching World field, or for quantities it does not model a slow swing
// around the middle of the configured range.
func worldValue(w *sim.World, c *adcChannel, t time.Time) float64 {
	mid := (c.To[0] + c.To[1]) / 2
	swing := mid + 0.3*(c.To[1]-c.To[0])*math.Sin(float64(t.Unix())/600*2*math.Pi)
	if w == nil {
		return swing
	}
	wx := w.At(t)
	switch c.Quantity {
	case "noise":
		return wx.NoiseDBA
	case drivers.Temperature:
		return wx.TempC
	case drivers.Humidity:
		return wx.RH
	case drivers.Pressure:
		return wx.PressurePa
	case drivers.CO2:
		return wx.CO2
	case drivers.Illuminance:
		return wx.Lux
	case drivers.PM1:
		return wx.PM[0]
	case drivers.PM2_5:
		return wx.PM[1]
	case drivers.PM4:
		return wx.PM[2]
	case drivers.PM10:
		return wx.PM[3]
	}
	return swing
}

package catalog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/gpiopresence"
	"github.com/cityedge/cityedge/drivers/sim"
	"periph.io/x/conn/v3/gpio"
)

// gpiopresenceDriver is the catalog entry of driver "gpio-presence".
var gpiopresenceDriver = Driver{
	Name:    "gpio-presence",
	Kind:    GPIO,
	Chips:   "digital vehicle detector (inductive-loop relay, IR break-beam, reed contact)",
	Options: func() any { return &presenceOpts{Active: "low", Debounce: Duration(gpiopresence.DefaultOpts.Debounce)} },
	Open:    openGPIOPresence,
	SimPin:  simGPIOPresence,
}

// presenceOpts are the options of a gpio-presence sensor.
type presenceOpts struct {
	// Active is the level the detector drives while a vehicle is present:
	// "low" (default: a relay or open-collector output to ground) or "high".
	Active string `toml:"active"`
	// Pull is the pin's bias: "up", "down" or "none". Empty (the default)
	// means "up" for active low and "down" for active high, so that a
	// disconnected detector reads as an empty bay.
	Pull string `toml:"pull"`
	// Debounce is how long a new level must hold before it counts
	// (default 200ms, at most 1m).
	Debounce Duration `toml:"debounce"`
}

// Validate checks the options, naming the offending key.
func (o *presenceOpts) Validate() error {
	if o.Active != "low" && o.Active != "high" {
		return fmt.Errorf("active = %q: want \"low\" or \"high\"", o.Active)
	}
	switch o.Pull {
	case "", "up", "down", "none":
	default:
		return fmt.Errorf("pull = %q: want \"up\", \"down\" or \"none\"", o.Pull)
	}
	// The debounce rule is the chip's (gpiopresence.Opts.Validate).
	if d := o.dev(); d.Validate() != nil {
		return fmt.Errorf("debounce = %q: %w; give the unit (e.g. \"200ms\")", d.Debounce, d.Validate())
	}
	return nil
}

func (o *presenceOpts) active() gpio.Level {
	if o.Active == "high" {
		return gpio.High
	}
	return gpio.Low
}

func (o *presenceOpts) dev() gpiopresence.Opts {
	pull := gpio.PullUp
	switch {
	case o.Pull == "up":
	case o.Pull == "down", o.Pull == "" && o.Active == "high":
		pull = gpio.PullDown
	case o.Pull == "none":
		pull = gpio.Float
	}
	return gpiopresence.Opts{Active: o.active(), Pull: pull, Debounce: o.Debounce.D()}
}

func presenceOptions(opts any) (*presenceOpts, error) {
	switch o := opts.(type) {
	case nil:
		return &presenceOpts{Active: "low", Debounce: Duration(gpiopresence.DefaultOpts.Debounce)}, nil
	case *presenceOpts:
		return o, o.Validate()
	}
	return nil, fmt.Errorf("gpio-presence: options of type %T", opts)
}

func openGPIOPresence(t Target, opts any) (drivers.Sensor, error) {
	o, err := presenceOptions(opts)
	if err != nil {
		return nil, err
	}
	if t.Pin == nil {
		return nil, errors.New("gpio-presence: no pin")
	}
	do := o.dev()
	dev, err := gpiopresence.New(t.Pin, &do)
	if err != nil {
		return nil, err // it names the pin
	}
	return presence{dev}, nil
}

// presence adapts a gpiopresence.Dev to drivers.Watcher.
type presence struct{ dev *gpiopresence.Dev }

func (p presence) Read(context.Context) ([]drivers.Value, error) {
	occ, err := p.dev.Sense()
	if err != nil {
		return nil, err
	}
	return []drivers.Value{drivers.Flag(drivers.Occupied, occ)}, nil
}

func (p presence) Watch(ctx context.Context, emit func([]drivers.Value)) error {
	return p.dev.Watch(ctx, func(occ bool) { emit([]drivers.Value{drivers.Flag(drivers.Occupied, occ)}) })
}

func (p presence) Halt() error    { return p.dev.Halt() }
func (p presence) String() string { return p.dev.String() }

// defaultSimBayMean is used when a simulation is built without a bay.
const defaultSimBayMean = 15 * time.Second

func simBay(s SimSpec) *sim.Bay {
	if s.Bay != nil {
		return s.Bay
	}
	return sim.NewBay(s.Seed, defaultSimBayMean)
}

// simGPIOPresence returns a pin driven by the sensor's simulated bay at the
// configured active level, with relay contact bounce on every change.
func simGPIOPresence(ctx context.Context, s SimSpec, opts any) gpio.PinIn {
	o, err := presenceOptions(opts)
	if err != nil {
		// Options were validated when the config was read; fall back to
		// the defaults rather than failing a simulation.
		o, _ = presenceOptions(nil)
	}
	active := o.active()
	pin := sim.NewPin("sim-"+s.Sensor, !active)
	go sim.DrivePin(ctx, pin, simBay(s), active)
	return pin
}

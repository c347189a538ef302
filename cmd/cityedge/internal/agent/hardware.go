package agent

import (
	"context"
	"fmt"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"sync"
	"time"

	"github.com/cityedge/cityedge/drivers/catalog"
	"github.com/cityedge/cityedge/drivers/sim"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/host/v3"
)

// Hardware opens the buses and pins the sensors sit on: the host's real ones,
// or simulated ones holding simulated chips (--simulate). Buses are shared by
// the sensors on them and closed once at exit; drivers never own a bus.
type Hardware interface {
	// Target returns where sensor s is attached, opening its bus or pin.
	Target(s config.SensorConfig) (catalog.Target, error)
	// Close closes every bus opened, once, at exit.
	Close()
}

// OpenHardware opens the host's buses and pins, or simulated ones holding a
// simulated chip or pin for every configured sensor.
func OpenHardware(ctx context.Context, cfg *config.Config, simulate bool) (Hardware, error) {
	if simulate {
		return newSimHardware(ctx, cfg)
	}
	return newHostHardware()
}

type hostHardware struct {
	mu    sync.Mutex
	buses map[string]i2c.BusCloser
}

func newHostHardware() (*hostHardware, error) {
	// host.Init succeeds on a machine without the hardware; a missing bus or
	// pin shows up per sensor, where it is retried and reported.
	if _, err := host.Init(); err != nil {
		return nil, fmt.Errorf("initialise periph host drivers: %w", err)
	}
	return &hostHardware{buses: map[string]i2c.BusCloser{}}, nil
}

func (h *hostHardware) Target(s config.SensorConfig) (catalog.Target, error) {
	t := catalog.Target{Sensor: s.Name, BusName: s.Bus, Addr: s.Address}
	drv, _ := catalog.Lookup(s.Driver)
	if drv.Kind == catalog.GPIO {
		p := gpioreg.ByName(s.Pin)
		if p == nil {
			return t, fmt.Errorf("pin %q: no such GPIO line on this host (names are as the kernel's gpiochip lines or periph's aliases, e.g. \"GPIO17\"); this host has: %s", s.Pin, Inventory())
		}
		t.Pin = p
		return t, nil
	}
	b, err := h.bus(s.Bus)
	t.Bus = b
	return t, err
}

// bus opens the I2C bus name once; sensors and signs on it share it.
func (h *hostHardware) bus(name string) (i2c.Bus, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if b, ok := h.buses[name]; ok {
		return b, nil
	}
	b, err := i2creg.Open(name)
	if err != nil {
		if name == "" {
			name = "(first)"
		}
		return nil, fmt.Errorf("bus %s: %s (is the i2c-dev module loaded and /dev/i2c-N readable by this user?); this host has: %s", name, withoutInitHint(err), Inventory())
	}
	h.buses[name] = b
	return b, nil
}

// Close closes every bus opened, once, at exit. A sensor that fails is
// re-opened on the bus it was on; the bus handle itself is kept.
func (h *hostHardware) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, b := range h.buses {
		b.Close()
	}
	h.buses = map[string]i2c.BusCloser{}
}

// simBayMean is how often, on average, a simulated parking bay changes state.
const simBayMean = 15 * time.Second

// simHardware backs every sensor with a simulated chip or pin, at the
// register or line level, so that --simulate runs the real drivers.
type simHardware struct {
	ctx   context.Context
	world *sim.World
	mu    sync.Mutex
	buses map[string]*sim.Bus
	pins  map[string]gpio.PinIn
	signs simSigns // the signs' simulated displays and lamps (signs.go)
}

func newSimHardware(ctx context.Context, cfg *config.Config) (*simHardware, error) {
	h := &simHardware{ctx: ctx, world: sim.NewWorld(sim.Seed(cfg.Agent.ID)),
		buses: map[string]*sim.Bus{}, pins: map[string]gpio.PinIn{}}
	for _, s := range cfg.Sensors {
		drv, _ := catalog.Lookup(s.Driver)
		spec := catalog.SimSpec{Sensor: s.Name, Addr: s.Address, World: h.world, Seed: sim.Seed(s.Name),
			Bay: sim.NewBay(sim.Seed(s.Name+"/bay"), simBayMean)}
		switch drv.Kind {
		case catalog.GPIO:
			if drv.SimPin == nil {
				return nil, fmt.Errorf("sensor %q: driver %s has no simulation", s.Name, s.Driver)
			}
			h.pins[s.Pin] = drv.SimPin(ctx, spec, s.Options)
		case catalog.I2C:
			if drv.SimChip == nil {
				return nil, fmt.Errorf("sensor %q: driver %s has no simulation", s.Name, s.Driver)
			}
			b := h.buses[s.Bus]
			if b == nil {
				name := "sim-i2c" + s.Bus
				b = sim.NewBus(name)
				h.buses[s.Bus] = b
			}
			b.Attach(s.Address, drv.SimChip(spec, s.Options))
		}
	}
	h.attachSigns(cfg.Signs)
	return h, nil
}

func (h *simHardware) Target(s config.SensorConfig) (catalog.Target, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := catalog.Target{Sensor: s.Name, BusName: s.Bus, Addr: s.Address}
	if p, ok := h.pins[s.Pin]; ok && s.Pin != "" {
		t.Pin = p
		return t, nil
	}
	b, ok := h.buses[s.Bus]
	if !ok {
		return t, fmt.Errorf("no simulated bus %q", s.Bus)
	}
	t.Bus = b
	return t, nil
}

func (h *simHardware) Close() {}

package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/guidance"
	"github.com/cityedge/cityedge/drivers/gpiolamp"
	"github.com/cityedge/cityedge/drivers/gpiolamp/gpiolampsim"
	"github.com/cityedge/cityedge/drivers/ht16k33"
	"github.com/cityedge/cityedge/drivers/ht16k33/ht16k33sim"
	"github.com/cityedge/cityedge/drivers/sim"
	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/i2c"
)

// Signs: each [[signs]] table runs on its own goroutine and shows the newest
// state of its zone as soon as it is handed over (a sign never waits for the
// uplink or for another sign). A write that fails (the chip does not
// acknowledge, the line cannot be driven) is retried with the sensors'
// backoff, 1 s doubling to 5 min, reopening the device (a display that lost
// power needs its set-up again), and is shown in status and --diagnose. At a
// clean stop every display shows "----" and every lamp is off; the unit's
// ExecStopPost= runs `cityedge --blank-signs` so that a crash leaves no stale
// count either.

// signDev is an opened sign.
type signDev interface {
	// show displays the zone state and returns what the sign now shows.
	show(z guidance.ZoneState) (string, error)
	blank() error
	test() error
}

type displaySign struct{ d *ht16k33.Dev }

func (s displaySign) show(z guidance.ZoneState) (string, error) { t := z.Sign(); return t, s.d.Show(t) }
func (s displaySign) blank() error                              { return s.d.Show(guidance.SignUnknown) }
func (s displaySign) test() error                               { return s.d.LampTest() }

type lampSign struct{ d *gpiolamp.Dev }

func (s lampSign) show(z guidance.ZoneState) (string, error) {
	on := z.Lamp()
	return onOff(on), s.d.Set(on)
}
func (s lampSign) blank() error { return s.d.Set(false) }
func (s lampSign) test() error  { return s.d.Set(true) }

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// signHardware is where signs are attached; both Hardware implementations
// have it.
type signHardware interface {
	signBus(s config.SignConfig) (i2c.Bus, error)
	lampPin(s config.SignConfig) (gpio.PinOut, error)
}

// signWhere names a sign's place for messages.
func signWhere(s config.SignConfig) string {
	if s.Driver == config.SignGPIOLamp {
		return "pin " + s.Pin
	}
	bus := s.Bus
	if bus == "" {
		bus = "(first)"
	}
	return fmt.Sprintf("bus %s address %#02x", bus, s.Address)
}

// openSign opens the sign s on hw.
func openSign(hw Hardware, s config.SignConfig) (signDev, error) {
	sh, ok := hw.(signHardware)
	if !ok {
		return nil, errors.New("this hardware has no sign outputs")
	}
	switch s.Driver {
	case config.SignHT16K33:
		bus, err := sh.signBus(s)
		if err != nil {
			return nil, err
		}
		d, err := ht16k33.New(bus, &ht16k33.Opts{Addr: s.Address, Brightness: s.Brightness})
		if err != nil {
			return nil, err
		}
		return displaySign{d}, nil
	case config.SignGPIOLamp:
		p, err := sh.lampPin(s)
		if err != nil {
			return nil, err
		}
		d, err := gpiolamp.New(p, &gpiolamp.Opts{Active: s.Active})
		if err != nil {
			return nil, err
		}
		return lampSign{d}, nil
	}
	return nil, fmt.Errorf("sign %q: unknown driver %q", s.Name, s.Driver)
}

// SignState is what status and --diagnose show of one sign.
type SignState struct {
	Zone      string    `json:"zone"`
	Driver    string    `json:"driver"`
	Where     string    `json:"where"`
	Shows     string    `json:"shows"` // the display's text, or the lamp "on"/"off"; "" before the first write
	OK        bool      `json:"ok"`    // the last write succeeded
	Writes    uint64    `json:"writes"`
	Errors    uint64    `json:"errors"`
	LastError string    `json:"last_error,omitempty"`
	NextRetry time.Time `json:"next_retry,omitzero"`
}

// signRunner drives one sign.
type signRunner struct {
	cfg   config.SignConfig
	open  func() (signDev, error)
	clock clockwork.Clock
	log   *slog.Logger
	// jitter spreads a retry delay; nil: uniformly over [d/2, 3d/2).
	jitter func(time.Duration) time.Duration

	kick chan struct{}
	mu   sync.Mutex
	want guidance.ZoneState
	has  bool
	st   SignState
}

func newSignRunner(s config.SignConfig, open func() (signDev, error), clock clockwork.Clock, log *slog.Logger) *signRunner {
	return &signRunner{cfg: s, open: open, clock: clock, log: log, kick: make(chan struct{}, 1),
		st: SignState{Zone: s.Zone, Driver: s.Driver, Where: signWhere(s)}}
}

// set hands over the zone's newest state; it never blocks.
func (r *signRunner) set(z guidance.ZoneState) {
	r.mu.Lock()
	r.want, r.has = z, true
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *signRunner) snapshot() SignState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st
}

// run shows every state handed over until ctx is done, then blanks the sign.
func (r *signRunner) run(ctx context.Context) {
	var dev signDev
	backoff := backoffMin
	var retry clockwork.Timer
	var retryC <-chan time.Time
	defer func() {
		if retry != nil {
			retry.Stop()
		}
		r.stop(dev)
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
			if retryC != nil {
				continue // failing: the retry timer decides; it shows the newest state
			}
		case <-retryC:
			retryC = nil
		}
		r.mu.Lock()
		z, has := r.want, r.has
		r.mu.Unlock()
		if !has {
			continue
		}
		var err error
		if dev == nil {
			dev, err = r.open()
		}
		shows := ""
		if err == nil {
			shows, err = dev.show(z)
		}
		if err != nil {
			dev = nil // reopen: a display that lost power needs its set-up again
			wait := r.spread(backoff)
			backoff = min(backoff*2, backoffMax)
			retry = r.clock.NewTimer(wait)
			retryC = retry.Chan()
			r.mu.Lock()
			r.st.OK, r.st.LastError, r.st.NextRetry = false, err.Error(), r.clock.Now().Add(wait)
			r.st.Errors++
			n := r.st.Errors
			r.mu.Unlock()
			if n&(n-1) == 0 {
				r.log.Warn("sign failed", "sign", r.cfg.Name, "where", signWhere(r.cfg), "err", err, "retry_in", wait, "failures", n)
			}
			continue
		}
		backoff = backoffMin
		r.mu.Lock()
		recovered := !r.st.OK && r.st.Errors > 0
		r.st.OK, r.st.Shows, r.st.NextRetry = true, shows, time.Time{}
		r.st.Writes++
		r.mu.Unlock()
		if recovered {
			r.log.Info("sign recovered", "sign", r.cfg.Name, "shows", shows)
		}
		r.log.Debug("sign", "sign", r.cfg.Name, "zone", z.Zone, "shows", shows, "seq", z.Seq)
	}
}

// stop blanks the sign at a clean stop: "----" on a display, a lamp off.
func (r *signRunner) stop(dev signDev) {
	var err error
	if dev == nil {
		dev, err = r.open()
	}
	if err == nil {
		err = dev.blank()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.st.OK, r.st.LastError = false, err.Error()
		r.log.Warn("sign not blanked at stop", "sign", r.cfg.Name, "err", err)
		return
	}
	r.st.Shows = guidance.SignUnknown
	if r.cfg.Driver == config.SignGPIOLamp {
		r.st.Shows = onOff(false)
	}
}

func (r *signRunner) spread(d time.Duration) time.Duration {
	if r.jitter != nil {
		return r.jitter(d)
	}
	return d/2 + time.Duration(rand.Int64N(int64(d)))
}

// SignResult is the outcome of one sign for --blank-signs and --sign-test.
type SignResult struct {
	Name  string
	Where string
	Err   error
}

// BlankSigns opens only the configured signs and shows "----" on every
// display and switches every lamp off: `cityedge --blank-signs`, run by the
// unit's ExecStopPost= so that a crashed agent leaves no stale count.
func BlankSigns(ctx context.Context, cfg *config.Config, simulate bool) []SignResult {
	return eachSign(ctx, cfg, simulate, signDev.blank)
}

// TestSigns writes a test pattern on every sign (every segment lit, every
// lamp on), for a person at the sign to check: `--diagnose --sign-test`.
func TestSigns(ctx context.Context, cfg *config.Config, simulate bool) []SignResult {
	return eachSign(ctx, cfg, simulate, signDev.test)
}

func eachSign(ctx context.Context, cfg *config.Config, simulate bool, do func(signDev) error) []SignResult {
	var out []SignResult
	if len(cfg.Signs) == 0 {
		return out
	}
	hw, err := openSignHardware(ctx, cfg, simulate)
	if err != nil {
		for _, s := range cfg.Signs {
			out = append(out, SignResult{Name: s.Name, Where: signWhere(s), Err: err})
		}
		return out
	}
	defer hw.Close()
	for _, s := range cfg.Signs {
		dev, err := openSign(hw, s)
		if err == nil {
			err = do(dev)
		}
		out = append(out, SignResult{Name: s.Name, Where: signWhere(s), Err: err})
	}
	return out
}

// openSignHardware opens the host's buses and pins, or simulated ones; it
// starts no simulated sensor.
func openSignHardware(ctx context.Context, cfg *config.Config, simulate bool) (Hardware, error) {
	if simulate {
		only := *cfg
		only.Sensors = nil
		return newSimHardware(ctx, &only)
	}
	return newHostHardware()
}

// Host hardware: a sign's bus is shared with the sensors on it.
func (h *hostHardware) signBus(s config.SignConfig) (i2c.Bus, error) { return h.bus(s.Bus) }

func (h *hostHardware) lampPin(s config.SignConfig) (gpio.PinOut, error) {
	p := gpioreg.ByName(s.Pin)
	if p == nil {
		return nil, fmt.Errorf("pin %q: no such GPIO line on this host", s.Pin)
	}
	return p, nil
}

// simSigns are the simulated signs of a simHardware, by sign name.
type simSigns struct {
	displays map[string]*ht16k33sim.Chip
	lamps    map[string]*gpiolampsim.Pin
}

// attachSigns puts a simulated HT16K33 on its bus for every display sign,
// so a bus scan finds it where the configuration says.
func (h *simHardware) attachSigns(signs []config.SignConfig) {
	for _, s := range signs {
		if s.Driver == config.SignHT16K33 {
			_, _ = h.signBus(s)
		}
	}
}

// signBus attaches a simulated HT16K33 for the sign (once) and returns its
// bus. What the simulated board shows is logged, for `make demo`.
func (h *simHardware) signBus(s config.SignConfig) (i2c.Bus, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.signs.displays == nil {
		h.signs.displays = map[string]*ht16k33sim.Chip{}
	}
	b := h.buses[s.Bus]
	if b == nil {
		b = sim.NewBus("sim-i2c" + s.Bus)
		h.buses[s.Bus] = b
	}
	if _, ok := h.signs.displays[s.Name]; !ok {
		c := ht16k33sim.New(nil)
		last := ""
		c.OnRAMWrite(func(d ht16k33sim.Display) {
			if t := d.Shows(); t != last {
				last = t
				slog.Info("simulated sign", "sign", s.Name, "zone", s.Zone, "shows", t)
			}
		})
		h.signs.displays[s.Name] = c
		b.Attach(s.Address, c)
	}
	return b, nil
}

func (h *simHardware) lampPin(s config.SignConfig) (gpio.PinOut, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.signs.lamps == nil {
		h.signs.lamps = map[string]*gpiolampsim.Pin{}
	}
	p, ok := h.signs.lamps[s.Name]
	if !ok {
		p = gpiolampsim.New(s.Pin)
		last := ""
		p.OnOut(func(l gpio.Level) {
			if t := "lamp " + onOff(l == s.Active); t != last {
				last = t
				slog.Info("simulated sign", "sign", s.Name, "zone", s.Zone, "shows", t)
			}
		})
		h.signs.lamps[s.Name] = p
	}
	return p, nil
}

package gpiolamp

import (
	"errors"
	"strings"
	"testing"

	"github.com/cityedge/cityedge/drivers/gpiolamp/gpiolampsim"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
)

func TestSet(t *testing.T) {
	cases := []struct {
		name    string
		opts    *Opts
		offLvl  gpio.Level
		onLevel gpio.Level
	}{
		{"default: active high", nil, gpio.Low, gpio.High},
		{"active high", &Opts{Active: gpio.High}, gpio.Low, gpio.High},
		{"active-low relay board", &Opts{Active: gpio.Low}, gpio.High, gpio.Low},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Start the line at the "on" level: New must switch it off.
			p := &gpiotest.Pin{N: "GPIO22", Num: 22, L: tc.onLevel}
			d, err := New(p, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if p.Read() != tc.offLvl || d.On() {
				t.Fatalf("after New the line is %s (lamp on %v), want %s (off)", p.Read(), d.On(), tc.offLvl)
			}
			for _, on := range []bool{true, true, false, true} {
				if err := d.Set(on); err != nil {
					t.Fatal(err)
				}
				want := tc.offLvl
				if on {
					want = tc.onLevel
				}
				if p.Read() != want || d.On() != on {
					t.Fatalf("Set(%v): line %s, On() %v; want %s", on, p.Read(), d.On(), want)
				}
			}
			if err := d.Halt(); err != nil {
				t.Fatal(err)
			}
			if p.Read() != tc.offLvl || d.On() {
				t.Errorf("after Halt the line is %s, want %s (off)", p.Read(), tc.offLvl)
			}
		})
	}
}

type failingPin struct {
	gpiotest.Pin
	err error
}

func (p *failingPin) Out(l gpio.Level) error {
	if p.err != nil {
		return p.err
	}
	return p.Pin.Out(l)
}

func TestErrors(t *testing.T) {
	if _, err := New(nil, nil); err == nil {
		t.Error("New(nil) accepted")
	}
	errLine := errors.New("line busy")
	p := &failingPin{Pin: gpiotest.Pin{N: "GPIO5"}, err: errLine}
	if _, err := New(p, nil); !errors.Is(err, errLine) || !strings.Contains(err.Error(), "GPIO5") {
		t.Errorf("New on a failing line: %v; want the line's error, naming the pin", err)
	}
	p.err = nil
	d, err := New(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Set(true); err != nil {
		t.Fatal(err)
	}
	p.err = errLine
	if err := d.Set(false); !errors.Is(err, errLine) || !strings.Contains(err.Error(), "switch off") {
		t.Errorf("Set(false) on a failing line: %v", err)
	}
	if !d.On() {
		t.Error("a failed switch-off is reported as done")
	}
}

func TestParseActive(t *testing.T) {
	for s, want := range map[string]gpio.Level{"high": gpio.High, "low": gpio.Low} {
		if got, err := ParseActive(s); err != nil || got != want {
			t.Errorf("ParseActive(%q) = %s, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "HIGH", "on", "1"} {
		if _, err := ParseActive(s); err == nil || !strings.HasPrefix(err.Error(), "active = ") {
			t.Errorf("ParseActive(%q): %v; want an error naming the key", s, err)
		}
	}
}

func TestSimulatedPin(t *testing.T) {
	p := gpiolampsim.New("sim-lamp")
	if _, out := p.Level(); out {
		t.Fatal("a new simulated line is already an output")
	}
	var seen []gpio.Level
	p.OnOut(func(l gpio.Level) { seen = append(seen, l) })
	d, err := New(p, &Opts{Active: gpio.Low})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Set(true); err != nil {
		t.Fatal(err)
	}
	if l, out := p.Level(); !out || l != gpio.Low || p.Writes() != 2 {
		t.Errorf("lamp on, active low: line %s output %v after %d writes", l, out, p.Writes())
	}
	if len(seen) != 2 || seen[0] != gpio.High || seen[1] != gpio.Low {
		t.Errorf("hook saw %v, want [High Low]", seen)
	}
	if got := d.String(); got != "gpiolamp(sim-lamp active Low)" {
		t.Errorf("String() = %q", got)
	}
}

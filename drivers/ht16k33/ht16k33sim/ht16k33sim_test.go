package ht16k33sim_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cityedge/cityedge/drivers/ht16k33"
	"github.com/cityedge/cityedge/drivers/ht16k33/ht16k33sim"
	"github.com/cityedge/cityedge/drivers/sim"
)

func open(t *testing.T, opts *ht16k33.Opts, power []byte) (*ht16k33.Dev, *ht16k33sim.Chip, *sim.Bus) {
	t.Helper()
	chip := ht16k33sim.New(power)
	bus := sim.NewBus("sim-i2c1")
	addr := ht16k33.DefaultOpts.Addr
	if opts != nil {
		addr = opts.Addr
	}
	bus.Attach(addr, chip)
	d, err := ht16k33.New(bus, opts)
	if err != nil {
		t.Fatal(err)
	}
	return d, chip, bus
}

func TestPowerOnAndStart(t *testing.T) {
	garbage := []byte{0x7F, 0, 0x7F, 0, 0x02, 0, 0x7F, 0, 0x7F}
	chip := ht16k33sim.New(garbage)
	if d := chip.Display(); d.Lit || d.Shows() != "" || d.Text != "8888" {
		t.Errorf("power-on display %+v: want dark over RAM reading 8888", d)
	}
	bus := sim.NewBus("sim-i2c1")
	bus.Attach(0x72, chip)
	if _, err := ht16k33.New(bus, &ht16k33.Opts{Addr: 0x72, Brightness: 3}); err != nil {
		t.Fatal(err)
	}
	d := chip.Display()
	if !d.Lit || d.Shows() != "    " || d.Colon || d.Blink != 0 || d.Brightness != 3 {
		t.Errorf("after New: %+v; want lit, blank, no colon, no blinking, brightness 3", d)
	}
}

// Everything the driver can show reads back the same off the simulated
// board: the driver's encoder and the board's wiring agree.
func TestShowReadsBack(t *testing.T) {
	d, chip, _ := open(t, nil, nil)
	texts := []string{"FULL", "----", "0", "7", "42", "123", "9999", "8888", "    ", "", "AbCd", "EFHL", "noPr", "tU_-"}
	for n := 0; n < 10000; n += 37 {
		texts = append(texts, fmt.Sprint(n))
	}
	writes := chip.RAMWrites()
	for _, text := range texts {
		if err := d.Show(text); err != nil {
			t.Fatalf("Show(%q): %v", text, err)
		}
		want := fmt.Sprintf("%4s", text)
		if got := chip.Display().Shows(); got != want {
			t.Fatalf("Show(%q): the sign reads %q, want %q", text, got, want)
		}
		writes++
		if got := chip.RAMWrites(); got != writes {
			t.Fatalf("Show(%q): %d RAM writes in all, want %d (one per Show)", text, got, writes)
		}
	}
}

func TestLampTest(t *testing.T) {
	d, chip, _ := open(t, nil, nil)
	if err := d.LampTest(); err != nil {
		t.Fatal(err)
	}
	got := chip.Display()
	if got.Shows() != "8888" || !got.Colon || got.Dots != [4]bool{true, true, true, true} {
		t.Errorf("lamp test shows %+v; want 8.8.8.8. with the colon", got)
	}
}

func TestOnRAMWrite(t *testing.T) {
	d, chip, _ := open(t, nil, nil)
	var seen []string
	chip.OnRAMWrite(func(disp ht16k33sim.Display) { seen = append(seen, disp.Shows()) })
	for _, s := range []string{"3", "FULL", "----"} {
		if err := d.Show(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.SetBrightness(1); err != nil {
		t.Fatal(err)
	}
	if want := []string{"   3", "FULL", "----"}; fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("hook saw %q, want %q (RAM writes only)", seen, want)
	}
}

// A sign that stops acknowledging fails with the bus error and shows the
// next text once it answers again.
func TestNACK(t *testing.T) {
	d, chip, bus := open(t, nil, nil)
	if err := d.Show("5"); err != nil {
		t.Fatal(err)
	}
	bus.Fail(0x70, sim.ErrNACK)
	err := d.Show("4")
	if !errors.Is(err, sim.ErrNACK) || !strings.Contains(err.Error(), "write display RAM") {
		t.Errorf("Show while NACKing: %v; want a write error wrapping sim.ErrNACK", err)
	}
	if got := chip.Display().Shows(); got != "   5" {
		t.Errorf("after a failed write the sign reads %q, want the old %q", got, "   5")
	}
	bus.Fail(0x70, nil)
	if err := d.Show("4"); err != nil {
		t.Fatal(err)
	}
	if got := chip.Display().Shows(); got != "   4" {
		t.Errorf("after recovery the sign reads %q", got)
	}
	bus.Detach(0x70)
	if _, err := ht16k33.New(bus, nil); !errors.Is(err, sim.ErrNACK) {
		t.Errorf("New with nothing at 0x70: %v", err)
	}
}

func TestChipRefusesWhatTheDatasheetDoesNotPromise(t *testing.T) {
	cases := []struct {
		name string
		w    []byte
		r    int
		err  string
	}{
		{"two commands at once", []byte{0x21, 0x81}, 0, "one command per transaction"},
		{"write past 0x0f", append([]byte{0x08}, make([]byte, 9)...), 0, "run past"},
		{"read past 0x0f", []byte{0x0F}, 2, "run past"},
		{"write and read", []byte{0x00, 0x01}, 1, "either writes or reads"},
		{"unknown command", []byte{0xC0}, 0, "unknown command 0xc0"},
		{"read after a command", []byte{0x81}, 1, "returns no data"},
	}
	for _, tc := range cases {
		chip := ht16k33sim.New(nil)
		err := chip.Tx(tc.w, make([]byte, tc.r))
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v; want an error containing %q", tc.name, err, tc.err)
		}
	}
	// What it accepts: setup commands, blink settings, a segment pattern
	// that is no character.
	chip := ht16k33sim.New(nil)
	for _, w := range [][]byte{{0x21}, {0x87}, {0xE0}, {0xA0}, {0x08, 0x49}} {
		if err := chip.Tx(w, nil); err != nil {
			t.Fatalf("% x: %v", w, err)
		}
	}
	if d := chip.Display(); !d.Lit || d.Blink != 3 || d.Brightness != 0 || d.Text != "   ?" {
		t.Errorf("display %+v; want lit, blinking at 0.5 Hz, brightness 0, reading \"   ?\"", d)
	}
	if err := chip.Tx([]byte{0x20}, nil); err != nil {
		t.Fatal(err)
	}
	if chip.Display().Lit {
		t.Error("standby (0x20) left the display lit")
	}
}

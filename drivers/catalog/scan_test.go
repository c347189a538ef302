package catalog

import (
	"bytes"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/cityedge/cityedge/drivers/sim"
	"periph.io/x/conn/v3/i2c"
)

// recordBus is a sim.Bus that logs every transaction.
type recordBus struct {
	*sim.Bus
	mu  sync.Mutex
	log []txn
}

type txn struct {
	addr uint16
	w    []byte
	r    int
	ok   bool
}

func (b *recordBus) Tx(addr uint16, w, r []byte) error {
	err := b.Bus.Tx(addr, w, r)
	b.mu.Lock()
	b.log = append(b.log, txn{addr, slices.Clone(w), len(r), err == nil})
	b.mu.Unlock()
	return err
}

var _ i2c.Bus = (*recordBus)(nil)

// chipFunc is a chip that answers with a function.
type chipFunc func(w, r []byte) error

func (f chipFunc) Tx(w, r []byte) error { return f(w, r) }

// quickOnly acknowledges only transactions that neither write nor read, as
// periph's Linux bus does without touching the wire: Scan must not count it.
type quickOnly struct{}

func (quickOnly) Tx(w, r []byte) error {
	if len(w) == 0 && len(r) == 0 {
		return nil
	}
	return sim.ErrNACK
}

func TestScan(t *testing.T) {
	world := sim.NewWorld(9)
	bus := &recordBus{Bus: sim.NewBus("sim-i2c1")}
	attached := map[uint16]string{
		0x0D: "qmc5883l", 0x23: "bh1750", 0x49: "ads1115", 0x70: "mb1242",
		0x44: "sht3x", 0x46: "sht4x", 0x62: "scd4x", 0x69: "sps30", 0x77: "bme280",
	}
	for addr, name := range attached {
		d := lookup(t, name)
		spec := SimSpec{Sensor: name, Addr: addr, World: world, Bay: sim.NewBay(1, 1e12), Seed: 1}
		bus.Attach(addr, d.SimChip(spec, d.Options()))
	}
	// Chips no driver knows still show, with no drivers: an EEPROM, and an
	// RTC that answers; a failing chip and a quick-write-only ghost do not.
	bus.Attach(0x50, chipFunc(func(w, r []byte) error { return nil }))
	bus.Attach(0x68, chipFunc(func(w, r []byte) error { return nil }))
	bus.Attach(0x40, quickOnly{})
	bus.Attach(0x41, chipFunc(func(w, r []byte) error { return nil }))
	bus.Fail(0x41, errors.New("remote I/O error"))

	got := Scan(bus)

	want := []Found{
		{0x0D, []string{"qmc5883l"}},
		{0x23, []string{"bh1750"}},
		{0x44, []string{"sht3x", "sht4x"}},
		{0x46, []string{"sht4x"}},
		{0x49, []string{"ads1115"}},
		{0x50, nil},
		{0x62, []string{"scd4x"}},
		{0x68, nil},
		{0x69, []string{"sps30"}},
		{0x70, []string{"mb1242"}},
		{0x77, []string{"bme280"}},
	}
	if !slices.EqualFunc(got, want, func(a, b Found) bool { return a.Addr == b.Addr && slices.Equal(a.Drivers, b.Drivers) }) {
		t.Errorf("Scan() =\n%v\nwant\n%v", got, want)
	}

	// Every address was probed with a one-byte read; writes went only to
	// Sensirion addresses whose read was refused, and were their harmless
	// commands.
	probed := map[uint16]bool{}
	refused := map[uint16]bool{}
	for _, x := range bus.log {
		probed[x.addr] = true
		if len(x.w) == 0 && x.r == 1 {
			refused[x.addr] = !x.ok
			continue
		}
		allowed := false
		for _, name := range []string{"sht3x", "sht4x", "scd4x", "sps30"} {
			d := lookup(t, name)
			if slices.Contains(d.Addrs, x.addr) && bytes.Equal(x.w, sensirionProbes[name]) && x.r == 0 && refused[x.addr] {
				allowed = true
			}
		}
		if !allowed {
			t.Errorf("scan wrote something other than a Sensirion probe after a refused read: %#02x % x (read %d)", x.addr, x.w, x.r)
		}
	}
	for a := uint16(0); a < 0x80; a++ {
		if inRange := a >= 0x08 && a <= 0x77; probed[a] != inRange {
			t.Errorf("address %#02x probed %v, want %v (i2cdetect's default range)", a, probed[a], inRange)
		}
	}
}

func TestFoundString(t *testing.T) {
	for _, tc := range []struct {
		f    Found
		want string
	}{
		{Found{0x44, []string{"sht3x", "sht4x"}}, "0x44 sht3x, sht4x"},
		{Found{0x0D, []string{"qmc5883l"}}, "0x0d qmc5883l"},
		{Found{0x50, nil}, "0x50 (no driver)"},
	} {
		if got := tc.f.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.f, got, tc.want)
		}
	}
}

func TestScanEmptyBus(t *testing.T) {
	if got := Scan(sim.NewBus("empty")); len(got) != 0 {
		t.Errorf("Scan of an empty bus = %v", got)
	}
}

// A scan of the whole range on a simulated bus with two chips: the cost of
// the 112 probes without the wire.
func BenchmarkScan(b *testing.B) {
	bus := sim.NewBus("sim-i2c1")
	for _, name := range []string{"bh1750", "mb1242"} {
		d, _ := Lookup(name)
		bus.Attach(d.Addrs[0], d.SimChip(SimSpec{Sensor: name, World: sim.NewWorld(1)}, d.Options()))
	}
	for b.Loop() {
		if got := Scan(bus); len(got) != 2 {
			b.Fatalf("found %v", got)
		}
	}
}

package qmc5883l

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/drivers/internal/drivertest"
	"github.com/cityedge/cityedge/drivers/qmc5883l/qmc5883lsim"
	"github.com/cityedge/cityedge/drivers/sim"
	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/physic"
)

func initOps(ctrl1 byte) []i2ctest.IO {
	return []i2ctest.IO{
		{Addr: 0x0D, W: []byte{0x0D}, R: []byte{0xFF}},
		{Addr: 0x0D, W: []byte{0x0A, 0x80}},
		{Addr: 0x0D, W: []byte{0x0B, 0x01}},
		{Addr: 0x0D, W: []byte{0x09, ctrl1}},
	}
}

func TestNew(t *testing.T) {
	cases := []struct {
		name   string
		opts   *Opts
		ops    []i2ctest.IO
		nackAt int
		want   string // error substring; "" = success
		nacked bool   // the error the case ends on comes from the NACK
	}{
		{"defaults: 2G 10Hz OSR512 continuous", nil, initOps(0x01), -1, "", false},
		{"8G 200Hz OSR64", &Opts{Addr: 0x0D, Range: Range8G, Rate: Rate200Hz, Oversampling: OSR64}, initOps(0xDD), -1, "", false},
		{"2G 50Hz OSR256", &Opts{Addr: 0x0D, Range: Range2G, Rate: Rate50Hz, Oversampling: OSR256}, initOps(0x45), -1, "", false},
		{"wrong chip id", nil, []i2ctest.IO{{Addr: 0x0D, W: []byte{0x0D}, R: []byte{0x48}}}, -1, "chip id 0x48, want 0xff", false},
		{"nack on chip id", nil, nil, 0, "read chip id", true},
		{"nack on reset", nil, initOps(0x01)[:1], 1, "soft reset", true},
		{"nack on set/reset period", nil, initOps(0x01)[:2], 2, "set/reset period", true},
		{"nack on mode", nil, initOps(0x01)[:3], 3, "start continuous mode", true},
		{"invalid range", &Opts{Addr: 0x0D, Range: 2}, nil, -1, "invalid options", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(drivertest.Playback(t, tc.ops, tc.nackAt), tc.opts)
			if drivertest.WantErr(t, "New", err, tc.want) {
				drivertest.WantNACK(t, "New", err, tc.nackAt, tc.nacked)
			}
		})
	}
}

// data builds registers 0x00..0x06 from raw counts and a status byte.
func data(x, y, z int16, status byte) []byte {
	return []byte{byte(x), byte(uint16(x) >> 8), byte(y), byte(uint16(y) >> 8), byte(z), byte(uint16(z) >> 8), status}
}

func TestSense(t *testing.T) {
	status := func(s byte) i2ctest.IO { return i2ctest.IO{Addr: 0x0D, W: []byte{0x06}, R: []byte{s}} }
	read := func(b []byte) i2ctest.IO { return i2ctest.IO{Addr: 0x0D, W: []byte{0x00}, R: b} }
	never := make([]i2ctest.IO, 16)
	for i := range never {
		never[i] = status(0x00)
	}
	nT := physic.NanoTesla
	cases := []struct {
		name   string
		rng    Range
		ops    []i2ctest.IO
		nackAt int
		want   Field
		sleeps int
		err    string
		nacked bool // the error the case ends on comes from the NACK
	}{
		// 12000 LSB/G: 2400 counts = 0.2 G = 20 µT, −600 = −5 µT, 5040 = 42 µT.
		{"ready at once", Range2G, []i2ctest.IO{status(0x01), read(data(2400, -600, 5040, 0x00))}, -1,
			Field{20000 * nT, -5000 * nT, 42000 * nT}, 0, "", false},
		{"ready after two polls", Range2G, []i2ctest.IO{status(0x00), status(0x04), status(0x05), read(data(2400, -600, 5040, 0x04))}, -1,
			Field{20000 * nT, -5000 * nT, 42000 * nT}, 2, "", false},
		// 1 count = 8.33 nT at ±2 G, rounded half away from zero.
		{"quantisation 2G", Range2G, []i2ctest.IO{status(0x01), read(data(1, -1, 3, 0))}, -1,
			Field{8 * nT, -8 * nT, 25 * nT}, 0, "", false},
		// 3000 LSB/G: 3000 counts = 100 µT; 1 count = 33.3 nT.
		{"8G", Range8G, []i2ctest.IO{status(0x01), read(data(3000, -1, 24000, 0))}, -1,
			Field{100000 * nT, -33 * nT, 800000 * nT}, 0, "", false},
		{"full scale 2G", Range2G, []i2ctest.IO{status(0x01), read(data(24000, -24000, 0, 0))}, -1,
			Field{200000 * nT, -200000 * nT, 0}, 0, "", false},
		{"overflow flag", Range2G, []i2ctest.IO{status(0x03), read(data(0, 0, 0, 0x02))}, -1, Field{}, 0, "beyond the measurement range ±2G", false},
		{"overflow flag cleared by the poll", Range2G, []i2ctest.IO{status(0x03), read(data(100, 0, 0, 0x00))}, -1, Field{}, 0, "beyond the measurement range ±2G", false},
		{"beyond range without flag", Range2G, []i2ctest.IO{status(0x01), read(data(0, 24001, 0, 0))}, -1, Field{}, 0, "axis Y reads 24001", false},
		{"never ready", Range2G, never, -1, Field{}, 15, "no data ready after 300ms", false},
		{"nack on status", Range2G, nil, 0, Field{}, 0, "read status", true},
		{"nack on data", Range2G, []i2ctest.IO{status(0x01)}, 1, Field{}, 0, "read data", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := drivertest.NewClock(time.Unix(0, 0))
			opts := DefaultOpts
			opts.Range = tc.rng
			d := &Dev{c: i2c.Dev{Bus: drivertest.Playback(t, tc.ops, tc.nackAt), Addr: 0x0D}, opts: opts, clock: c}
			got, err := d.Sense(context.Background())
			if len(c.Sleeps) != tc.sleeps {
				t.Errorf("%d poll sleeps, want %d", len(c.Sleeps), tc.sleeps)
			}
			for _, dt := range c.Sleeps {
				if dt != 20*time.Millisecond {
					t.Errorf("poll sleep %s, want a fifth of the 100 ms sample period", dt)
				}
			}
			if drivertest.WantErr(t, "Sense", err, tc.err) {
				drivertest.WantNACK(t, "Sense", err, tc.nackAt, tc.nacked)
				return
			}
			if got != tc.want {
				t.Errorf("Sense() = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestSenseHonoursContext(t *testing.T) {
	ops := []i2ctest.IO{{Addr: 0x0D, W: []byte{0x06}, R: []byte{0x00}}}
	d := &Dev{c: i2c.Dev{Bus: drivertest.Playback(t, ops, -1), Addr: 0x0D}, opts: DefaultOpts, clock: clockwork.NewRealClock()}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Sense(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Sense with a cancelled context: %v", err)
	}
}

func TestHalt(t *testing.T) {
	d := &Dev{c: i2c.Dev{Bus: drivertest.Playback(t, []i2ctest.IO{{Addr: 0x0D, W: []byte{0x09, 0x00}}}, -1), Addr: 0x0D}, opts: DefaultOpts}
	if err := d.Halt(); err != nil {
		t.Fatal(err)
	}
}

// Sim → New/Sense through sim.Bus on a fake clock: the decoded field
// matches the simulated one within half a count, and the detector's
// decision follows the bay over hours of simulated parking.
func TestSimRoundTrip(t *testing.T) {
	start := time.Date(2025, 3, 3, 7, 0, 0, 0, time.UTC)
	c := drivertest.NewClock(start)
	bay := sim.NewBay(3, 2*time.Minute)
	if first := bay.NextChange(start); first.Sub(start) < 20*time.Second {
		t.Fatalf("seed gives a car within %s: the detector learns for 10 s; pick another seed", first.Sub(start))
	}
	chip := qmc5883lsim.NewSim(bay, 3)
	chip.SetClock(c)
	bus := sim.NewBus("sim-i2c1")
	bus.Attach(0x0D, chip)

	d, err := New(bus, nil)
	if err != nil {
		t.Fatal(err)
	}
	d.clock = c
	det, err := NewDetector(DefaultDetectorOpts)
	if err != nil {
		t.Fatal(err)
	}
	const halfCount = 100000.0 / 12000 / 2 // nT
	changes, mismatches := 0, 0
	prev := false
	for i := 0; i < 4*3600; i++ {
		c.Advance(time.Second)
		f, err := d.Sense(context.Background())
		if err != nil {
			t.Fatalf("sample %d: %v", i, err)
		}
		for axis, got := range []physic.MagneticFluxDensity{f.X, f.Y, f.Z} {
			if diff := math.Abs(float64(got) - chip.Truth()[axis]*1000); diff > halfCount+0.5 {
				t.Fatalf("sample %d axis %d: decoded %s, simulated %.1f nT", i, axis, got, chip.Truth()[axis]*1000)
			}
		}
		occ, ready := det.Update(c.Now(), f)
		if !ready {
			continue
		}
		want := bay.Occupied(c.Now())
		if occ != want {
			mismatches++
		}
		if want != prev {
			changes++
			prev = want
		}
	}
	if changes < 50 {
		t.Fatalf("only %d bay changes in 4 simulated hours: the test proves little", changes)
	}
	t.Logf("%d changes, %d mismatches", changes, mismatches)
	if mismatches > 0 {
		t.Errorf("detector disagreed with the bay on %d of %d samples over %d changes", mismatches, 4*3600, changes)
	}
}

// A magnet on the lid (300 µT on top of the earth's field) overflows the
// ±2 G range: the simulated chip sets OVL and zeroes the data, as the
// datasheet says, and the driver reports it; at ±8 G it is measured.
func TestSimOverflow(t *testing.T) {
	for _, tc := range []struct {
		rng     Range
		wantErr bool
	}{{Range2G, true}, {Range8G, false}} {
		c := drivertest.NewClock(time.Unix(1000, 0))
		bay := sim.NewBay(1, time.Second)
		for !bay.Occupied(c.Now()) {
			c.Advance(100 * time.Millisecond)
		}
		chip := qmc5883lsim.NewSim(bay, 1)
		chip.SetClock(c)
		chip.SetCar([3]float64{0, 0, 300})
		bus := sim.NewBus("sim-i2c1")
		bus.Attach(0x0D, chip)
		opts := DefaultOpts
		opts.Range = tc.rng
		d, err := New(bus, &opts)
		if err != nil {
			t.Fatal(err)
		}
		d.clock = c
		f, err := d.Sense(context.Background())
		if got := errors.Is(err, ErrOverflow); got != tc.wantErr {
			t.Errorf("range %s: Sense() = %s, %v; want overflow %v", tc.rng, f, err, tc.wantErr)
		}
	}
}

func TestSimRejectsUnknown(t *testing.T) {
	chip := qmc5883lsim.NewSim(nil, 1)
	cases := []struct {
		w, r []byte
		want string
	}{
		{[]byte{0x0E}, []byte{0}, "no register 0x0e"},
		{[]byte{0x00, 0x12}, nil, "read-only"},
		{[]byte{0x0D, 0x00}, nil, "read-only"},
		{[]byte{0x09, 0x03}, nil, "reserved mode"},
		{[]byte{0x0C}, make([]byte, 3), "read past"},
	}
	for _, tc := range cases {
		if err := chip.Tx(tc.w, tc.r); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Tx(%#v, %d bytes): %v, want an error containing %q", tc.w, len(tc.r), err, tc.want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(data(2400, -600, 5040, 0), false)
	f.Add(data(0, 0, 0, 0x02), true)
	f.Add(data(-32768, 32767, 24001, 0x07), false)
	f.Add([]byte{0x01, 0x02}, true)
	f.Fuzz(func(t *testing.T, raw []byte, eight bool) {
		r := Range2G
		if eight {
			r = Range8G
		}
		got, err := decode(raw, r)
		if err != nil {
			return
		}
		limit := 200 * physic.MicroTesla
		if eight {
			limit = 800 * physic.MicroTesla
		}
		for _, v := range []physic.MagneticFluxDensity{got.X, got.Y, got.Z} {
			drivertest.InRange(t, fmt.Sprintf("decode(%x) axis", raw), v, -limit, limit)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	raw := data(2400, -600, 5040, 0)
	for b.Loop() {
		if _, err := decode(raw, Range2G); err != nil {
			b.Fatal(err)
		}
	}
}

// One Sense through the simulated bus (status poll and burst read), the
// waits skipped: the driver's own cost per reading.
func BenchmarkSenseSim(b *testing.B) {
	c := drivertest.NewClock(time.Unix(0, 0))
	chip := qmc5883lsim.NewSim(nil, 1)
	chip.SetClock(c)
	bus := sim.NewBus("sim-i2c1")
	bus.Attach(0x0D, chip)
	opts := DefaultOpts
	opts.Clock = c
	d, err := New(bus, &opts)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		c.Advance(time.Second)
		c.Sleeps = c.Sleeps[:0]
		if _, err := d.Sense(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

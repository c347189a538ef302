package catalog

import (
	"context"
	"encoding/binary"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/internal/drivertest"
	"github.com/cityedge/cityedge/drivers/qmc5883l"
	"github.com/cityedge/cityedge/drivers/sim"
	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/physic"
)

func TestQMC5883LOptions(t *testing.T) {
	d := lookup(t, "qmc5883l")
	if d.Kind != I2C || len(d.Addrs) == 0 || d.Addrs[0] != 0x0D || d.SimChip == nil {
		t.Fatalf("qmc5883l registered as %+v", d)
	}
	cases := []struct {
		src     string
		want    qmc5883l.DetectorOpts
		rng     qmc5883l.Range
		wantErr string
	}{
		{"", qmc5883l.DefaultDetectorOpts, qmc5883l.Range2G, ""},
		{"range = \"8G\"\nthreshold_ut = 45.5\nrelease_ratio = 0.7\nlearn_samples = 30\ndrift_tau = \"1h\"",
			qmc5883l.DetectorOpts{Threshold: 45500 * physic.NanoTesla, ReleaseRatio: 0.7, LearnSamples: 30, DriftTau: time.Hour}, qmc5883l.Range8G, ""},
		{`drift_tau = "0s"`, qmc5883l.DetectorOpts{Threshold: 20 * physic.MicroTesla, ReleaseRatio: 0.5, LearnSamples: 10}, qmc5883l.Range2G, ""},
		{`range = "4G"`, qmc5883l.DetectorOpts{}, 0, `range = "4G"`},
		{`threshold_ut = 0`, qmc5883l.DetectorOpts{}, 0, "threshold_ut = 0"},
		{`threshold_ut = 250`, qmc5883l.DetectorOpts{}, 0, "threshold_ut = 250: want 1 to 200"},
		{"range = \"8G\"\nthreshold_ut = 250", qmc5883l.DetectorOpts{Threshold: 250 * physic.MicroTesla, ReleaseRatio: 0.5, LearnSamples: 10, DriftTau: 10 * time.Minute}, qmc5883l.Range8G, ""},
		{`threshold_ut = nan`, qmc5883l.DetectorOpts{}, 0, "threshold_ut = NaN"},
		{`release_ratio = 1.0`, qmc5883l.DetectorOpts{}, 0, "release_ratio = 1"},
		{`learn_samples = 0`, qmc5883l.DetectorOpts{}, 0, "learn_samples = 0"},
		{`drift_tau = 600`, qmc5883l.DetectorOpts{}, 0, `drift_tau = "600ns"`},
		{`drift_tau = "30d"`, qmc5883l.DetectorOpts{}, 0, `"30d" is not a duration`},
		{`threshold = 20`, qmc5883l.DetectorOpts{}, 0, "strict mode"},
	}
	for _, tc := range cases {
		t.Run(tc.src, func(t *testing.T) {
			opts, err := decodeOpts(t, d, tc.src)
			if drivertest.WantErr(t, "decode", err, tc.wantErr) {
				return
			}
			o := opts.(*qmcOpts)
			if got := o.detector(); got != tc.want {
				t.Errorf("detector options %+v, want %+v", got, tc.want)
			}
			if got := o.chip(0x0D); got.Range != tc.rng || got.Addr != 0x0D {
				t.Errorf("chip options %+v, want range %s", got, tc.rng)
			}
		})
	}
}

// The simulated chip through Open/Read: the earth's field in tesla, then
// occupancy once the baseline is learned; a re-open keeps the baseline.
func TestQMC5883LSimulated(t *testing.T) {
	d := lookup(t, "qmc5883l")
	opts, err := decodeOpts(t, d, "learn_samples = 2")
	if err != nil {
		t.Fatal(err)
	}
	bus := sim.NewBus("sim-i2c1")
	spec := SimSpec{Sensor: "bay-mag-1", Addr: 0x0D, Bay: sim.NewBay(1, time.Hour), Seed: 1}
	bus.Attach(0x0D, d.SimChip(spec, opts))
	target := Target{Sensor: spec.Sensor, Bus: bus, BusName: "1", Addr: 0x0D}
	s, err := d.Open(target, opts)
	if err != nil {
		t.Fatal(err)
	}
	// Earth's field in the simulation: about (21.5, 0.8, 42.6) µT.
	want := map[string]float64{drivers.X: 21.5e-6, drivers.Y: 0.8e-6, drivers.Z: 42.6e-6}
	for i := 0; i < 3; i++ {
		vals, err := s.Read(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		hasOcc := false
		for _, v := range vals {
			switch v.Quantity {
			case drivers.Occupied:
				hasOcc = true
				if v.Bool {
					t.Errorf("read %d: occupied on an empty bay", i)
				}
			default:
				if v.Unit != drivers.UnitTesla || math.Abs(v.Num-want[v.Quantity]) > 2e-6 {
					t.Errorf("read %d: %s = %g %s, want about %g T", i, v.Quantity, v.Num, v.Unit, want[v.Quantity])
				}
			}
		}
		if wantOcc := i >= 1; hasOcc != wantOcc {
			t.Errorf("read %d: occupancy reported %v, want %v (learning 2 samples)", i, hasOcc, wantOcc)
		}
	}
	if err := s.Halt(); err != nil {
		t.Fatal(err)
	}
	// Re-opened (as the sampler does after errors): no second learning.
	s, err = d.Open(target, opts)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := s.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(vals) != 4 || vals[3].Quantity != drivers.Occupied {
		t.Errorf("first read after re-open: %+v, want x, y, z and occupied", vals)
	}
}

func TestQMC5883LWrongChip(t *testing.T) {
	d := lookup(t, "qmc5883l")
	pb := drivertest.Playback(t, []i2ctest.IO{{Addr: 0x0D, W: []byte{0x0D}, R: []byte{0x00}}}, -1)
	_, err := d.Open(Target{Sensor: "m", Bus: pb, BusName: "1", Addr: 0x0D}, nil)
	if err == nil || !strings.Contains(err.Error(), "bus 1 address 0x0d: qmc5883l: chip id 0x00") {
		t.Errorf("Open on a chip with id 0x00: %v", err)
	}
	bus := sim.NewBus("sim-i2c1")
	if _, err := d.Open(Target{Sensor: "m", Bus: bus, BusName: "1", Addr: 0x0D}, nil); err == nil || !strings.Contains(err.Error(), "no acknowledge") {
		t.Errorf("Open with nothing on the bus: %v", err)
	}
}

// The magnetometer keeps its detector's state for the agent: nothing while
// learning, the learned baseline after, restored into a sensor that has
// never learned; damaged bytes are refused.
func TestQMC5883LStateKeeper(t *testing.T) {
	d := lookup(t, "qmc5883l")
	opts, err := decodeOpts(t, d, "learn_samples = 1")
	if err != nil {
		t.Fatal(err)
	}
	open := func(name string) StateKeeper {
		bus := sim.NewBus("sim-i2c1")
		bus.Attach(0x0D, d.SimChip(SimSpec{Sensor: name, Addr: 0x0D, Bay: sim.NewBay(1, time.Hour), Seed: 1}, opts))
		s, err := d.Open(Target{Sensor: name, Bus: bus, BusName: "1", Addr: 0x0D}, opts)
		if err != nil {
			t.Fatal(err)
		}
		k, ok := s.(StateKeeper)
		if !ok {
			t.Fatalf("%T is not a StateKeeper", s)
		}
		return k
	}
	first := open("bay-state-1")
	if _, err := first.State(); err == nil {
		t.Error("State before learning: no error")
	}
	if _, err := first.Read(context.Background()); err != nil {
		t.Fatal(err)
	}
	state, err := first.State()
	if err != nil {
		t.Fatal(err)
	}
	second := open("bay-state-2")
	if err := second.Restore([]byte("garbage")); err == nil {
		t.Error("Restore accepted garbage")
	}
	if err := second.Restore(state); err != nil {
		t.Fatal(err)
	}
	if again, err := second.State(); err != nil || string(again) != string(state) {
		t.Errorf("restored state reads back as %x, %v; want %x", again, err, state)
	}
}

// Time comes from the target's clock: the driver waits on it and the
// detector stamps each sample with it (the last eight bytes of its state),
// not with the wall clock.
func TestQMC5883LUsesTargetClock(t *testing.T) {
	d := lookup(t, "qmc5883l")
	opts, err := decodeOpts(t, d, "learn_samples = 1")
	if err != nil {
		t.Fatal(err)
	}
	c := drivertest.NewClock(time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC))
	chip := d.SimChip(SimSpec{Sensor: "bay-clock", Addr: 0x0D, Bay: sim.NewBay(1, time.Hour), Seed: 1}, opts)
	chip.(interface{ SetClock(clockwork.Clock) }).SetClock(c)
	bus := sim.NewBus("sim-i2c1")
	bus.Attach(0x0D, chip)
	s, err := d.Open(Target{Sensor: "bay-clock", Bus: bus, BusName: "1", Addr: 0x0D, Clock: c}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read(context.Background()); err != nil {
		t.Fatal(err)
	}
	state, err := s.(StateKeeper).State()
	if err != nil {
		t.Fatal(err)
	}
	if last := time.Unix(0, int64(binary.BigEndian.Uint64(state[len(state)-8:]))); !last.Equal(c.Now()) {
		t.Errorf("sample stamped %v, want the target clock's %v", last, c.Now())
	}
	if len(c.Sleeps) == 0 {
		t.Error("the driver did not wait on the target's clock")
	}
}

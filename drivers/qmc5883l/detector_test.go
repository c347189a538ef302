package qmc5883l

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/physic"
)

func uT(x, y, z float64) Field {
	return Field{
		X: physic.MagneticFluxDensity(x * 1000),
		Y: physic.MagneticFluxDensity(y * 1000),
		Z: physic.MagneticFluxDensity(z * 1000),
	}
}

type obs struct {
	after    time.Duration // since the previous sample
	f        Field
	occupied bool
	ready    bool
}

func TestDetector(t *testing.T) {
	opts := DetectorOpts{Threshold: 20 * physic.MicroTesla, ReleaseRatio: 0.5, LearnSamples: 3, DriftTau: 10 * time.Minute}
	frozen := opts
	frozen.DriftTau = 0
	s := time.Second
	base := uT(21, 1, 43)
	cases := []struct {
		name string
		opts DetectorOpts
		seq  []obs
	}{
		{"learning then empty", opts, []obs{
			{s, base, false, false},
			{s, base, false, false},
			{s, base, false, true},
			{s, base, false, true},
		}},
		{"hysteresis", opts, []obs{
			{s, base, false, false}, {s, base, false, false}, {s, base, false, true},
			{s, uT(21, 1, 43+19.9), false, true}, // below threshold
			{s, uT(21, 1, 43+25), true, true},    // car
			{s, uT(21, 1, 43+15), true, true},    // in the band: stays occupied
			{s, uT(21, 1, 43+10.5), true, true},  // still above release
			{s, uT(21, 1, 43+9), false, true},    // below release: empty
			{s, uT(21, 1, 43+15), false, true},   // in the band: stays empty
			{s, uT(21, 1, 43+21), true, true},
		}},
		{"deviation in any direction", opts, []obs{
			{s, base, false, false}, {s, base, false, false}, {s, base, false, true},
			{s, uT(21-15, 1+15, 43), true, true}, // |(−15, 15, 0)| = 21.2 µT
			{s, uT(21, 1, 43-25), true, true},
			{s, uT(21, 1, 43), false, true},
		}},
		{"a car during learning restarts it", opts, []obs{
			{s, base, false, false},
			{s, uT(21, 1, 73), false, false}, // a car drives over: learning starts again here
			{s, uT(21, 1, 73), false, false},
			{s, uT(21, 1, 73), false, true}, // baseline learned with the car standing
			{s, base, true, true},           // so its leaving reads as a change
		}},
		{"noise does not restart learning", opts, []obs{
			{s, base, false, false},
			{s, uT(21.3, 0.8, 43.2), false, false},
			{s, uT(20.8, 1.1, 42.9), false, true},
		}},
		{"parked for a day is not learned away", opts, []obs{
			{s, base, false, false}, {s, base, false, false}, {s, base, false, true},
			{s, uT(21, 1, 73), true, true},
			{24 * time.Hour, uT(21, 1, 73), true, true},
			{24 * time.Hour, uT(21, 1, 73), true, true},
			{s, base, false, true},
		}},
		{"slow drift is followed while empty", opts, []obs{
			{s, base, false, false}, {s, base, false, false}, {s, base, false, true},
			// The field creeps by 8 µT (below the release level) and stays:
			// the baseline follows, so a further 14 µT is not a car
			// although it is 22 µT from the learned baseline.
			{10 * time.Minute, uT(21, 1, 51), false, true},
			{time.Hour, uT(21, 1, 51), false, true},
			{time.Hour, uT(21, 1, 51), false, true},
			{s, uT(21, 1, 65), false, true},
		}},
		{"frozen baseline does not follow drift", frozen, []obs{
			{s, base, false, false}, {s, base, false, false}, {s, base, false, true},
			{10 * time.Minute, uT(21, 1, 51), false, true},
			{time.Hour, uT(21, 1, 51), false, true},
			{s, uT(21, 1, 65), true, true},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := NewDetector(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			now := time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)
			for i, o := range tc.seq {
				now = now.Add(o.after)
				occ, ready := d.Update(now, o.f)
				if occ != o.occupied || ready != o.ready {
					b, _ := d.Baseline()
					t.Fatalf("sample %d %s: occupied %v ready %v, want %v %v (baseline %s)", i, o.f, occ, ready, o.occupied, o.ready, b)
				}
			}
		})
	}
}

// The baseline follows an empty bay's drift as an exponential moving average
// in time: after one time constant it has covered 1 − 1/e of a step,
// whatever the sampling interval.
func TestDetectorDriftRate(t *testing.T) {
	for _, every := range []time.Duration{time.Second, 10 * time.Second, time.Minute} {
		d, err := NewDetector(DetectorOpts{Threshold: 20 * physic.MicroTesla, ReleaseRatio: 0.5, LearnSamples: 1, DriftTau: 10 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		now := time.Unix(0, 0)
		d.Update(now, uT(0, 0, 0))
		for el := time.Duration(0); el < 10*time.Minute; el += every {
			now = now.Add(every)
			d.Update(now, uT(0, 0, 5))
		}
		b, ok := d.Baseline()
		want := 5000 * (1 - math.Exp(-1))
		if !ok || math.Abs(float64(b.Z)-want) > 2 {
			t.Errorf("sampled every %s: baseline Z %s after one time constant, want %.0f nT", every, b.Z, want)
		}
	}
}

func TestDetectorOptsValidate(t *testing.T) {
	cases := []struct {
		mod  func(*DetectorOpts)
		want string
	}{
		{func(o *DetectorOpts) {}, ""},
		{func(o *DetectorOpts) { o.Threshold = 0 }, "threshold"},
		{func(o *DetectorOpts) { o.ReleaseRatio = 1 }, "release ratio"},
		{func(o *DetectorOpts) { o.ReleaseRatio = 0 }, "release ratio"},
		{func(o *DetectorOpts) { o.ReleaseRatio = math.NaN() }, "release ratio"},
		{func(o *DetectorOpts) { o.LearnSamples = 0 }, "learn samples"},
		{func(o *DetectorOpts) { o.DriftTau = -time.Second }, "drift"},
	}
	for _, tc := range cases {
		o := DefaultDetectorOpts
		tc.mod(&o)
		_, err := NewDetector(o)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want error containing %q", o, err, tc.want)
		}
	}
}

func BenchmarkDetectorUpdate(b *testing.B) {
	d, err := NewDetector(DefaultDetectorOpts)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Unix(0, 0)
	f := uT(21, 1, 43)
	for b.Loop() {
		now = now.Add(time.Second)
		d.Update(now, f)
	}
}

// A restart with a car parked: the state saved before it, restored into a
// new detector, makes the car's leaving exactly one change to free. Without
// it the new detector would learn the car as the empty bay and call the bay
// occupied once the car has gone.
func TestDetectorStateSurvivesRestart(t *testing.T) {
	opts := DetectorOpts{Threshold: 20 * physic.MicroTesla, ReleaseRatio: 0.5, LearnSamples: 3, DriftTau: 10 * time.Minute}
	empty, car := uT(21, 1, 43), uT(21, 1, 73)
	now := time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)
	feed := func(d *Detector, fields ...Field) (changes []bool) {
		prev, known := false, false
		for _, f := range fields {
			now = now.Add(time.Second)
			occ, ready := d.Update(now, f)
			if ready && (!known || occ != prev) {
				changes = append(changes, occ)
			}
			prev, known = occ, ready
		}
		return changes
	}
	before, err := NewDetector(opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := feed(before, empty, empty, empty, car, car); !slices.Equal(got, []bool{false, true}) {
		t.Fatalf("before the restart: changes %v, want [false true]", got)
	}
	state, err := before.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}

	after, err := NewDetector(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := after.UnmarshalBinary(state); err != nil {
		t.Fatal(err)
	}
	if got := feed(after, car, car, empty, empty, empty); !slices.Equal(got, []bool{true, false}) {
		t.Errorf("restored: changes %v, want [true false]: still occupied, then exactly one change to free", got)
	}

	// What the state prevents: a detector that learns with the car there.
	fresh, err := NewDetector(opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := feed(fresh, car, car, car, empty, empty); !slices.Equal(got, []bool{false, true}) {
		t.Errorf("not restored: changes %v, want [false true] (the car learned as the empty bay)", got)
	}
}

func TestDetectorStateRefused(t *testing.T) {
	d, err := NewDetector(DetectorOpts{Threshold: 20 * physic.MicroTesla, ReleaseRatio: 0.5, LearnSamples: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.MarshalBinary(); !errors.Is(err, ErrState) {
		t.Errorf("MarshalBinary while learning: %v, want ErrState", err)
	}
	d.Update(time.Unix(100, 0), uT(21, 1, 43))
	good, err := d.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	nan := math.Float64bits(math.NaN())
	for _, tc := range []struct {
		name  string
		state []byte
		want  string
	}{
		{"empty", nil, "0 bytes"},
		{"truncated", good[:20], "20 bytes"},
		{"longer", append(append([]byte(nil), good...), 0), "35 bytes"},
		{"other version", mod(func(b []byte) []byte { b[0] = 2; return b }), "version 2"},
		{"unknown flags", mod(func(b []byte) []byte { b[1] = 0x82; return b }), "flags"},
		{"NaN axis", mod(func(b []byte) []byte {
			for i := range 8 {
				b[2+i] = byte(nan >> (56 - 8*i))
			}
			return b
		}), "axis X"},
		{"beyond the range", mod(func(b []byte) []byte { b[10] = 0x7F; return b }), "axis Y"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fresh, err := NewDetector(DetectorOpts{Threshold: 20 * physic.MicroTesla, ReleaseRatio: 0.5, LearnSamples: 2})
			if err != nil {
				t.Fatal(err)
			}
			err = fresh.UnmarshalBinary(tc.state)
			if !errors.Is(err, ErrState) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("UnmarshalBinary: %v, want ErrState naming %q", err, tc.want)
			}
			if _, ready := fresh.Update(time.Unix(200, 0), uT(0, 0, 0)); ready {
				t.Error("a refused state left the detector as if restored")
			}
		})
	}
}

func FuzzDetectorState(f *testing.F) {
	d, _ := NewDetector(DetectorOpts{Threshold: 20 * physic.MicroTesla, ReleaseRatio: 0.5, LearnSamples: 1})
	d.Update(time.Unix(100, 0), uT(21, 1, 43))
	good, _ := d.MarshalBinary()
	f.Add(good)
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, _ := NewDetector(DefaultDetectorOpts)
		if err := d.UnmarshalBinary(b); err != nil {
			return
		}
		again, err := d.MarshalBinary()
		if err != nil || !slices.Equal(again, b) {
			t.Fatalf("restored %x, saved again %x, %v", b, again, err)
		}
	})
}

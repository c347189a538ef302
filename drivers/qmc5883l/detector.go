package qmc5883l

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"periph.io/x/conn/v3/physic"
)

// DetectorOpts tunes the occupancy detector (see the package documentation).
type DetectorOpts struct {
	// Threshold is the deviation from the baseline above which the bay
	// becomes occupied.
	Threshold physic.MagneticFluxDensity
	// ReleaseRatio (0 < r < 1) sets the level below which an occupied bay
	// becomes empty again: Threshold × ReleaseRatio.
	ReleaseRatio float64
	// LearnSamples is how many consistent samples form the baseline.
	LearnSamples int
	// DriftTau is the time constant with which the baseline follows the
	// field while the bay is empty; 0 freezes the baseline.
	DriftTau time.Duration
}

// DefaultDetectorOpts: a car over an in-ground sensor shifts the field by
// some 20 to 100 µT, while the chip's noise at OSR 512 is well under 1 µT
// and a car in the next bay moves it by a few µT; 20 µT in and 10 µT out
// separate these. Ten samples average the noise out; a ten-minute time
// constant follows temperature drift over hours without creeping towards a
// car that arrives slowly.
var DefaultDetectorOpts = DetectorOpts{
	Threshold:    20 * physic.MicroTesla,
	ReleaseRatio: 0.5,
	LearnSamples: 10,
	DriftTau:     10 * time.Minute,
}

// Limits of the detector options. A threshold under 1 µT is inside the
// chip's noise; more than 1000 learning samples or a drift time constant
// over a week would never settle at a bay's sampling rates, and one under a
// second follows a car.
const (
	MinThreshold    = physic.MicroTesla
	MaxLearnSamples = 1000
	MinDriftTau     = time.Second
	MaxDriftTau     = 7 * 24 * time.Hour
)

// OptionError is a detector option the detector cannot work with.
type OptionError struct {
	Field  string // the DetectorOpts field: Threshold, ReleaseRatio, LearnSamples or DriftTau
	Value  any
	Reason string // what would do, e.g. "want 1 to 1000"
}

var optionNames = map[string]string{
	"Threshold": "threshold", "ReleaseRatio": "release ratio", "LearnSamples": "learn samples", "DriftTau": "drift time constant",
}

func (e *OptionError) Error() string {
	return fmt.Sprintf("%s %v: %s", optionNames[e.Field], e.Value, e.Reason)
}

// Validate reports options the detector cannot work with, as an
// *OptionError naming the first such field. It is the one place these
// rules live: NewDetector and the catalog's config check both call it.
func (o DetectorOpts) Validate() error {
	switch {
	case o.Threshold < MinThreshold:
		return &OptionError{"Threshold", o.Threshold, fmt.Sprintf("want at least %s", MinThreshold)}
	case !(o.ReleaseRatio > 0 && o.ReleaseRatio < 1):
		return &OptionError{"ReleaseRatio", o.ReleaseRatio, "want a number between 0 and 1 (exclusive)"}
	case o.LearnSamples < 1 || o.LearnSamples > MaxLearnSamples:
		return &OptionError{"LearnSamples", o.LearnSamples, fmt.Sprintf("want 1 to %d", MaxLearnSamples)}
	case o.DriftTau < 0 || (o.DriftTau > 0 && o.DriftTau < MinDriftTau) || o.DriftTau > MaxDriftTau:
		return &OptionError{"DriftTau", o.DriftTau, fmt.Sprintf("want 0s (frozen) or a duration from %v to %v", MinDriftTau, MaxDriftTau)}
	}
	return nil
}

// ValidateFor is Validate for a chip measuring at range r: the threshold
// must also lie within r's full scale.
func (o DetectorOpts) ValidateFor(r Range) error {
	if fs := r.FullScale(); o.Threshold < MinThreshold || o.Threshold > fs {
		return &OptionError{"Threshold", o.Threshold, fmt.Sprintf("want %g to %g µT, within the %s range",
			float64(MinThreshold)/float64(physic.MicroTesla), float64(fs)/float64(physic.MicroTesla), r)}
	}
	return o.Validate()
}

// Detector decides occupancy from a stream of fields. It is pure: its state
// changes only through Update (and UnmarshalBinary, which restores what
// MarshalBinary saved), and time comes in with each sample. It is not safe
// for concurrent use.
type Detector struct {
	opts           DetectorOpts
	enter, release float64 // nT

	learned  int
	sum      [3]float64 // learning: running sum, nT
	baseline [3]float64 // nT
	last     time.Time
	occupied bool
}

// NewDetector returns a detector that starts by learning its baseline.
func NewDetector(o DetectorOpts) (*Detector, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("qmc5883l: detector: %w", err)
	}
	return &Detector{opts: o, enter: float64(o.Threshold), release: float64(o.Threshold) * o.ReleaseRatio}, nil
}

// Update feeds the field f measured at t. ready is false while the baseline
// is being learned; occupied is meaningful only when ready.
func (d *Detector) Update(t time.Time, f Field) (occupied, ready bool) {
	v := [3]float64{float64(f.X), float64(f.Y), float64(f.Z)}
	if d.learned < d.opts.LearnSamples {
		if d.learned > 0 {
			var mean [3]float64
			for i := range mean {
				mean[i] = d.sum[i] / float64(d.learned)
			}
			if dist(v, mean) > d.release {
				// Something moved while learning: start again from here.
				d.learned, d.sum = 0, [3]float64{}
			}
		}
		for i := range v {
			d.sum[i] += v[i]
		}
		d.learned++
		d.last = t
		if d.learned < d.opts.LearnSamples {
			return false, false
		}
		for i := range v {
			d.baseline[i] = d.sum[i] / float64(d.learned)
		}
		return false, true
	}

	dev := dist(v, d.baseline)
	switch {
	case !d.occupied && dev > d.enter:
		d.occupied = true
	case d.occupied && dev < d.release:
		d.occupied = false
	}
	if !d.occupied && dev < d.release && d.opts.DriftTau > 0 {
		// Exponential moving average in time, so the drift rate does not
		// depend on how often the sensor is read.
		if dt := t.Sub(d.last); dt > 0 {
			alpha := 1 - math.Exp(-dt.Seconds()/d.opts.DriftTau.Seconds())
			for i := range v {
				d.baseline[i] += alpha * (v[i] - d.baseline[i])
			}
		}
	}
	if t.After(d.last) {
		d.last = t
	}
	return d.occupied, true
}

// Baseline returns the learned baseline, and false while it is being learned.
func (d *Detector) Baseline() (Field, bool) {
	if d.learned < d.opts.LearnSamples {
		return Field{}, false
	}
	b := d.baseline
	return Field{
		X: physic.MagneticFluxDensity(math.Round(b[0])),
		Y: physic.MagneticFluxDensity(math.Round(b[1])),
		Z: physic.MagneticFluxDensity(math.Round(b[2])),
	}, true
}

func dist(a, b [3]float64) float64 {
	return math.Sqrt((a[0]-b[0])*(a[0]-b[0]) + (a[1]-b[1])*(a[1]-b[1]) + (a[2]-b[2])*(a[2]-b[2]))
}

// The detector's state as MarshalBinary writes it: a version byte, a flags
// byte (bit 0: occupied), the baseline's three axes as float64 nT, and the
// time of the last sample in Unix nanoseconds, all big-endian.
const (
	stateVersion = 1
	stateLen     = 1 + 1 + 3*8 + 8
	// stateLimit bounds a plausible baseline axis: the chip's widest range
	// is ±8 G (800 µT).
	stateLimit = 800 * float64(physic.MicroTesla)
)

// ErrState reports saved detector state that cannot be restored: from
// another version, damaged, or not a detector's state at all.
var ErrState = errors.New("qmc5883l: detector state")

// MarshalBinary returns what the detector has learned (its baseline, the
// occupied decision and the time of the last sample) so that a restart can
// go on from it instead of learning again, perhaps with a car standing in
// the bay. It fails while the baseline is still being learned: there is
// nothing to keep yet.
func (d *Detector) MarshalBinary() ([]byte, error) {
	if d.learned < d.opts.LearnSamples {
		return nil, fmt.Errorf("%w: baseline not learned yet", ErrState)
	}
	b := make([]byte, 0, stateLen)
	b = append(b, stateVersion, 0)
	if d.occupied {
		b[1] = 1
	}
	for _, v := range d.baseline {
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(v))
	}
	return binary.BigEndian.AppendUint64(b, uint64(d.last.UnixNano())), nil
}

// UnmarshalBinary restores state that MarshalBinary returned: the detector
// then reports from its first sample on, with the restored baseline and
// decision. State that is damaged, from another version or implausible is
// refused with an error wrapping ErrState and leaves the detector as it
// was (learning afresh), so a caller can log it and go on.
func (d *Detector) UnmarshalBinary(b []byte) error {
	if len(b) != stateLen {
		return fmt.Errorf("%w: %d bytes, want %d", ErrState, len(b), stateLen)
	}
	if b[0] != stateVersion {
		return fmt.Errorf("%w: version %d, want %d", ErrState, b[0], stateVersion)
	}
	if b[1]&^1 != 0 {
		return fmt.Errorf("%w: unknown flags %#02x", ErrState, b[1])
	}
	var base [3]float64
	for i := range base {
		v := math.Float64frombits(binary.BigEndian.Uint64(b[2+8*i:]))
		if !(math.Abs(v) <= stateLimit) { // also refuses NaN
			return fmt.Errorf("%w: baseline axis %c %g nT is beyond ±%g nT", ErrState, "XYZ"[i], v, stateLimit)
		}
		base[i] = v
	}
	d.baseline, d.occupied = base, b[1]&1 != 0
	d.last = time.Unix(0, int64(binary.BigEndian.Uint64(b[26:])))
	d.learned, d.sum = d.opts.LearnSamples, [3]float64{}
	return nil
}

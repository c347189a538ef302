package catalog

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/qmc5883l"
	"github.com/cityedge/cityedge/drivers/qmc5883l/qmc5883lsim"
	"github.com/cityedge/cityedge/drivers/sim"
	"periph.io/x/conn/v3/physic"
)

// qmc5883lDriver is the catalog entry of driver "qmc5883l".
var qmc5883lDriver = Driver{
	Name:    "qmc5883l",
	Kind:    I2C,
	Chips:   "QST QMC5883L magnetometer (in-ground vehicle detector)",
	Addrs:   []uint16{0x0D},
	Options: func() any { return defaultQMCOpts() },
	Open:    openQMC5883L,
	SimChip: func(s SimSpec, _ any) sim.Chip { return qmc5883lsim.NewSim(simBay(s), s.Seed) },
}

// qmcOpts are the options of a qmc5883l sensor.
type qmcOpts struct {
	// Range is the chip's full scale: "2G" (±200 µT, default) or "8G".
	Range string `toml:"range"`
	// ThresholdUT is the deviation from the empty-bay baseline, in µT,
	// above which the bay is occupied (default 20).
	ThresholdUT float64 `toml:"threshold_ut"`
	// ReleaseRatio: the bay is empty again below threshold × ratio
	// (default 0.5).
	ReleaseRatio float64 `toml:"release_ratio"`
	// LearnSamples is how many readings of the empty bay form the
	// baseline (default 10).
	LearnSamples int `toml:"learn_samples"`
	// DriftTau is the time constant with which the baseline follows slow
	// drift while the bay is empty (default "10m"; "0s" freezes it).
	DriftTau Duration `toml:"drift_tau"`
	// OccupancyOnly sends only the occupied decision, not the raw field
	// (data minimisation: the field says more about a vehicle than presence).
	OccupancyOnly bool `toml:"occupancy_only"`
}

func defaultQMCOpts() *qmcOpts {
	d := qmc5883l.DefaultDetectorOpts
	return &qmcOpts{
		Range:        "2G",
		ThresholdUT:  float64(d.Threshold) / float64(physic.MicroTesla),
		ReleaseRatio: d.ReleaseRatio,
		LearnSamples: d.LearnSamples,
		DriftTau:     Duration(d.DriftTau),
	}
}

// Validate checks the options, naming the offending key.
func (o *qmcOpts) Validate() error {
	full := 200.0
	switch o.Range {
	case "2G":
	case "8G":
		full = 800
	default:
		return fmt.Errorf("range = %q: want \"2G\" or \"8G\"", o.Range)
	}
	if !(o.ThresholdUT >= 1 && o.ThresholdUT <= full) {
		return fmt.Errorf("threshold_ut = %g: want 1 to %g (µT, within the ±%s range)", o.ThresholdUT, full, o.Range)
	}
	if !(o.ReleaseRatio > 0 && o.ReleaseRatio < 1) {
		return fmt.Errorf("release_ratio = %g: want a number between 0 and 1 (exclusive)", o.ReleaseRatio)
	}
	if o.LearnSamples < 1 || o.LearnSamples > 1000 {
		return fmt.Errorf("learn_samples = %d: want 1 to 1000", o.LearnSamples)
	}
	if d := o.DriftTau.D(); d < 0 || (d > 0 && d < time.Second) || d > 7*24*time.Hour {
		return fmt.Errorf("drift_tau = %q: want 0s (frozen) or a duration from 1s to 168h, with its unit (e.g. \"10m\")", d)
	}
	return nil
}

func (o *qmcOpts) chip(addr uint16) qmc5883l.Opts {
	c := qmc5883l.DefaultOpts
	c.Addr = addr
	if o.Range == "8G" {
		c.Range = qmc5883l.Range8G
	}
	return c
}

func (o *qmcOpts) detector() qmc5883l.DetectorOpts {
	return qmc5883l.DetectorOpts{
		Threshold:    physic.MagneticFluxDensity(math.Round(o.ThresholdUT * float64(physic.MicroTesla))),
		ReleaseRatio: o.ReleaseRatio,
		LearnSamples: o.LearnSamples,
		DriftTau:     o.DriftTau.D(),
	}
}

// qmcDetectors keeps each sensor's detector across re-opens: the sampler
// re-opens a sensor after repeated bus errors, possibly while a car stands
// over it, and learning the baseline again then would take the car for the
// empty bay. Keyed by sensor, place and detector options, so a changed
// configuration starts afresh.
var qmcDetectors = struct {
	sync.Mutex
	m map[string]*qmcDetector
}{m: map[string]*qmcDetector{}}

// qmcDetector is a detector with its lock: an old and a new sensor for the
// same bay may overlap briefly while the sampler re-opens.
type qmcDetector struct {
	mu  sync.Mutex
	det *qmc5883l.Detector
}

func detectorFor(t Target, o *qmcOpts) (*qmcDetector, error) {
	key := fmt.Sprintf("%s|%s|%+v", t.Sensor, t.Where(), *o)
	qmcDetectors.Lock()
	defer qmcDetectors.Unlock()
	if d := qmcDetectors.m[key]; d != nil {
		return d, nil
	}
	det, err := qmc5883l.NewDetector(o.detector())
	if err != nil {
		return nil, err
	}
	d := &qmcDetector{det: det}
	qmcDetectors.m[key] = d
	return d, nil
}

func openQMC5883L(t Target, opts any) (drivers.Sensor, error) {
	o, ok := opts.(*qmcOpts)
	if opts == nil {
		o, ok = defaultQMCOpts(), true
	}
	if !ok {
		return nil, fmt.Errorf("qmc5883l: options of type %T", opts)
	}
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("qmc5883l: %w", err)
	}
	c := o.chip(t.Addr)
	dev, err := qmc5883l.New(t.Bus, &c)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.Where(), err)
	}
	det, err := detectorFor(t, o)
	if err != nil {
		return nil, err
	}
	return &magnetometer{dev: dev, det: det, where: t.Where(), occupancyOnly: o.OccupancyOnly}, nil
}

// magnetometer adapts a QMC5883L and its detector to drivers.Sensor.
type magnetometer struct {
	dev           *qmc5883l.Dev
	det           *qmcDetector
	where         string
	occupancyOnly bool
}

func (m *magnetometer) Read(ctx context.Context) ([]drivers.Value, error) {
	f, err := m.dev.Sense(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.where, err)
	}
	tesla := func(b physic.MagneticFluxDensity) float64 { return float64(b) / float64(physic.Tesla) }
	vals := []drivers.Value{
		drivers.Number(drivers.X, drivers.UnitTesla, tesla(f.X)),
		drivers.Number(drivers.Y, drivers.UnitTesla, tesla(f.Y)),
		drivers.Number(drivers.Z, drivers.UnitTesla, tesla(f.Z)),
	}
	if m.occupancyOnly {
		vals = vals[:0]
	}
	m.det.mu.Lock()
	occ, ready := m.det.det.Update(time.Now(), f)
	m.det.mu.Unlock()
	if ready {
		vals = append(vals, drivers.Flag(drivers.Occupied, occ))
	}
	return vals, nil
}

func (m *magnetometer) Halt() error    { return m.dev.Halt() }
func (m *magnetometer) String() string { return m.dev.String() }

// State implements StateKeeper: the bay detector's learned baseline and
// decision (qmc5883l.Detector.MarshalBinary).
func (m *magnetometer) State() ([]byte, error) {
	m.det.mu.Lock()
	defer m.det.mu.Unlock()
	return m.det.det.MarshalBinary()
}

// Restore implements StateKeeper (qmc5883l.Detector.UnmarshalBinary).
func (m *magnetometer) Restore(b []byte) error {
	m.det.mu.Lock()
	defer m.det.mu.Unlock()
	return m.det.det.UnmarshalBinary(b)
}

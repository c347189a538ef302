package catalog

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"

	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/internal/wait"
	"github.com/cityedge/cityedge/drivers/qmc5883l"
	"github.com/cityedge/cityedge/drivers/qmc5883l/qmc5883lsim"
	"github.com/cityedge/cityedge/drivers/sim"
	"github.com/jonboulle/clockwork"
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

// Validate checks the options, naming the offending key. Besides the
// range's name, the rules are the chip package's
// (qmc5883l.DetectorOpts.ValidateFor); this only says them in config terms.
func (o *qmcOpts) Validate() error {
	if o.Range != "2G" && o.Range != "8G" {
		return fmt.Errorf("range = %q: want \"2G\" or \"8G\"", o.Range)
	}
	err := o.detector().ValidateFor(o.chip(0).Range)
	var oe *qmc5883l.OptionError
	if !errors.As(err, &oe) {
		return err
	}
	switch oe.Field {
	case "Threshold":
		return fmt.Errorf("threshold_ut = %g: %s", o.ThresholdUT, oe.Reason)
	case "ReleaseRatio":
		return fmt.Errorf("release_ratio = %g: %s", o.ReleaseRatio, oe.Reason)
	case "LearnSamples":
		return fmt.Errorf("learn_samples = %d: %s", o.LearnSamples, oe.Reason)
	case "DriftTau":
		return fmt.Errorf("drift_tau = %q: %s, with its unit (e.g. \"10m\")", o.DriftTau.D(), oe.Reason)
	}
	return err
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
	threshold := physic.MagneticFluxDensity(-1) // what no number converts to: refused
	if ut := o.ThresholdUT; ut >= 0 && ut <= 1e6 {
		threshold = physic.MagneticFluxDensity(math.Round(ut * float64(physic.MicroTesla)))
	}
	return qmc5883l.DetectorOpts{
		Threshold:    threshold,
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
	c := o.chip(t.Addr)
	c.Clock = t.Clock
	dev, err := qmc5883l.New(t.Bus, &c)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.Where(), err)
	}
	det, err := detectorFor(t, o)
	if err != nil {
		return nil, err
	}
	return &magnetometer{dev: dev, det: det, where: t.Where(), occupancyOnly: o.OccupancyOnly, clock: wait.Clock(t.Clock)}, nil
}

// magnetometer adapts a QMC5883L and its detector to drivers.Sensor.
type magnetometer struct {
	dev           *qmc5883l.Dev
	det           *qmcDetector
	where         string
	occupancyOnly bool
	clock         clockwork.Clock // the time of each sample, for the detector's drift
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
	occ, ready := m.det.det.Update(m.clock.Now(), f)
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

// Package guidance is parking guidance at the edge: it turns the parking
// sensors' events into the state of each bay (free, occupied or unknown) and
// live counts per zone, and says what the zone's message, its Smart Data
// Models documents and its street sign carry.
//
// The package is pure: it starts no goroutines, does no I/O and reads time
// only from the injected clock. The agent feeds it the sampler's events
// (Opened, Closed, Fault, Reading), calls Tick when Deadline comes (or on
// any timer), and publishes what each call returns. Every call returns the
// zones and bays that changed, with the zone's seq already increased.
//
// A bay is unknown while its sensor is not open, is in fault, has given no
// reading since it was opened, or has given none for 3 × its interval. An
// unknown bay never counts as free: guiding a driver to a bay nobody can see
// is the failure this package exists to prevent. For every zone at every
// moment free + occupied + unknown = total.
package guidance

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
)

// StaleAfter is how many sensor intervals without a reading make a bay
// unknown.
const StaleAfter = 3

// State is what is known of one bay.
type State uint8

// Bay states; the names are the ParkingSpot model's status values.
const (
	Unknown State = iota
	Free
	Occupied
)

func (s State) String() string {
	switch s {
	case Unknown:
		return "unknown"
	case Free:
		return "free"
	case Occupied:
		return "occupied"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Zone is one [[zones]] table.
type Zone struct {
	Name string
	// Bays are the names of the parking sensors in the zone.
	Bays []string
	// Category holds ParkingGroup categories; nil means DefaultCategory.
	Category []string
	// Location is the zone's point or area, or nil.
	Location *Location
	// Site is the parking site the zone belongs to; "" means Config.Site.
	Site string
}

// Sensor is what the guidance needs of one configured sensor.
type Sensor struct {
	Driver string // for messages
	// Parking is true for a sensor that reports occupied (a bay sensor).
	Parking bool
	// Interval is the sensor's sampling interval; a bay with no reading
	// for StaleAfter × Interval is unknown.
	Interval time.Duration
	// Location is the sensor's [lon, lat] point, or nil.
	Location *Location
}

// Config is what the guidance is built from.
type Config struct {
	AgentID string
	// Site is agent.site: the parking site of zones that name none; ""
	// means AgentID.
	Site string
	// SmartDataModels is [guidance] smart_data_models: every bay then needs
	// a location.
	SmartDataModels bool
	Zones           []Zone
	// Sensors holds every configured sensor by name.
	Sensors map[string]Sensor
}

// ZoneState is one zone's counts at one moment: the zone message.
type ZoneState struct {
	Zone     string
	Free     int
	Occupied int
	Unknown  int
	Total    int
	// Changed is when the counts last changed (the clock's time).
	Changed time.Time
	// Seq increases by one with every change of the zone. The caller
	// keeps the newest across restarts and hands it back to New.
	Seq uint64
}

// BayState is one bay's state and when it took it.
type BayState struct {
	Sensor  string
	Zone    string
	State   State
	Changed time.Time
}

// Update is what changed in one call: the zones whose counts changed (each
// once, seq increased) and the bays whose state changed, in configuration
// order.
type Update struct {
	Zones []ZoneState
	Bays  []BayState
}

// Bay returns the change of one bay in u, if it changed. A Reading whose
// own bay changed to free or occupied is a state change, or the bay's first
// state since start or since a fault cleared: such a reading ranks as
// occupancy (DECISIONS 8); a re-report of an unchanged state does not.
func (u Update) Bay(sensor string) (BayState, bool) {
	for _, b := range u.Bays {
		if b.Sensor == sensor {
			return b, true
		}
	}
	return BayState{}, false
}

// Empty reports whether nothing changed.
func (u Update) Empty() bool { return len(u.Zones) == 0 && len(u.Bays) == 0 }

// Model holds the bays and zones. It is safe for concurrent use.
type Model struct {
	mu     sync.Mutex
	clock  clockwork.Clock
	cfg    Config
	zones  []*zone
	byName map[string]*zone
	bays   map[string]*bay
}

type zone struct {
	cfg     Zone
	bays    []*bay
	counts  [3]int // by State
	seq     uint64
	changed time.Time
}

type bay struct {
	sensor   string
	zone     *zone
	interval time.Duration
	loc      *Location

	open     bool
	fault    bool
	seen     bool      // a reading since the sensor was opened
	occupied bool      // the newest reading
	last     time.Time // when the newest reading was taken

	state   State
	changed time.Time
}

// New checks cfg (Config.Check) and returns a model in which every bay is
// unknown, as at start. seqs holds the newest seq of each zone from before
// (nil at the first start); each zone starts at the next one, since its
// state at start is a change from what was last published.
func New(cfg Config, clock clockwork.Clock, seqs map[string]uint64) (*Model, error) {
	if clock == nil {
		return nil, fmt.Errorf("guidance: no clock")
	}
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	now := clock.Now()
	m := &Model{clock: clock, cfg: cfg, byName: map[string]*zone{}, bays: map[string]*bay{}}
	for _, zc := range cfg.Zones {
		zc.Bays, zc.Category = slices.Clone(zc.Bays), slices.Clone(zc.Category)
		z := &zone{cfg: zc, seq: seqs[zc.Name] + 1, changed: now}
		for _, name := range zc.Bays {
			s := cfg.Sensors[name]
			b := &bay{sensor: name, zone: z, interval: s.Interval, loc: s.Location, changed: now}
			z.bays = append(z.bays, b)
			m.bays[name] = b
		}
		z.counts[Unknown] = len(z.bays)
		m.zones = append(m.zones, z)
		m.byName[zc.Name] = z
	}
	return m, nil
}

// Opened records that a bay's sensor was opened. The bay stays unknown
// until its first reading.
func (m *Model) Opened(sensor string) Update {
	return m.event(sensor, func(b *bay) { b.open, b.fault, b.seen = true, false, false })
}

// Closed records that a bay's sensor was halted (it is being reopened, or
// the agent stops).
func (m *Model) Closed(sensor string) Update {
	return m.event(sensor, func(b *bay) { b.open, b.seen = false, false })
}

// Fault records that a bay's sensor failed (the sampler's failure state): the
// bay is unknown until the sensor's next reading.
func (m *Model) Fault(sensor string) Update {
	return m.event(sensor, func(b *bay) { b.fault = true })
}

// Reading records a bay sensor's reading taken at at (a time from the same
// clock; the zero time means now). A reading older than the newest one is
// ignored, and so is one from a sensor that is not open (a watcher's last
// report racing its halt): neither says anything about the bay now.
func (m *Model) Reading(sensor string, occupied bool, at time.Time) Update {
	return m.event(sensor, func(b *bay) {
		if at.IsZero() {
			at = m.clock.Now()
		}
		if !b.open || (b.seen && at.Before(b.last)) {
			return
		}
		b.seen, b.fault, b.occupied, b.last = true, false, occupied, at
	})
}

// Tick re-evaluates every bay at the clock's time: a bay whose sensor has
// gone quiet for StaleAfter × its interval becomes unknown. Every event does
// the same, so Tick is only needed when no event comes; call it at Deadline.
func (m *Model) Tick() Update {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.evaluate(m.clock.Now())
}

// Deadline returns the next time a bay becomes unknown unless a reading
// comes first, and false when no bay is known. The agent waits for it
// (clock.NewTimer(deadline.Sub(clock.Now()))) and calls Tick; after any call
// that changed something, it asks again.
func (m *Model) Deadline() (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var next time.Time
	found := false
	for _, z := range m.zones {
		for _, b := range z.bays {
			if b.state == Unknown {
				continue
			}
			if d := b.staleAt(); !found || d.Before(next) {
				next, found = d, true
			}
		}
	}
	return next, found
}

// Zones returns the state of every zone, in configuration order: what to
// publish at start and again on every (re)connect.
func (m *Model) Zones() []ZoneState {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]ZoneState, 0, len(m.zones))
	for _, z := range m.zones {
		out = append(out, z.state())
	}
	return out
}

// Zone returns the state of the zone named name.
func (m *Model) Zone(name string) (ZoneState, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	z, ok := m.byName[name]
	if !ok {
		return ZoneState{}, false
	}
	return z.state(), true
}

// Bays returns the state of every bay, zone by zone in configuration order.
func (m *Model) Bays() []BayState {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []BayState
	for _, z := range m.zones {
		for _, b := range z.bays {
			out = append(out, b.bayState())
		}
	}
	return out
}

func (m *Model) event(sensor string, apply func(b *bay)) Update {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.bays[sensor]
	if !ok {
		return Update{} // not a bay: nothing to guide
	}
	apply(b)
	return m.evaluate(m.clock.Now())
}

// evaluate recomputes every bay's state at now and the counts of the zones
// whose bays changed.
func (m *Model) evaluate(now time.Time) Update {
	var u Update
	for _, z := range m.zones {
		changed := false
		for _, b := range z.bays {
			s := b.eval(now)
			if s == b.state {
				continue
			}
			z.counts[b.state]--
			z.counts[s]++
			b.state, b.changed = s, now
			u.Bays = append(u.Bays, b.bayState())
			changed = true
		}
		if changed {
			z.seq++
			z.changed = now
			u.Zones = append(u.Zones, z.state())
		}
	}
	return u
}

func (b *bay) staleAt() time.Time {
	return b.last.Add(StaleAfter * b.interval)
}

func (b *bay) eval(now time.Time) State {
	if !b.open || b.fault || !b.seen || !now.Before(b.staleAt()) {
		return Unknown
	}
	if b.occupied {
		return Occupied
	}
	return Free
}

func (b *bay) bayState() BayState {
	return BayState{Sensor: b.sensor, Zone: b.zone.cfg.Name, State: b.state, Changed: b.changed}
}

func (z *zone) state() ZoneState {
	return ZoneState{
		Zone:     z.cfg.Name,
		Free:     z.counts[Free],
		Occupied: z.counts[Occupied],
		Unknown:  z.counts[Unknown],
		Total:    len(z.bays),
		Changed:  z.changed,
		Seq:      z.seq,
	}
}

// ZoneOf returns the zone a sensor is a bay of, and false when it is none.
func (m *Model) ZoneOf(sensor string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.bays[sensor]
	if !ok {
		return "", false
	}
	return b.zone.cfg.Name, true
}

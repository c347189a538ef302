package agent

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/guidance"
	"github.com/cityedge/cityedge/drivers"
	"github.com/jonboulle/clockwork"
)

// Parking guidance in the agent: one guidance.Model fed from the sampler's
// events (sensorEvents) and readings (the sink), its zone states published
// as retained side messages beside the backlog (never queued behind it) and
// shown on the zones' signs, which run on their own goroutines and never
// wait for the uplink.
//
// Order: the model's calls and the hand-off of what they return happen
// under one lock, so a zone's messages reach the uplink and the signs in seq
// order. Nothing under it waits on the network or a bus: SetRetained and the
// signs only take the newest state; the one write is the rare seq
// reservation (zoneseq.go).

// retainer publishes retained side messages: uplink.Client.SetRetained.
type retainer interface {
	SetRetained(suffix string, payload []byte)
}

// sensorEvents is what the sampler tells about a sensor besides its
// readings (which come through the sink).
type sensorEvents interface {
	// opened: the sensor was opened and will be read.
	opened(sensor string)
	// failed: the sensor could not be opened, or failed until the sampler
	// gave it up (it is halted and opened again after a backoff).
	failed(sensor string)
	// closed: the sensor was halted.
	closed(sensor string)
}

// guide runs the parking guidance.
type guide struct {
	model       *guidance.Model
	out         retainer
	publishBays bool            // [guidance] publish_bays
	parking     map[string]bool // sensors whose readings publish_bays = false keeps on the gateway
	sdm         bool            // [guidance] smart_data_models
	seqs        *zoneSeqs
	signs       map[string][]*signRunner // by zone
	clock       clockwork.Clock
	log         *slog.Logger

	mu   sync.Mutex
	kick chan struct{} // a change: look at the deadline again
	// onZone, when set, sees every zone state handed to the uplink (tests).
	onZone func(guidance.ZoneState)
	// durable, when set, keeps changed zone counts for an output that must
	// get every change (Sentilo), without waiting for the disk.
	durable func([]guidance.ZoneState)
}

// newGuide builds the model from cfg; nil when no zone is configured. The
// zones' seqs go on from ZoneSeqFile in state_dir.
func newGuide(cfg *config.Config, out retainer, clock clockwork.Clock, log *slog.Logger) (*guide, error) {
	if len(cfg.Zones) == 0 {
		return nil, nil
	}
	names := make([]string, len(cfg.Zones))
	for i, z := range cfg.Zones {
		names[i] = z.Name
	}
	seqs, start, problem := openZoneSeqs(cfg.Agent.StateDir, names, clock.Now())
	if problem != nil {
		log.Error("parking guidance", "err", problem)
	}
	m, err := guidance.New(cfg.GuidanceModel(), clock, start)
	if err != nil {
		return nil, err
	}
	parking := map[string]bool{}
	for _, s := range cfg.Sensors {
		if config.IsParking(s.Driver) {
			parking[s.Name] = true
		}
	}
	return &guide{model: m, out: out, publishBays: cfg.Guidance.PublishBays, parking: parking, sdm: cfg.Guidance.SmartDataModels,
		seqs: seqs, signs: map[string][]*signRunner{}, clock: clock, log: log, kick: make(chan struct{}, 1)}, nil
}

// addSign makes s show its zone, starting with the zone's state now.
func (g *guide) addSign(s *signRunner) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.signs[s.cfg.Zone] = append(g.signs[s.cfg.Zone], s)
	if z, ok := g.model.Zone(s.cfg.Zone); ok {
		s.set(z)
	}
}

// start hands every zone's state (and with smart_data_models every
// document) to the uplink and the signs: what the first session publishes.
func (g *guide) start() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.deliver(guidance.Update{Zones: g.model.Zones(), Bays: g.model.Bays()})
}

// apply runs one model call and delivers what changed.
func (g *guide) apply(call func() guidance.Update) guidance.Update {
	g.mu.Lock()
	defer g.mu.Unlock()
	u := call()
	if !u.Empty() {
		g.deliver(u)
		select {
		case g.kick <- struct{}{}:
		default:
		}
	}
	return u
}

func (g *guide) deliver(u guidance.Update) {
	for _, z := range u.Zones {
		if err := g.seqs.reserve(z.Zone, z.Seq); err != nil {
			g.log.Error("zone seq not kept across a restart", "zone", z.Zone, "err", err)
		}
		msg, _ := json.Marshal(z) // a ZoneState always marshals
		g.out.SetRetained("zones/"+z.Zone, msg)
		for _, s := range g.signs[z.Zone] {
			s.set(z)
		}
		if g.sdm {
			g.entity(g.model.ParkingGroup(z))
		}
		if g.onZone != nil {
			g.onZone(z)
		}
		g.log.Debug("zone", "zone", z.Zone, "free", z.Free, "occupied", z.Occupied, "unknown", z.Unknown, "total", z.Total, "seq", z.Seq)
	}
	// ParkingSpot documents are per-bay occupancy: with publish_bays = false
	// they stay on the gateway like the readings.
	if g.sdm && g.publishBays {
		for _, b := range u.Bays {
			g.entity(g.model.ParkingSpot(b))
		}
	}
	if g.durable != nil && len(u.Zones) > 0 {
		g.durable(u.Zones)
	}
}

func (g *guide) entity(e guidance.Entity, err error) {
	if err != nil {
		g.log.Error("smart data models document", "err", err)
		return
	}
	g.out.SetRetained("ngsi-ld/"+e.ID, e.Doc)
}

func (g *guide) opened(sensor string) {
	g.apply(func() guidance.Update { return g.model.Opened(sensor) })
}
func (g *guide) failed(sensor string) {
	g.apply(func() guidance.Update { return g.model.Fault(sensor) })
}
func (g *guide) closed(sensor string) {
	g.apply(func() guidance.Update { return g.model.Closed(sensor) })
}

// reading feeds a reading to the model before it is buffered (a zone
// message never waits for a disk commit) and reports whether the reading
// goes to the buffer: with publish_bays = false a parking sensor's readings
// are not appended at all — they stay on the gateway as the bay's state in
// the model, status and --diagnose, and only zone counts leave it.
func (g *guide) reading(r drivers.Reading) (keep bool) {
	if _, isBay := g.model.ZoneOf(r.Sensor); isBay {
		for _, v := range r.Values {
			if v.Quantity == drivers.Occupied && v.IsBool {
				g.apply(func() guidance.Update { return g.model.Reading(r.Sensor, v.Bool, r.Time) })
			}
		}
	}
	// Every part of a parking sensor's reading (the sampler sends a change
	// apart from the rest: x/y/z, distance, a re-report) stays on the
	// gateway under publish_bays = false.
	return g.publishBays || !g.parking[r.Sensor]
}

// run calls Tick at every Deadline (a bay whose sensor went quiet becomes
// unknown) until ctx is done.
func (g *guide) run(ctx context.Context) {
	for {
		var wake <-chan time.Time
		var t clockwork.Timer
		if d, ok := g.model.Deadline(); ok {
			t = g.clock.NewTimer(max(d.Sub(g.clock.Now()), 0))
			wake = t.Chan()
		}
		select {
		case <-ctx.Done():
			if t != nil {
				t.Stop()
			}
			return
		case <-g.kick:
		case <-wake:
			g.apply(g.model.Tick)
		}
		if t != nil {
			t.Stop()
		}
	}
}

// ZoneStatus is one zone in the status message and --diagnose.
type ZoneStatus struct {
	Zone     string      `json:"zone"`
	Free     int         `json:"free"`
	Occupied int         `json:"occupied"`
	Unknown  int         `json:"unknown"`
	Total    int         `json:"total"`
	Seq      uint64      `json:"seq"`
	Changed  time.Time   `json:"changed"`
	Sign     string      `json:"sign"` // what the zone's signs should show
	Lamp     bool        `json:"lamp"` // whether its lamps should be on
	Bays     []BayStatus `json:"bays,omitempty"`
}

// BayStatus is one bay of a zone.
type BayStatus struct {
	Sensor   string      `json:"sensor"`
	State    string      `json:"state"`
	Since    time.Time   `json:"since"`
	Location *[2]float64 `json:"location,omitempty"` // [lon, lat] as configured
}

// zoneStatus reports every zone with its bays.
func (g *guide) zoneStatus(cfg *config.Config) []ZoneStatus {
	locs := map[string]*[2]float64{}
	for _, s := range cfg.Sensors {
		if s.Location != nil {
			p := s.Location.Point
			locs[s.Name] = &p
		}
	}
	bays := map[string][]BayStatus{}
	for _, b := range g.model.Bays() {
		bays[b.Zone] = append(bays[b.Zone], BayStatus{Sensor: b.Sensor, State: b.State.String(), Since: b.Changed, Location: locs[b.Sensor]})
	}
	var out []ZoneStatus
	for _, z := range g.model.Zones() {
		out = append(out, ZoneStatus{Zone: z.Zone, Free: z.Free, Occupied: z.Occupied, Unknown: z.Unknown, Total: z.Total,
			Seq: z.Seq, Changed: z.Changed, Sign: z.Sign(), Lamp: z.Lamp(), Bays: bays[z.Zone]})
	}
	return out
}

// note tells the runner's observer (the guidance) about an event.
func (r *sensorRunner) note(event func(sensorEvents, string)) {
	if r.events != nil {
		event(r.events, r.cfg.Name)
	}
}

// startGuidance builds the guidance and the signs' runners and starts them
// (none when no zone is configured). It returns the observer for the
// sampler (nil without zones) and stop, which stops the deadline timer and
// the signs (each shows "----" or goes off) and waits for them: call it
// after sampling stopped.
func (a *agent) startGuidance(hw Hardware) (sensorEvents, func(), error) {
	g, err := newGuide(a.cfg, a.up, a.clock, a.log)
	if err != nil || g == nil {
		return nil, func() {}, err
	}
	a.guide = g
	if a.sentilo != nil {
		g.durable = a.zonesForSentilo
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, s := range a.cfg.Signs {
		r := newSignRunner(s, func() (signDev, error) { return openSign(hw, s) }, a.clock, a.log)
		a.signs = append(a.signs, r)
		g.addSign(r)
		wg.Add(1)
		go func() { defer wg.Done(); r.run(ctx) }()
	}
	g.start()
	wg.Add(1)
	go func() { defer wg.Done(); g.run(ctx) }()
	a.log.Info("parking guidance", "zones", len(a.cfg.Zones), "signs", len(a.cfg.Signs),
		"publish_bays", a.cfg.Guidance.PublishBays, "smart_data_models", a.cfg.Guidance.SmartDataModels)
	return g, func() { cancel(); wg.Wait() }, nil
}

// guidanceStatus adds zones and signs to the status message; the bays'
// states only withBays (the status message leaves the gateway: with
// publish_bays = false it carries zone counts only, while the control
// socket for --diagnose has everything).
func (a *agent) guidanceStatus(m *Status, withBays bool) {
	if a.guide == nil {
		return
	}
	m.Zones = a.guide.zoneStatus(a.cfg)
	if !withBays {
		for i := range m.Zones {
			m.Zones[i].Bays = nil
		}
	}
	m.Signs = map[string]SignState{}
	for _, s := range a.signs {
		m.Signs[s.cfg.Name] = s.snapshot()
	}
}

// Package agent is the running cityedge pipeline: it opens the hardware,
// samples every configured sensor on its own schedule into the durable buffer,
// forwards buffered readings to the broker through the uplink and deletes them
// once acknowledged, publishes the status, serves the control socket that
// --diagnose asks, and talks to systemd (readiness, watchdog, reload).
//
// A reading travels one way: driver → sampler → buffer → forwarder → uplink.
// Everything that waits does so on the injected clock (Deps.Clock).
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"sort"
	"sync"
	"time"

	"github.com/cityedge/cityedge/buffer"
	"github.com/cityedge/cityedge/certs"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/catalog"
	"github.com/cityedge/cityedge/uplink"
	"github.com/cityedge/cityedge/uplink/senml"
	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/jonboulle/clockwork"
)

// shutdownGrace bounds the goodbye to the broker, so that the agent exits
// well within systemd's 5 seconds.
const shutdownGrace = 2 * time.Second

// Deps is what Run takes from its caller besides the configuration.
type Deps struct {
	Version  string           // reported in the status and the start line
	Simulate bool             // back every sensor with a simulated chip or pin
	Logger   *slog.Logger     // nil: slog.Default()
	Level    *slog.LevelVar   // the logger's level; SIGHUP may change it (nil: none)
	Hup      <-chan os.Signal // SIGHUP: reload certificates and configuration
	Clock    clockwork.Clock  // nil: the real clock
}

// SetupError is a start-up problem the operator has to fix (TLS material
// rejected, another agent holding the buffer, an unusable uplink setting);
// restarting would not help. The command exits 2 on it, 1 on other errors.
type SetupError struct{ Err error }

func (e *SetupError) Error() string { return e.Err.Error() }
func (e *SetupError) Unwrap() error { return e.Err }

func openBuffer(cfg *config.Config, log *slog.Logger) (*buffer.Queue, error) {
	if err := os.MkdirAll(cfg.Agent.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	return buffer.Open(cfg.BufferPath(), buffer.Options{
		MaxBytes: int64(cfg.Buffer.MaxBytes), CommitInterval: cfg.Buffer.CommitInterval.D(), Logger: log})
}

// agent is the running pipeline: sensors → buffer → uplink.
type agent struct {
	cfg     *config.Config
	version string
	log     *slog.Logger
	clock   clockwork.Clock
	q       *buffer.Queue
	store   *certs.Store
	fwd     *forwarder
	up      *uplink.Client
	runners []*sensorRunner
	guide   *guide        // parking guidance; nil without [[zones]]
	signs   []*signRunner // the zones' signs
	started time.Time
}

// Run runs the agent until ctx is done and then shuts down in order: stop
// sampling, commit what was sampled, say goodbye to the broker, close the
// buffer. Each start-up failure is logged before Run returns it.
func Run(ctx context.Context, cfg *config.Config, d Deps) error {
	log, clock := d.Logger, d.Clock
	if log == nil {
		log = slog.Default()
	}
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	store, err := certs.Load(cfg.CertOptions(log))
	if err != nil {
		log.Error("TLS material rejected", "err", err)
		return &SetupError{err}
	}
	q, err := openBuffer(cfg, log)
	if err != nil {
		log.Error("cannot open the buffer", "err", err)
		if errors.Is(err, buffer.ErrLocked) {
			return &SetupError{err}
		}
		return err
	}
	a := &agent{cfg: cfg, version: d.Version, log: log, clock: clock, q: q, store: store, started: clock.Now()}
	defer func() {
		if err := q.Close(); err != nil {
			log.Error("close buffer", "err", err)
		}
	}()

	hw, err := OpenHardware(ctx, cfg, d.Simulate)
	if err != nil {
		log.Error("hardware", "err", err)
		return err
	}
	defer hw.Close()

	a.fwd = newForwarder(q, cfg.Agent.ID, cfg.Uplink.BatchMax, cfg.Uplink.BatchWait.D(), clock, log)
	a.fwd.limit = newRateLimit(cfg.Uplink.Rate(), clock)
	a.fwd.fifo = cfg.Uplink.DrainOrder == "oldest-first"
	a.up, err = uplink.New(uplink.Config{
		Brokers:         cfg.Uplink.Brokers,
		ClientID:        cfg.Agent.ID,
		TopicPrefix:     cfg.Uplink.TopicPrefix,
		TLSConfig:       store.TLSConfig,
		Window:          cfg.Uplink.Window,
		ReconnectSpread: cfg.Uplink.ReconnectSpread.D(),
		Status:          a.status,
		Logger:          log,
	}, a.fwd)
	if err != nil {
		log.Error("uplink", "err", err)
		return &SetupError{err}
	}

	events, stopGuidance, err := a.startGuidance(hw)
	if err != nil {
		log.Error("parking guidance", "err", err)
		return err
	}
	defer stopGuidance()

	// Sampling has its own lifetime: it stops first at shutdown, and what it
	// appended is durable before the uplink says goodbye.
	sampleCtx, stopSampling := context.WithCancel(ctx)
	defer stopSampling()
	var sampling sync.WaitGroup
	for _, s := range cfg.Sensors {
		drv, _ := catalog.Lookup(s.Driver)
		r := &sensorRunner{cfg: s, drv: drv, hw: hw, clock: clock, log: log, events: events}
		a.runners = append(a.runners, r)
		sampling.Add(1)
		go func() {
			defer sampling.Done()
			r.run(sampleCtx, a.put)
		}()
	}

	go a.reportDrops(sampleCtx, 5*time.Second)
	go a.serveControl(sampleCtx)
	// Ready once the buffer is open and sampling runs: a dead sensor or an
	// unreachable broker is reported, not a reason to fail the start.
	notify(log, daemon.SdNotifyReady)
	go a.watchdog(sampleCtx)

	upCtx, stopUplink := context.WithCancel(context.WithoutCancel(ctx))
	defer stopUplink()
	upDone := make(chan error, 1)
	go func() { upDone <- a.up.Run(upCtx) }()

	certCtx, stopCerts := context.WithCancel(ctx)
	defer stopCerts()
	go func() {
		_ = store.Watch(certCtx, 10*time.Second, func() {
			log.Info("client certificate changed on disk; reconnecting with it")
			a.up.Reconnect()
		})
	}()

	go func() {
		for {
			select {
			case <-certCtx.Done():
				return
			case <-d.Hup:
				a.reload(d.Level)
			}
		}
	}()

	log.Info("cityedge started", "version", d.Version, "agent", cfg.Agent.ID, "sensors", len(cfg.Sensors),
		"simulate", d.Simulate, "buffer", cfg.BufferPath(), "brokers", cfg.Uplink.Brokers)

	select {
	case <-ctx.Done():
	case err := <-upDone:
		// The uplink only returns on its own for a permanent problem.
		log.Error("uplink stopped", "err", err)
		stopSampling()
		sampling.Wait()
		return fmt.Errorf("uplink stopped: %w", err)
	}
	log.Info("shutting down: stop sampling, commit, say goodbye, close buffer")
	notify(log, daemon.SdNotifyStopping)
	stopSampling()
	sampling.Wait()
	stopGuidance() // signs show "----", lamps off
	stopUplink()
	select {
	case <-upDone:
	case <-clock.After(shutdownGrace + time.Second):
		log.Warn("uplink did not stop in time")
	}
	return nil
}

// reload is SIGHUP: take new TLS material now (reconnecting when the client
// certificate changed) and the reloadable parts of the configuration. The
// buffer is never touched; settings that need a restart are named.
func (a *agent) reload(level *slog.LevelVar) {
	notify(a.log, daemon.SdNotifyReloading+"\nMONOTONIC_USEC="+daemon.SdNotifyMonotonicUsec())
	defer notify(a.log, daemon.SdNotifyReady)
	a.log.Info("SIGHUP: reloading certificates and configuration")
	changed, err := a.store.Reload()
	switch {
	case err != nil:
		a.log.Error("certificate reload rejected; keeping the current set", "err", err)
	case changed:
		a.log.Info("client certificate changed; reconnecting with it")
		a.up.Reconnect()
	}
	next, err := config.Load(a.cfg.Path())
	if err != nil {
		a.log.Error("configuration reload rejected; keeping the running configuration", "err", err)
		return
	}
	if next.Agent.LogLevel != a.cfg.Agent.LogLevel && level != nil {
		_ = level.UnmarshalText([]byte(next.Agent.LogLevel))
		a.log.Info("log level changed", "level", next.Agent.LogLevel)
		a.cfg.Agent.LogLevel = next.Agent.LogLevel
	}
	if diff := restartNeeded(a.cfg, next); len(diff) > 0 {
		a.log.Warn("configuration changes that take effect only after a restart", "keys", diff)
	}
}

// restartNeeded lists the top-level sections whose changes SIGHUP does not apply.
func restartNeeded(old, next *config.Config) []string {
	var out []string
	o, n := *old, *next
	o.Agent.LogLevel, n.Agent.LogLevel = "", ""
	if o.Agent != n.Agent {
		out = append(out, "agent")
	}
	if o.Buffer != n.Buffer {
		out = append(out, "buffer")
	}
	if !reflect.DeepEqual(o.Uplink, n.Uplink) {
		out = append(out, "uplink")
	}
	if !reflect.DeepEqual(sensorKeys(o.Sensors), sensorKeys(n.Sensors)) {
		out = append(out, "sensors")
	}
	if o.Guidance != n.Guidance || !reflect.DeepEqual(o.Zones, n.Zones) || !reflect.DeepEqual(o.Signs, n.Signs) {
		out = append(out, "guidance/zones/signs")
	}
	return out
}

func sensorKeys(ss []config.SensorConfig) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		opts, _ := json.Marshal(s.Options) // by value: pointers inside options would differ
		out[i] = fmt.Sprintf("%s|%s|%s|%d|%s|%v|%s", s.Name, s.Driver, s.Bus, s.Address, s.Pin, s.Interval, opts)
	}
	return out
}

// put is the sampler's sink: it encodes a reading and returns when it is
// durable in the buffer.
func (a *agent) put(ctx context.Context, r drivers.Reading) error {
	if a.guide != nil && !a.guide.reading(r) {
		return nil // [guidance] publish_bays = false: bay readings stay on the gateway
	}
	prio := uint8(0)
	if r.Occupancy() {
		prio = 1 // occupancy changes are dropped last
	}
	return a.putPrio(ctx, r, prio)
}

func (a *agent) putPrio(ctx context.Context, r drivers.Reading, prio uint8) error {
	sr := senml.Reading{Sensor: r.Sensor, Time: r.Time, Values: make([]senml.Value, len(r.Values))}
	for i, v := range r.Values {
		sr.Values[i] = senml.Value{Quantity: v.Quantity, Unit: v.Unit, Num: v.Num, Bool: v.Bool, IsBool: v.IsBool}
	}
	data, err := senml.AppendReading(nil, sr)
	if err != nil {
		return err
	}
	rec := buffer.Record{Key: r.Sensor, Priority: prio, Data: data}
	seq, err := a.q.Append(ctx, []buffer.Record{rec})
	switch {
	case errors.Is(err, buffer.ErrNotDurable):
		// The disk refuses writes (full?): the buffer holds the reading in
		// its memory ring, reports the problem and writes it out when it can.
	case err != nil:
		return err
	default:
		a.log.Debug("reading buffered", "sensor", r.Sensor, "seq", seq)
	}
	if prio > 0 {
		a.fwd.hurry()
	}
	return nil
}

// reportDrops puts the buffer's drop counters into the readings stream when
// they change, as <agent id>/cityedge/dropped (total) and
// <agent id>/cityedge/dropped/<sensor>, so integrators see in their own data
// how many readings the bound cost, not only gaps in seq.
func (a *agent) reportDrops(ctx context.Context, every time.Duration) {
	var last uint64
	t := a.clock.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
		}
		st := a.q.Stats()
		if st.DroppedTotal == last {
			continue
		}
		last = st.DroppedTotal
		vals := []drivers.Value{drivers.Number("dropped", "", float64(st.DroppedTotal))}
		names := make([]string, 0, len(st.Dropped))
		for k := range st.Dropped {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			vals = append(vals, drivers.Number("dropped/"+k, "", float64(st.Dropped[k])))
		}
		// The buffer logs drops itself, rate-limited; this is the detail.
		a.log.Debug("reporting drop counters in the readings stream", "dropped", st.DroppedTotal, "by_sensor", st.Dropped)
		if err := a.putPrio(ctx, drivers.Reading{Sensor: config.ReservedSensor, Time: a.clock.Now(), Values: vals}, 2); err != nil {
			a.log.Error("report drops", "err", err)
		}
	}
}

// Status is published retained on <topic_prefix>/status. Field names
// are a contract with integrators: extend, never rename.
type Status struct {
	State     string                 `json:"state"`
	Agent     string                 `json:"agent"`
	Version   string                 `json:"version"`
	Time      time.Time              `json:"time"`
	Uptime    float64                `json:"uptime_s"`
	Backlog   uint64                 `json:"backlog"`
	Bytes     int64                  `json:"backlog_bytes"`
	Dropped   uint64                 `json:"dropped"`
	DroppedBy map[string]uint64      `json:"dropped_by_sensor,omitempty"`
	Epoch     uint64                 `json:"epoch,omitempty"`
	Buffer    string                 `json:"buffer_problem,omitempty"`
	Sensors   map[string]SensorState `json:"sensors,omitempty"`
	Certs     *CertStatus            `json:"certs,omitempty"`
	Zones     []ZoneStatus           `json:"zones,omitempty"` // parking guidance (guidance.go)
	Signs     map[string]SignState   `json:"signs,omitempty"`
}

// CertStatus is the status message's view of the TLS material.
type CertStatus struct {
	ClientSerial    string `json:"client_serial"`
	ClientDaysLeft  int    `json:"client_days_left"`
	CADaysLeft      int    `json:"ca_days_left"`
	Warning         string `json:"warning,omitempty"`
	LastReloadError string `json:"last_reload_error,omitempty"`
}

func (a *agent) status(online bool) []byte {
	st := a.q.Stats()
	m := Status{State: "offline", Agent: a.cfg.Agent.ID, Version: a.version, Time: a.clock.Now().UTC(),
		Uptime: a.clock.Since(a.started).Seconds(), Backlog: st.Count, Bytes: st.Bytes, Dropped: st.DroppedTotal,
		DroppedBy: st.Dropped, Epoch: st.Epoch, Buffer: st.DiskError, Sensors: map[string]SensorState{}}
	if online {
		m.State = "online"
	}
	for _, r := range a.runners {
		m.Sensors[r.cfg.Name] = r.snapshot()
	}
	a.guidanceStatus(&m, a.cfg.Guidance.PublishBays)
	cs := a.store.Status()
	m.Certs = &CertStatus{ClientSerial: cs.ClientSerial, ClientDaysLeft: cs.ClientDaysLeft, CADaysLeft: cs.CADaysLeft, Warning: cs.Warning, LastReloadError: cs.LastReloadError}
	b, err := json.Marshal(m)
	if err != nil {
		a.log.Error("status", "err", err)
		return []byte(`{"state":"` + m.State + `"}`)
	}
	return b
}

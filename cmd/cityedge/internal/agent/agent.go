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
	"sync"
	"time"

	"github.com/cityedge/cityedge/buffer"
	"github.com/cityedge/cityedge/certs"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/clocksync"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/cityedge/cityedge/drivers/catalog"
	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/jonboulle/clockwork"
)

// shutdownGrace bounds the goodbye to the broker, so that the agent exits
// well within systemd's 5 seconds.
const shutdownGrace = 2 * time.Second

// tlsWatchEvery is how often the TLS files are checked for a renewed set.
const tlsWatchEvery = 10 * time.Second

// Deps is what Run takes from its caller besides the configuration.
type Deps struct {
	Version  string           // reported in the status and the start line
	Simulate bool             // back every sensor with a simulated chip or pin
	Logger   *slog.Logger     // nil: slog.Default()
	Level    *slog.LevelVar   // the logger's level; SIGHUP may change it (nil: none)
	Hup      <-chan os.Signal // SIGHUP: reload certificates and configuration
	Clock    clockwork.Clock  // nil: the real clock
	// Diagnose makes the --diagnose --json report from the running agent's
	// live state, for the remote diagnose command (nil: not available).
	Diagnose func(ctx context.Context, cfg *config.Config, live *LiveState) ([]byte, error)
	// The clock rule (clock.go): the kernel's view of the wall clock (nil:
	// this gateway's, clocksync.NewSystem) and the binary's build date
	// (zero: clocksync.Floor).
	ClockSource clocksync.Machine
	BuildDate   time.Time
}

// SetupError is a start-up problem of the configuration that restarting
// would not help (another agent holding the buffer, an unusable uplink or
// TLS setting). The command exits 2 on it, 1 on other errors. TLS files that
// are missing or wrong are not one: the agent samples and buffers, keeps the
// uplink down and says why until a valid set appears.
type SetupError struct{ Err error }

func (e *SetupError) Error() string { return e.Err.Error() }
func (e *SetupError) Unwrap() error { return e.Err }

func openBuffer(cfg *config.Config, log *slog.Logger) (*buffer.Queue, error) {
	if err := prepareStateDir(cfg); err != nil {
		return nil, err
	}
	return buffer.Open(cfg.BufferPath(), buffer.Options{
		MaxBytes: int64(cfg.Buffer.MaxBytes), CommitInterval: cfg.Buffer.CommitInterval.D(), Logger: log,
		Outputs: bufferOutputs(cfg)})
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
	hand    *handoff // samplers → buffer, never waiting for the disk
	up      mqttLink // mqtt.go: the uplink session, or noMQTT without uplink.brokers
	runners []*sensorRunner
	guide   *guide        // parking guidance; nil without [[zones]]
	signs   []*signRunner // the zones' signs
	clk     *clockRule    // clock.go
	started time.Time
	ops     *ops // remote.go, restart.go, metrics.go
	// The Sentilo output (outputs.go, sentilo.go); nil without [sentilo].
	sentilo          *sentiloOutput
	sentiloClose     func()
	sentiloReconnect func()       // after its TLS material changed (reload)
	sentiloStore     *certs.Store // its TLS material (a.store without MQTT)
}

// Run runs the agent until ctx is done and then shuts down in order: stop
// sampling, commit what was sampled, say goodbye to the broker, close the
// buffer. Each start-up failure is logged before Run returns it. It returns
// ErrRestart when the agent is to restart in place (restart.go).
func Run(ctx context.Context, cfg *config.Config, d Deps) (err error) {
	log, clock := d.Logger, d.Clock
	if log == nil {
		log = slog.Default()
	}
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	defer func() { err = failedStart(cfg, log, err) }()
	// Open, not Load: TLS files that cannot be used stop the uplink, never
	// sampling. It logs the reason and the fix; Watch and SIGHUP pick up a
	// valid set, and the uplink connects with it at once.
	store, err := openTLS(cfg, log) // mqtt.go
	if err != nil {
		log.Error("TLS settings rejected", "err", err)
		return &SetupError{err}
	}
	q, err := openBuffer(cfg, log)
	if err != nil {
		log.Error("cannot open the buffer", "err", err)
		var ce *config.ConfigError
		if errors.Is(err, buffer.ErrLocked) || errors.As(err, &ce) {
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
	if err := a.openOps(d); err != nil {
		log.Error("remote commands", "err", err)
		return &SetupError{err}
	}

	hw, err := OpenHardware(ctx, cfg, d.Simulate)
	if err != nil {
		log.Error("hardware", "err", err)
		return err
	}
	defer hw.Close()

	if err := a.openClock(d); err != nil {
		log.Error("clock", "err", err)
		return err
	}
	mqttView, sentiloView, err := queueViews(q, cfg)
	if err != nil {
		log.Error("buffer outputs", "err", err)
		return err
	}
	if sentiloView != nil {
		if err := a.startSentilo(sentiloView); err != nil {
			// Only what no file can fix (a certificate option): readings
			// are kept for Sentilo (its progress stays), nothing is lost;
			// fix and restart. Unusable TLS files do not end up here: the
			// output runs and connects once a reload finds a usable set.
			log.Error("sentilo output cannot start; readings are kept for it in the buffer", "err", err)
		} else {
			defer a.sentiloClose()
		}
	}
	if err := a.startMQTT(mqttView); err != nil { // mqtt.go
		log.Error("uplink", "err", err)
		return &SetupError{err}
	}

	// Sampling has its own lifetime: it stops first at shutdown, and what it
	// handed off is durable before the uplink says goodbye. The hand-off
	// also carries the zone counts for Sentilo, so it starts first.
	drainHandoff := a.startHandoff()
	events, stopGuidance, err := a.startGuidance(hw)
	if err != nil {
		log.Error("parking guidance", "err", err)
		drainHandoff()
		return err
	}
	defer stopGuidance()

	sampleCtx, stopSampling := context.WithCancel(ctx)
	defer stopSampling()
	var sampling sync.WaitGroup
	phase := phases(cfg.Sensors)
	for i, s := range cfg.Sensors {
		drv, _ := catalog.Lookup(s.Driver)
		r := &sensorRunner{cfg: s, drv: drv, hw: hw, clock: clock, log: log, keep: q, phase: phase[i], events: events}
		a.runners = append(a.runners, r)
		sampling.Add(1)
		go func() {
			defer sampling.Done()
			r.run(sampleCtx, a.handOff)
		}()
	}

	go a.clk.run(sampleCtx)
	go a.reportDrops(sampleCtx, dropReportEvery)
	go a.serveControl(sampleCtx)
	go a.runOps(sampleCtx)
	// Ready once the buffer is open and sampling runs: a dead sensor or an
	// unreachable broker is reported, not a reason to fail the start.
	notify(log, daemon.SdNotifyReady)
	go a.watchdog(sampleCtx)

	upCtx, stopUplink := context.WithCancel(context.WithoutCancel(ctx))
	defer stopUplink()
	upDone := make(chan error, 1)
	go func() { upDone <- a.up.Run(upCtx) }()
	var outputs sync.WaitGroup
	if a.sentilo != nil {
		outputs.Add(1)
		go func() { defer outputs.Done(); _ = a.sentilo.Run(upCtx) }()
	}
	defer func() { stopUplink(); outputs.Wait() }() // before the buffer closes

	certCtx, stopCerts := context.WithCancel(ctx)
	defer stopCerts()
	a.watchTLS(certCtx)

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
		"simulate", d.Simulate, "buffer", cfg.BufferPath(), "brokers", cfg.Uplink.Brokers, "outputs", bufferOutputs(cfg))

	select {
	case <-ctx.Done():
	case <-a.ops.restart: // a pushed configuration or its rollback
	case err := <-upDone:
		// The uplink only returns on its own for a permanent problem.
		log.Error("uplink stopped", "err", err)
		stopSampling()
		sampling.Wait()
		drainHandoff()
		return fmt.Errorf("uplink stopped: %w", err)
	}
	log.Info("shutting down: stop sampling, commit, say goodbye, close buffer")
	a.notifyStopping()
	stopSampling()
	sampling.Wait()
	stopGuidance() // signs show "----", lamps off; the zones' last state is handed off
	drainHandoff()
	a.drainBeforeExit() // drain.go
	stopUplink()
	select {
	case <-upDone:
	case <-clock.After(shutdownGrace + time.Second):
		log.Warn("uplink did not stop in time")
	}
	a.reportLeft()
	return a.exitErr()
}

// reload is SIGHUP: take new TLS material now (reconnecting when the client
// certificate changed) and the reloadable parts of the configuration. The
// buffer is never touched; settings that need a restart are named.
func (a *agent) reload(level *slog.LevelVar) {
	notify(a.log, daemon.SdNotifyReloading+"\nMONOTONIC_USEC="+daemon.SdNotifyMonotonicUsec())
	defer notify(a.log, daemon.SdNotifyReady)
	a.log.Info("SIGHUP: reloading certificates and configuration")
	a.reloadTLS() // mqtt.go
	next, err := config.LoadInForce(a.cfg.BasePath(), nil)
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
	if o.Clock != n.Clock {
		out = append(out, "clock")
	}
	if !reflect.DeepEqual(o.Sentilo, n.Sentilo) {
		out = append(out, "sentilo")
	}
	if o.Remote != n.Remote || o.Metrics != n.Metrics {
		out = append(out, "remote/metrics")
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

// Status is published retained on <topic_prefix>/status. Field names
// are a contract with integrators: extend, never rename.
type Status struct {
	State     string                 `json:"state"`
	Agent     string                 `json:"agent"`
	Version   string                 `json:"version"`
	Time      time.Time              `json:"time"`
	Uptime    int64                  `json:"uptime_s"` // whole seconds
	Backlog   uint64                 `json:"backlog"`
	Bytes     int64                  `json:"backlog_bytes"`
	Dropped   uint64                 `json:"dropped"`
	DroppedBy map[string]uint64      `json:"dropped_by_sensor,omitempty"`
	Epoch     uint64                 `json:"epoch,omitempty"`
	Buffer    string                 `json:"buffer_problem,omitempty"`
	Sensors   map[string]SensorState `json:"sensors,omitempty"`
	Certs     *CertStatus            `json:"certs,omitempty"`
	// The configuration in force and the remote channel (remote.go).
	Config       string               `json:"config,omitempty"`
	ConfigSource string               `json:"config_source,omitempty"` // "local" or "remote"
	Remote       *RemoteStatus        `json:"remote,omitempty"`
	Zones        []ZoneStatus         `json:"zones,omitempty"` // parking guidance (guidance.go)
	Signs        map[string]SignState `json:"signs,omitempty"`
	Clock        *ClockStatus         `json:"clock,omitempty"` // clock.go
	// Each output's progress and Sentilo's state (outputs.go); absent
	// with MQTT alone.
	Outputs map[string]OutputStatus `json:"outputs,omitempty"`
}

// CertStatus is the status message's view of the TLS material.
type CertStatus struct {
	ClientSerial    string `json:"client_serial"`
	ClientDaysLeft  int    `json:"client_days_left"`
	CADaysLeft      int    `json:"ca_days_left"`
	Warning         string `json:"warning,omitempty"`
	LastReloadError string `json:"last_reload_error,omitempty"`
	// Problem is set while the TLS material cannot be used (the uplink is
	// down, readings are buffered): the reason and the fix.
	Problem string `json:"problem,omitempty"`
}

func (a *agent) status(online bool) []byte {
	st := a.q.Stats()
	m := Status{State: "offline", Agent: a.cfg.Agent.ID, Version: a.version, Time: a.clock.Now().UTC(),
		Uptime: int64(a.clock.Since(a.started) / time.Second), Backlog: st.Count, Bytes: st.Bytes, Dropped: st.DroppedTotal,
		DroppedBy: st.Dropped, Epoch: st.Epoch, Buffer: st.DiskError, Sensors: map[string]SensorState{}}
	if online {
		m.State = "online"
	}
	for _, r := range a.runners {
		m.Sensors[r.cfg.Name] = r.snapshot()
	}
	a.guidanceStatus(&m, a.cfg.Guidance.PublishBays)
	cs := a.store.Status()
	m.Clock = a.clockStatus(st)
	a.fillRemoteStatus(&m)
	m.Outputs = a.outputStatus()
	m.Certs = &CertStatus{ClientSerial: cs.ClientSerial, ClientDaysLeft: cs.ClientDaysLeft, CADaysLeft: cs.CADaysLeft, Warning: cs.Warning, LastReloadError: cs.LastReloadError, Problem: tlsProblem(cs)}
	b, err := json.Marshal(m)
	if err != nil {
		a.log.Error("status", "err", err)
		return []byte(`{"state":"` + m.State + `"}`)
	}
	return b
}

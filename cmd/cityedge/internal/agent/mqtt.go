package agent

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/cityedge/cityedge/certs"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/cityedge/cityedge/uplink"
)

// The MQTT output as the rest of the agent sees it. With uplink.brokers it
// is the uplink session (uplink.Client) fed by the forwarder. A gateway
// with [sentilo] and no uplink.brokers has no MQTT output at all: noMQTT
// stands in, so that status, metrics, systemd, the clock rule, guidance and
// remote commands need no checks of their own. Its state is never
// "connected"; what shows the operator that MQTT is not configured (rather
// than down) is decided here (mqttNote, live's Uplink.NotConfigured,
// metrics' UplinkOff).

// mqttLink is what the agent uses of the MQTT session.
type mqttLink interface {
	Run(ctx context.Context) error
	State() uplink.State
	Reconnect()
	PublishStatus()
	Send(suffix string, payload []byte)
	SendAcked(suffix string, payload []byte) <-chan error
	SetRetained(suffix string, payload []byte)
}

var (
	_ mqttLink = (*uplink.Client)(nil)
	_ mqttLink = noMQTT{}
)

// noMQTT is the MQTT output of a Sentilo-only gateway: it runs until told
// to stop and publishes nothing. Retained zone messages, the status message
// and remote command answers have nowhere to go; zone counts still reach
// Sentilo through the buffer (sentilo.go).
type noMQTT struct{}

func (noMQTT) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (noMQTT) State() uplink.State           { return uplink.State{} }
func (noMQTT) Reconnect()                    {}
func (noMQTT) PublishStatus()                {}
func (noMQTT) Send(string, []byte)           {}
func (noMQTT) SendAcked(string, []byte) <-chan error {
	return nil // never: there is no broker to acknowledge it
}
func (noMQTT) SetRetained(string, []byte) {}

// mqttOff is the words for an MQTT output that is not configured.
const mqttOff = "MQTT output not configured (no uplink.brokers): Sentilo is the only output"

// openTLS opens the TLS material of the agent's main output: [uplink]'s
// for MQTT, or [sentilo]'s on a Sentilo-only gateway. It is what the
// status, the metrics, SIGHUP and the file watch report on and reload.
func openTLS(cfg *config.Config, log *slog.Logger) (*certs.Store, error) {
	if cfg.MQTT() {
		return certs.Open(cfg.CertOptions(log))
	}
	opts, err := sentiloCertOptions(cfg, log)
	if err != nil {
		return nil, err
	}
	return certs.Open(opts)
}

// startMQTT sets up the forwarder and the uplink session over MQTT's view
// of the buffer, or noMQTT without uplink.brokers.
func (a *agent) startMQTT(view Queue) error {
	if !a.cfg.MQTT() {
		a.up = noMQTT{}
		a.log.Info(mqttOff)
		if a.cfg.Remote.Enabled {
			a.log.Warn("remote commands are not available: they travel over MQTT, and uplink.brokers is not set; remote.enabled has no effect")
		}
		return nil
	}
	cfg := a.cfg
	a.fwd = newForwarder(view, cfg.Agent.ID, cfg.Uplink.BatchMax, cfg.Uplink.BatchWait.D(), a.clock, a.log)
	a.fwd.clk = a.clk
	a.fwd.limit = newRateLimit(cfg.Uplink.Rate(), a.clock)
	a.fwd.fifo = cfg.Uplink.DrainOrder == "oldest-first"
	up, err := uplink.New(uplink.Config{
		Brokers:         cfg.Uplink.Brokers,
		ClientID:        cfg.Agent.ID,
		TopicPrefix:     cfg.Uplink.TopicPrefix,
		TLSConfig:       a.store.TLSConfig,
		Window:          cfg.Uplink.Window,
		ReconnectSpread: cfg.Uplink.ReconnectSpread.D(),
		Status:          a.status,
		Logger:          a.log,
		Subscriptions:   a.subscriptions(),
	}, a.fwd)
	if err != nil {
		return err
	}
	a.up = up
	return nil
}

// hurryMQTT sends what MQTT's forwarder holds without waiting for
// batch_wait (an occupancy change, a stopping agent).
func (a *agent) hurryMQTT() {
	if a.fwd != nil {
		a.fwd.hurry()
	}
}

// mqttNote is the MQTT output's state in words for systemd's STATUS=.
func (a *agent) mqttNote(st uplink.State) string {
	if !a.cfg.MQTT() {
		return "MQTT not configured; Sentilo " + a.sentiloNote()
	}
	return uplinkNote(st, a.clock.Now())
}

// sentiloNote is the Sentilo output's state in words.
func (a *agent) sentiloNote() string {
	if a.sentilo == nil {
		return "not running (see the log)"
	}
	s := a.sentilo.Status()
	note := fmt.Sprintf("%d acknowledged", s.Acked)
	if s.Gate != "" {
		note += fmt.Sprintf(", paused until %s: %s", s.GateUntil.Format("15:04:05Z"), s.Gate)
	}
	if len(s.Held) > 0 {
		note += fmt.Sprintf(", %d sensors held", len(s.Held))
	}
	return note
}

// reloadTLS reloads each output's TLS material (SIGHUP): a changed client
// certificate reconnects MQTT, and Sentilo's next request uses it.
func (a *agent) reloadTLS() {
	for _, t := range a.tlsStores() {
		changed, err := t.store.Reload()
		switch {
		case err != nil && t.store.Status().Unusable:
			a.log.Error("TLS material still unusable; the output stays down, readings are buffered", "output", t.output, "err", err)
		case err != nil:
			a.log.Error("certificate reload rejected; keeping the current set", "output", t.output, "err", err)
		case changed:
			a.log.Info("client certificate changed; reconnecting with it", "output", t.output)
			t.changed()
		}
	}
}

// watchTLS watches each output's TLS files until ctx is done.
func (a *agent) watchTLS(ctx context.Context) {
	for _, t := range a.tlsStores() {
		go func() {
			_ = t.store.Watch(ctx, tlsWatchEvery, func() {
				a.log.Info("client certificate changed on disk; reconnecting with it", "output", t.output)
				t.changed()
			})
		}()
	}
}

type tlsStore struct {
	output  string
	store   *certs.Store
	changed func()
}

// tlsStores are the distinct TLS stores in use: MQTT's (a.store), and
// Sentilo's when it has its own (with MQTT on; alone, a.store is it).
func (a *agent) tlsStores() []tlsStore {
	var out []tlsStore
	if a.cfg.MQTT() {
		out = append(out, tlsStore{outputMQTT, a.store, a.up.Reconnect})
	}
	if a.sentiloStore != nil {
		out = append(out, tlsStore{outputSentilo, a.sentiloStore, a.sentiloReconnect})
	}
	return out
}

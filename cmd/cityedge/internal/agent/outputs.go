package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/cityedge/cityedge/buffer"
	"github.com/cityedge/cityedge/certs"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/metrics"
	"github.com/cityedge/cityedge/uplink/sentilo"
)

// Outputs. Every configured output (MQTT with uplink.brokers, Sentilo with
// [sentilo]; at least one) reads the one buffer through its own view
// (buffer.Output) and acknowledges for itself: a reading leaves the buffer once every output
// has it, and each output's progress is durable in the buffer file. One
// output being down never stalls the other: each has its own cursor and
// its own loop. MQTT's loop is the uplink with the forwarder as its Source;
// Sentilo's is sentiloOutput.

// Output names, as kept in the buffer file (never renamed).
const (
	outputMQTT    = "mqtt"
	outputSentilo = "sentilo"
)

// outputQueue is what an output's forwarder needs of the buffer: its own
// view of it.
type outputQueue interface {
	ReadAfter(after uint64, max, maxBytes int) ([]buffer.Entry, error)
	Ack(seqs ...uint64) error
	Notify() <-chan struct{}
}

// output is one destination besides the uplink's own loop: run until ctx
// is done, and report.
type output interface {
	Name() string
	Run(ctx context.Context) error
	Status() OutputStatus
}

var _ output = (*sentiloOutput)(nil)

// OutputStatus is one output's part of the status message ("outputs").
// Field names are a contract: extend, never rename.
type OutputStatus struct {
	Progress uint64 `json:"progress_seq"`      // every buffered reading below this has reached the output
	Dropped  uint64 `json:"dropped"`           // readings the bound dropped before the output had them
	Pending  int    `json:"pending,omitempty"` // acknowledgements waiting for the buffer's next commit
	// Sentilo only.
	Acked     uint64       `json:"acked,omitempty"`
	SetAside  uint64       `json:"set_aside,omitempty"`
	Resent    uint64       `json:"resent,omitempty"`
	Unknown   uint64       `json:"unknown,omitempty"`
	Requests  uint64       `json:"requests,omitempty"`
	Throttled uint64       `json:"throttled,omitempty"`
	Refused   uint64       `json:"refused,omitempty"`
	Failed    uint64       `json:"failed,omitempty"`
	Gate      string       `json:"gate,omitempty"` // why nothing is sent now
	GateUntil time.Time    `json:"gate_until,omitzero"`
	Held      []HeldStatus `json:"held,omitempty"`
}

// HeldStatus is a sensor Sentilo rejected (404): its readings are held in
// the buffer and retried.
type HeldStatus struct {
	ID       string    `json:"id"`
	Sensor   string    `json:"sensor"`
	Reason   string    `json:"reason"` // "404.1" not registered, "404.2" not online
	Readings int       `json:"readings"`
	Since    time.Time `json:"since"`
	NextTry  time.Time `json:"next_try"`
}

// bufferOutputs are the names the buffer keeps progress for.
func bufferOutputs(cfg *config.Config) []string {
	var out []string
	if cfg.MQTT() {
		out = append(out, outputMQTT)
	}
	if cfg.Sentilo.Enabled() {
		out = append(out, outputSentilo)
	}
	return out
}

// mqttQueue is MQTT's view of the buffer. Zone counts (buffer.ClassZone)
// are for Sentilo alone: MQTT acknowledges them unseen (guidance publishes
// its own retained zone messages).
type mqttQueue struct {
	*buffer.Output
}

func (m mqttQueue) ReadAfter(after uint64, max, maxBytes int) ([]buffer.Entry, error) {
	return m.read(after, func(after uint64) ([]buffer.Entry, error) { return m.Output.ReadAfter(after, max, maxBytes) })
}

// ReadInto is ReadAfter in reused memory (buffer.Output.ReadInto).
func (m mqttQueue) ReadInto(s *buffer.Scratch, after uint64, max, maxBytes int) ([]buffer.Entry, error) {
	return m.read(after, func(after uint64) ([]buffer.Entry, error) { return m.Output.ReadInto(s, after, max, maxBytes) })
}

// read leaves out (and acknowledges) the zone counts of what read returns.
func (m mqttQueue) read(after uint64, read func(after uint64) ([]buffer.Entry, error)) ([]buffer.Entry, error) {
	for {
		es, err := read(after)
		if err != nil || len(es) == 0 {
			return es, err
		}
		keep := es[:0]
		var zone []uint64
		for _, e := range es {
			if e.Priority == buffer.ClassZone {
				zone = append(zone, e.Seq)
			} else {
				keep = append(keep, e)
			}
		}
		if len(zone) > 0 {
			if err := m.Output.Ack(zone...); err != nil {
				return nil, err
			}
		}
		if len(keep) > 0 {
			return keep, nil
		}
		after = es[len(es)-1].Seq
	}
}

// queueViews returns MQTT's view of the buffer (nil without
// uplink.brokers) and, with [sentilo], Sentilo's.
func queueViews(q *buffer.Queue, cfg *config.Config) (mqtt Queue, sent *buffer.Output, err error) {
	if cfg.MQTT() {
		mo, err := q.Output(outputMQTT)
		if err != nil {
			return nil, nil, err
		}
		mqtt = mqttQueue{mo}
	}
	if cfg.Sentilo.Enabled() {
		if sent, err = q.Output(outputSentilo); err != nil {
			return nil, nil, err
		}
	}
	return mqtt, sent, nil
}

// sentiloCertOptions are the certs options of [sentilo]'s files
// (defaulting to [uplink]'s), checked against the proxy's name.
func sentiloCertOptions(cfg *config.Config, log *slog.Logger) (certs.Options, error) {
	s := cfg.Sentilo
	u, err := url.Parse(s.URL)
	if err != nil {
		return certs.Options{}, fmt.Errorf("sentilo.url: %w", err)
	}
	name := s.ServerName
	if name == "" {
		name = u.Hostname()
	}
	return certs.Options{CAFile: s.CAFile, CertFile: s.CertFile, KeyFile: s.KeyFile, ServerName: name,
		SystemRoots: cfg.Uplink.SystemRoots, WarnBefore: time.Duration(cfg.Uplink.ExpiryWarningDays) * 24 * time.Hour, Logger: log}, nil
}

// SentiloTLS builds the TLS configuration for the city's proxy from
// [sentilo]'s files (defaulting to [uplink]'s): the client certificate is
// read on every handshake, so a renewed pair is used without a restart
// once the store reloads it (SIGHUP, the file watch).
func SentiloTLS(cfg *config.Config, log *slog.Logger) (*tls.Config, *certs.Store, error) {
	opts, err := sentiloCertOptions(cfg, log)
	if err != nil {
		return nil, nil, err
	}
	store, err := certs.Open(opts)
	if err != nil {
		return nil, nil, err
	}
	tc, err := sentiloTLSFrom(store)
	return tc, store, err
}

func sentiloTLSFrom(store *certs.Store) (*tls.Config, error) {
	tc, err := store.TLSConfig()
	if err != nil {
		return nil, err
	}
	tc.NextProtos = nil
	return tc, nil
}

// NewSentiloClient is the Sentilo client for cfg (also used by --diagnose).
func NewSentiloClient(cfg *config.Config, tc *tls.Config, log *slog.Logger) (*sentilo.Client, error) {
	c := sentiloConfig(cfg, log)
	c.TLS = tc
	return sentilo.New(c)
}

// sentiloConfig is the Sentilo client's configuration from cfg, without
// its TLS.
func sentiloConfig(cfg *config.Config, log *slog.Logger) sentilo.Config {
	s := cfg.Sentilo
	return sentilo.Config{URL: s.URL, Provider: s.Provider, Token: s.Token(),
		BatchMax: s.BatchMax, BatchWait: s.BatchWait.D(), Timeout: s.Timeout.D(),
		OccupiedValue: s.OccupiedValue, FreeValue: s.FreeValue, Logger: log}
}

// startSentilo sets up the Sentilo output over its view of the buffer.
// Without MQTT its TLS material is the agent's main store (a.store).
func (a *agent) startSentilo(view *buffer.Output) error {
	store := a.store
	if a.cfg.MQTT() {
		opts, err := sentiloCertOptions(a.cfg, a.log)
		if err != nil {
			return err
		}
		if store, err = certs.Open(opts); err != nil {
			return err
		}
	}
	// Asked at every connection: TLS material unusable now (a bad
	// certificate) fails requests, backed off, until a reload fixes it;
	// the output runs all the same and its readings wait in the buffer.
	sc := sentiloConfig(a.cfg, a.log)
	sc.GetTLS = func() (*tls.Config, error) { return sentiloTLSFrom(store) }
	c, err := sentilo.New(sc)
	if err != nil {
		return err
	}
	s := a.cfg.Sentilo
	a.sentilo = newSentiloOutput(view, c, s.IDMap(), s.BatchMax, s.BatchWait.D(), a.clock, a.log)
	a.sentilo.clk = a.clk
	a.sentilo.keep = a.q // accepted.go
	a.sentiloClose = c.Close
	a.sentiloReconnect = a.sentilo.reconnect
	a.sentiloStore = store
	return nil
}

// outputStatus is the status message's "outputs": each output's progress
// in the buffer, and Sentilo's own state. Nil with MQTT alone.
func (a *agent) outputStatus() map[string]OutputStatus {
	if a.sentilo == nil {
		return nil
	}
	st := a.q.Stats()
	out := map[string]OutputStatus{}
	for name, o := range st.Outputs {
		out[name] = OutputStatus{Progress: o.Progress, Dropped: o.Dropped, Pending: o.Pending}
	}
	s := a.sentilo.Status()
	b := out[outputSentilo]
	s.Progress, s.Dropped, s.Pending = b.Progress, b.Dropped, b.Pending
	out[outputSentilo] = s
	return out
}

// outputMetrics is Snapshot.Outputs.
func (a *agent) outputMetrics() []metrics.Output {
	var out []metrics.Output
	for name, o := range a.outputStatus() {
		m := metrics.Output{Name: name, Progress: o.Progress, Dropped: o.Dropped, Acked: o.Acked, SetAside: o.SetAside,
			Resent: o.Resent, Unknown: o.Unknown, Gate: o.Gate}
		for _, h := range o.Held {
			m.Held = append(m.Held, metrics.Held{ID: h.ID, Reason: h.Reason, Readings: h.Readings})
		}
		out = append(out, m)
	}
	return out
}

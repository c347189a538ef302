package agent

import (
	"context"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/metrics"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/remote"
)

// runMetrics writes metrics.textfile every metrics.interval from the
// agent's live state, until ctx is done (and once more then).
func (a *agent) runMetrics(ctx context.Context) {
	if a.cfg.Metrics.Textfile == "" {
		return
	}
	w := &metrics.Writer{Path: a.cfg.Metrics.Textfile, Interval: a.cfg.Metrics.Interval.D(),
		Snapshot: a.metricsSnapshot, Clock: a.clock, Logger: a.log}
	a.log.Info("metrics textfile for node_exporter", "path", w.Path, "interval", w.Interval)
	_ = w.Run(ctx)
}

// metricsSnapshot is the agent's state for the metrics text file: the same
// counters the status message carries.
func (a *agent) metricsSnapshot() metrics.Snapshot {
	now := a.clock.Now()
	q := a.q.Stats()
	u := a.up.State()
	s := metrics.Snapshot{Agent: a.cfg.Agent.ID, Version: a.version, BacklogReadings: q.Count,
		UplinkConnected: u.Connected, UplinkOff: !a.cfg.MQTT()}
	if q.Bytes > 0 {
		s.BacklogBytes = uint64(q.Bytes)
	}
	if !q.OldestTime.IsZero() && q.Count > 0 {
		s.OldestBacklogAge = max(now.Sub(q.OldestTime), 0)
	}
	if !u.LastUpload.IsZero() {
		s.Acked, s.LastAckAge = true, max(now.Sub(u.LastUpload), 0)
	}
	seen := map[string]bool{}
	for _, r := range a.runners {
		st := r.snapshot()
		s.Sensors = append(s.Sensors, metrics.Sensor{Name: r.cfg.Name, Readings: st.Readings, Errors: st.Errors,
			Dropped: q.Dropped[r.cfg.Name]})
		seen[r.cfg.Name] = true
	}
	for name, n := range q.Dropped {
		if !seen[name] {
			s.Sensors = append(s.Sensors, metrics.Sensor{Name: name, Dropped: n})
		}
	}
	s.Outputs = a.outputMetrics()
	cs := a.store.Status()
	if !cs.ClientNotAfter.IsZero() {
		s.Certs = append(s.Certs, metrics.Cert{Name: "client", DaysLeft: cs.ClientNotAfter.Sub(now).Hours() / 24})
	}
	if !cs.CANotAfter.IsZero() {
		s.Certs = append(s.Certs, metrics.Cert{Name: "ca", DaysLeft: cs.CANotAfter.Sub(now).Hours() / 24})
	}
	if a.ops != nil && a.ops.d != nil {
		st := a.ops.d.Stats()
		s.Remote = &metrics.Remote{Accepted: st.Accepted, Rejected: map[string]uint64{}}
		for _, r := range remote.Reasons() {
			s.Remote.Rejected[string(r)] = st.Rejected[r]
		}
	}
	return s
}

package agent

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// stallLimit is how long one step of the pipeline (a sensor's open or read,
// a durable append) may take before the agent counts as stalled. The slowest
// legitimate step is an SCD4x read (about 6 s) or a group commit on a slow
// SD card; a minute is far beyond both.
const stallLimit = time.Minute

// notify sends a state to systemd when it supervises us (NOTIFY_SOCKET set);
// elsewhere it does nothing.
func notify(log *slog.Logger, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		log.Debug("sd_notify", "state", state, "err", err)
	}
}

// stalls reports which parts of the pipeline have made no progress for too
// long: a sensor runner stuck inside one step, or an uplink session holding
// unacknowledged messages well past its own ack timeout.
func (a *agent) stalls(now time.Time) []string {
	var out []string
	for _, r := range a.runners {
		if since := r.busySince.Load(); since != 0 && now.Sub(time.Unix(0, since)) > stallLimit {
			out = append(out, fmt.Sprintf("sensor %s stuck for %v", r.cfg.Name, now.Sub(time.Unix(0, since)).Round(time.Second)))
		}
	}
	if since := a.handBusySince(); since != 0 && now.Sub(time.Unix(0, since)) > stallLimit {
		out = append(out, fmt.Sprintf("buffer commit stuck for %v", now.Sub(time.Unix(0, since)).Round(time.Second)))
	}
	st := a.up.State()
	if st.Connected && st.InFlight > 0 {
		last := st.LastUpload
		if last.Before(st.ConnectedSince) {
			last = st.ConnectedSince
		}
		if now.Sub(last) > 2*stallLimit {
			out = append(out, fmt.Sprintf("uplink: %d messages unacknowledged for %v", st.InFlight, now.Sub(last).Round(time.Second)))
		}
	}
	return out
}

// watchdog feeds systemd's watchdog (WatchdogSec=) from the pipeline's own
// progress: while a part is stalled the pings stop, and systemd restarts the
// agent, which resumes from the durable buffer. With or without a watchdog it
// keeps STATUS= current (uplink, backlog, drops, a TLS problem).
func (a *agent) watchdog(ctx context.Context) {
	interval, err := daemon.SdWatchdogEnabled(false)
	ping := err == nil && interval > 0
	if !ping {
		interval = 30 * time.Second // STATUS= only
	}
	notify(a.log, a.statusLine())
	t := a.clock.NewTicker(interval / 3)
	defer t.Stop()
	stalled := false
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.Chan():
			if !ping {
				notify(a.log, a.statusLine())
				continue
			}
			if s := a.stalls(now); len(s) > 0 {
				if !stalled {
					a.log.Error("pipeline stalled; withholding the watchdog ping so that systemd restarts the agent",
						"stalls", strings.Join(s, "; "))
				}
				stalled = true
				continue
			}
			stalled = false
			notify(a.log, daemon.SdNotifyWatchdog)
			notify(a.log, a.statusLine())
		}
	}
}

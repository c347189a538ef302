package agent

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cityedge/cityedge/buffer"
)

// The control socket lets `cityedge --diagnose` ask a running agent for its
// live state instead of fighting it for the buffer's lock or the I2C bus.
// It is read-only: a client connects and receives one JSON document.
const socketName = "cityedge.sock"

// socketPaths lists where the control socket may be, in the order the agent
// tries them: systemd's RuntimeDirectory, /run/cityedge, then the state
// directory (development and demo).
func socketPaths(cfg *config.Config) []string {
	var out []string
	if rd := os.Getenv("RUNTIME_DIRECTORY"); rd != "" {
		out = append(out, filepath.Join(strings.Split(rd, ":")[0], socketName))
	}
	out = append(out, filepath.Join("/run/cityedge", socketName), filepath.Join(cfg.Agent.StateDir, socketName))
	return out
}

// LiveState is what the control socket returns: the status message plus
// what only a running agent knows.
type LiveState struct {
	Status
	PID        int         `json:"pid"`
	BufferFile string      `json:"buffer_file"`
	Buffer     BufferState `json:"buffer"`
	Uplink     UplinkState `json:"uplink"`
}

// BufferState is the buffer part of LiveState.
type BufferState struct {
	FileBytes  int64                 `json:"file_bytes"`
	OldestTime time.Time             `json:"oldest_time,omitzero"`
	Salvage    *buffer.SalvageReport `json:"salvage,omitempty"`
	Commits    uint64                `json:"commits"` // write transactions since start
}

// UplinkState is the uplink part of LiveState.
type UplinkState struct {
	// NotConfigured: no uplink.brokers, Sentilo is the only output (the
	// rest of UplinkState is then empty).
	NotConfigured bool      `json:"not_configured,omitempty"`
	Connected     bool      `json:"connected"`
	Broker        string    `json:"broker"`
	Since         time.Time `json:"connected_since,omitzero"`
	LastUpload    time.Time `json:"last_upload,omitzero"`
	LastError     string    `json:"last_error,omitempty"`
	Published     uint64    `json:"published"`
	Acked         uint64    `json:"acked"`
	InFlight      int       `json:"in_flight"`
	// While not connected: when the next attempt is due and how many were
	// made since the session was lost (uplink.State).
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	Attempts    int       `json:"attempts"`
}

func (a *agent) live() LiveState {
	var m Status
	_ = json.Unmarshal(a.status(true), &m)
	m.State = "running"
	a.guidanceStatus(&m, true) // the bays too, whatever publish_bays says: this stays on the gateway
	q := a.q.Stats()
	u := a.up.State()
	return LiveState{Status: m, PID: os.Getpid(),
		BufferFile: a.cfg.BufferPath(),
		Buffer:     BufferState{FileBytes: q.FileBytes, OldestTime: q.OldestTime, Salvage: q.Salvage, Commits: q.Commits},
		Uplink: UplinkState{Connected: u.Connected, Broker: u.Broker, Since: u.ConnectedSince, LastUpload: u.LastUpload,
			LastError: u.LastError, Published: u.Published, Acked: u.Acked, InFlight: u.InFlight,
			NextAttempt: u.NextAttempt, Attempts: u.Attempts, NotConfigured: !a.cfg.MQTT()}}
}

// serveControl listens on the first usable socket path until ctx is done.
func (a *agent) serveControl(ctx context.Context) {
	var ln net.Listener
	var path string
	for _, p := range socketPaths(a.cfg) {
		if _, err := os.Stat(filepath.Dir(p)); err != nil {
			continue
		}
		_ = os.Remove(p) // a stale socket from a crash; the buffer lock proves we are the only agent
		l, err := net.Listen("unix", p)
		if err != nil {
			a.log.Debug("control socket", "path", p, "err", err)
			continue
		}
		ln, path = l, p
		break
	}
	if ln == nil {
		a.log.Warn("no control socket: --diagnose will not see the running agent")
		return
	}
	_ = os.Chmod(path, 0o600)
	if err := ownLikeStateDir(a.cfg.Agent.StateDir, path); err != nil {
		a.log.Warn("control socket", "err", err)
	}
	a.log.Info("control socket for --diagnose", "path", path)
	go func() {
		<-ctx.Done()
		ln.Close()
		os.Remove(path)
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				a.log.Warn("control socket", "err", err)
			}
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
			_ = json.NewEncoder(c).Encode(a.live())
		}()
	}
}

// Query asks a running agent for its live state over the control socket; nil
// when none answers. It also returns the socket's path.
func Query(ctx context.Context, cfg *config.Config, log *slog.Logger) (*LiveState, string) {
	for _, p := range socketPaths(cfg) {
		d := net.Dialer{Timeout: time.Second}
		c, err := d.DialContext(ctx, "unix", p)
		if err != nil {
			continue
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		var st LiveState
		err = json.NewDecoder(c).Decode(&st)
		c.Close()
		if err != nil {
			log.Debug("control socket answered badly", "path", p, "err", err)
			continue
		}
		return &st, p
	}
	return nil, ""
}

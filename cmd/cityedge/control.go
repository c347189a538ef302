package main

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

// liveState is what the control socket returns: the status message plus
// what only a running agent knows.
type liveState struct {
	statusMessage
	PID        int         `json:"pid"`
	BufferFile string      `json:"buffer_file"`
	Buffer     bufferState `json:"buffer"`
	Uplink     uplinkState `json:"uplink"`
}

type bufferState struct {
	FileBytes  int64                 `json:"file_bytes"`
	OldestTime time.Time             `json:"oldest_time,omitzero"`
	Salvage    *buffer.SalvageReport `json:"salvage,omitempty"`
	Commits    uint64                `json:"commits"` // write transactions since start
}

type uplinkState struct {
	Connected  bool      `json:"connected"`
	Broker     string    `json:"broker"`
	Since      time.Time `json:"connected_since,omitzero"`
	LastUpload time.Time `json:"last_upload,omitzero"`
	LastError  string    `json:"last_error,omitempty"`
	Published  uint64    `json:"published"`
	Acked      uint64    `json:"acked"`
	InFlight   int       `json:"in_flight"`
}

func (a *agent) live() liveState {
	var m statusMessage
	_ = json.Unmarshal(a.status(true), &m)
	m.State = "running"
	q := a.q.Stats()
	u := a.up.State()
	return liveState{statusMessage: m, PID: os.Getpid(),
		BufferFile: filepath.Join(a.cfg.Agent.StateDir, bufferFile),
		Buffer:     bufferState{FileBytes: q.FileBytes, OldestTime: q.OldestTime, Salvage: q.Salvage, Commits: q.Commits},
		Uplink: uplinkState{Connected: u.Connected, Broker: u.Broker, Since: u.ConnectedSince, LastUpload: u.LastUpload,
			LastError: u.LastError, Published: u.Published, Acked: u.Acked, InFlight: u.InFlight}}
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

// queryAgent asks a running agent for its live state; nil when none answers.
func queryAgent(ctx context.Context, cfg *config.Config, log *slog.Logger) (*liveState, string) {
	for _, p := range socketPaths(cfg) {
		d := net.Dialer{Timeout: time.Second}
		c, err := d.DialContext(ctx, "unix", p)
		if err != nil {
			continue
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		var st liveState
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

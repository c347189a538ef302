package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cityedge/cityedge/certs"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/atomicfile"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/remote"
	"github.com/cityedge/cityedge/uplink"
)

// The remote channel (docs/REMOTE.md): signed commands arrive on
// <topic_prefix>/cmd, internal/remote verifies them, the handlers here run
// them against the live agent, and the answers go to
// <topic_prefix>/cmd/result with uplink.Client.Send. Commands run one at a
// time, on a goroutine of their own, never on the uplink's.

// Topic suffixes of the remote channel.
const (
	cmdSuffix    = "cmd"
	resultSuffix = "cmd/result"
)

// remoteInbox bounds commands received and not yet handled; beyond it a
// command is dropped with a warning (the operator may send it again).
const remoteInbox = 64

// answerGrace bounds how long the immediate answer to a `config` command
// may take to be acknowledged by the broker before the agent restarts into
// the new configuration.
const answerGrace = 5 * time.Second

// ops is the agent's remote channel, metrics and restart state.
type ops struct {
	d       *remote.Dispatcher // nil unless remote.enabled
	inbox   chan []byte
	diag    func(ctx context.Context, cfg *config.Config, live *LiveState) ([]byte, error)
	restart chan struct{} // closed to restart in place (restart.go)
	once    sync.Once

	mu         sync.Mutex
	why        string          // why the agent restarts ("" while it does not)
	pendingCfg *remote.Command // a config command whose file was written: restart after answering
	trial      *trialFile      // the configuration in force awaits confirmation
	rollback   *rollbackFile   // the last rollback, until the next config command
	dropped    uint64          // commands dropped because the inbox was full
}

// openOps prepares the remote channel (when remote.enabled) and the restart
// state; it runs after the state directory exists.
func (a *agent) openOps(d Deps) error {
	a.ops = &ops{restart: make(chan struct{}), diag: d.Diagnose}
	a.loadTrialState()
	if !a.cfg.Remote.Enabled {
		return nil
	}
	disp, err := remote.NewDispatcher(remote.Options{
		AgentID:  a.cfg.Agent.ID,
		Keys:     a.cfg.RemoteKeys(),
		MaxAge:   a.cfg.Remote.MaxAge.D(),
		StateDir: a.cfg.Agent.StateDir,
		Clock:    a.clock,
		Logger:   a.log,
	})
	if err != nil {
		return fmt.Errorf("remote commands: %w", err)
	}
	handlers := map[string]remote.Handler{
		remote.CmdStatus:      a.cmdStatus,
		remote.CmdDiagnose:    a.cmdDiagnose,
		remote.CmdConfig:      a.cmdConfig,
		remote.CmdCSR:         a.cmdCSR,
		remote.CmdInstallCert: a.cmdInstallCert,
	}
	for name, h := range handlers {
		if err := disp.Register(name, h); err != nil {
			return err
		}
	}
	a.ops.d = disp
	a.ops.inbox = make(chan []byte, remoteInbox)
	return nil
}

// subscriptions are the uplink's subscriptions: <prefix>/cmd when remote
// commands are enabled.
func (a *agent) subscriptions() []uplink.Subscription {
	if a.ops == nil || a.ops.d == nil {
		return nil
	}
	return []uplink.Subscription{{Suffix: cmdSuffix, Handle: func(_ context.Context, payload []byte) {
		select {
		case a.ops.inbox <- append([]byte(nil), payload...):
		default:
			a.ops.mu.Lock()
			a.ops.dropped++
			a.ops.mu.Unlock()
			a.log.Warn("remote command dropped: too many waiting", "waiting", remoteInbox)
		}
	}}}
}

// runOps runs the remote channel, the metrics writer and the confirmation
// of a new configuration until ctx is done.
func (a *agent) runOps(ctx context.Context) {
	a.announce()
	go a.watchTrial(ctx)
	go a.runMetrics(ctx)
	if a.ops.d == nil {
		return
	}
	a.log.Info("remote commands enabled", "topic", a.cfg.Uplink.TopicPrefix+"/"+cmdSuffix,
		"keys", len(a.cfg.RemoteKeys().Keys()), "max_age", a.cfg.Remote.MaxAge.D())
	for {
		select {
		case <-ctx.Done():
			return
		case raw := <-a.ops.inbox:
			ans, publish := a.ops.d.Handle(ctx, raw)
			a.ops.mu.Lock()
			cmd := a.ops.pendingCfg
			a.ops.pendingCfg = nil
			a.ops.mu.Unlock()
			var acked <-chan error
			if publish {
				acked = a.up.SendAcked(resultSuffix, ans)
			}
			if cmd != nil {
				// The restart ends the session: wait for the broker to
				// acknowledge the answer first, within answerGrace (a
				// broker that is away gets the answer of the restarted
				// agent, once the new configuration is confirmed).
				select {
				case <-ctx.Done():
				case <-acked:
				case <-a.clock.After(answerGrace):
				}
				a.requestRestart("remote configuration " + cmd.JTI + " written to " + a.cfg.StatePath(config.RemoteFile))
				return
			}
		}
	}
}

// RemoteStatus is the status message's view of the remote channel and of
// the configuration in force.
type RemoteStatus struct {
	Enabled  bool              `json:"enabled"`
	Accepted uint64            `json:"accepted"`
	Failed   uint64            `json:"failed"`
	Rejected uint64            `json:"rejected"`
	ByReason map[string]uint64 `json:"rejected_by_reason,omitempty"` // reasons seen, nonzero only
	Dropped  uint64            `json:"dropped,omitempty"`
	// Pending is set while a pushed configuration awaits confirmation.
	Pending *TrialStatus `json:"pending_confirmation,omitempty"`
	// Rollback is the last rollback of a pushed configuration.
	Rollback *RollbackStatus `json:"rollback,omitempty"`
}

// TrialStatus is a pushed configuration on trial.
type TrialStatus struct {
	JTI      string    `json:"jti"`
	Deadline time.Time `json:"deadline,omitzero"`
}

// RollbackStatus is the last rollback.
type RollbackStatus struct {
	JTI      string    `json:"jti"`
	Time     time.Time `json:"time"`
	Reason   string    `json:"reason"`
	Restored string    `json:"restored"`
}

// fillRemoteStatus adds the configuration in force and the remote counters
// to a status message.
func (a *agent) fillRemoteStatus(m *Status) {
	m.Config, m.ConfigSource = a.cfg.Path(), a.cfg.Source()
	if a.ops == nil {
		return
	}
	rs := &RemoteStatus{Enabled: a.ops.d != nil}
	if a.ops.d != nil {
		st := a.ops.d.Stats()
		rs.Accepted, rs.Failed = st.Accepted, st.Failed
		for r, n := range st.Rejected {
			rs.Rejected += n
			if n > 0 {
				if rs.ByReason == nil {
					rs.ByReason = map[string]uint64{}
				}
				rs.ByReason[string(r)] = n
			}
		}
	}
	a.ops.mu.Lock()
	rs.Dropped = a.ops.dropped
	if t := a.ops.trial; t != nil {
		rs.Pending = &TrialStatus{JTI: t.JTI, Deadline: t.Deadline}
	}
	if r := a.ops.rollback; r != nil {
		rs.Rollback = &RollbackStatus{JTI: r.JTI, Time: r.Time, Reason: r.Reason, Restored: r.Restored}
	}
	a.ops.mu.Unlock()
	m.Remote = rs
}

// cmdStatus publishes the status message now and returns it.
func (a *agent) cmdStatus(_ context.Context, _ *remote.Command) (any, error) {
	a.up.PublishStatus()
	return json.RawMessage(a.status(a.up.State().Connected)), nil
}

// cmdDiagnose returns the --diagnose --json report made with the agent's
// live state; the hardware and the buffer are not touched.
func (a *agent) cmdDiagnose(ctx context.Context, _ *remote.Command) (any, error) {
	if a.ops.diag == nil {
		return nil, errors.New("diagnose is not available in this build")
	}
	live := a.live()
	b, err := a.ops.diag(ctx, a.cfg, &live)
	if err != nil {
		return nil, err
	}
	return json.RawMessage(b), nil
}

// decodeArgs reads a command's args strictly into v.
func decodeArgs(c *remote.Command, v any) error {
	dec := json.NewDecoder(bytes.NewReader(c.Args))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("args: %w", err)
	}
	return nil
}

// cmdConfig validates a complete configuration exactly as at start, writes
// it as state_dir/remote.toml (the one in force before kept as
// remote.toml.last-good) and restarts the agent in place; watchTrial rolls
// it back unless the uplink confirms it within remote.confirm_within.
func (a *agent) cmdConfig(_ context.Context, c *remote.Command) (any, error) {
	var args struct {
		TOML *string `json:"toml"`
	}
	if err := decodeArgs(c, &args); err != nil {
		return nil, err
	}
	if args.TOML == nil || *args.TOML == "" {
		return nil, errors.New("args.toml: required: a complete configuration (TOML)")
	}
	path := a.cfg.StatePath(config.RemoteFile)
	next, err := config.ParseRemote(path, []byte(*args.TOML), a.cfg)
	if err == nil {
		err = next.CheckFiles(true)
	}
	if err == nil {
		_, err = certs.Load(next.CertOptions(slog.New(slog.DiscardHandler)))
	}
	if err != nil {
		return nil, fmt.Errorf("configuration refused, nothing written, still running %s: %w", a.cfg.Path(), err)
	}
	if err := a.writeRemoteConfig(c.JTI, []byte(*args.TOML)); err != nil {
		return nil, fmt.Errorf("configuration valid but not written (still running %s): %w", a.cfg.Path(), err)
	}
	a.ops.mu.Lock()
	a.ops.pendingCfg = c
	a.ops.mu.Unlock()
	a.log.Info("remote configuration written; restarting in place to apply it", "jti", c.JTI, "path", path,
		"confirm_within", next.Remote.ConfirmWithin.D())
	return map[string]any{"written": path, "restart": true, "previous": a.cfg.Path(),
		"confirm_within": next.Remote.ConfirmWithin.D().String()}, nil
}

// CSR files under state_dir/certs.
const (
	pendingKey = "pending.key"
	pendingCSR = "pending.csr"
)

func (a *agent) certsDir() string { return a.cfg.StatePath(config.CertsDir) }

// cmdCSR makes a new key beside the live one (state_dir/certs/pending.key,
// mode 0600, never sent anywhere) and returns a CSR for it with CN = agent
// id. An earlier pending key, never installed, is replaced.
func (a *agent) cmdCSR(_ context.Context, _ *remote.Command) (any, error) {
	dir := a.certsDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	key, csr := filepath.Join(dir, pendingKey), filepath.Join(dir, pendingCSR)
	for _, p := range []string{key, csr} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	if err := certs.Enroll(key, csr, a.cfg.Agent.ID); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(csr)
	if err != nil {
		return nil, err
	}
	a.log.Info("remote csr: new key made beside the live one", "key", key)
	return map[string]string{"csr": string(b), "cn": a.cfg.Agent.ID}, nil
}

// cmdInstallCert installs args.cert for the pending key: it must belong to
// that key, chain to the CA for client authentication, be valid now and
// name this agent. The pair goes to state_dir/certs/<serial>/, the symlink
// state_dir/certs/current is switched to it, and the store takes it like a
// hot reload; the uplink reconnects with it.
func (a *agent) cmdInstallCert(_ context.Context, c *remote.Command) (any, error) {
	var args struct {
		Cert *string `json:"cert"`
	}
	if err := decodeArgs(c, &args); err != nil {
		return nil, err
	}
	if args.Cert == nil || *args.Cert == "" {
		return nil, errors.New("args.cert: required: the certificate (PEM) issued for the CSR of csr")
	}
	blk, _ := pem.Decode([]byte(*args.Cert))
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("args.cert: no PEM CERTIFICATE block")
	}
	dir := a.certsDir()
	keyPEM, err := os.ReadFile(filepath.Join(dir, pendingKey))
	if err != nil {
		return nil, fmt.Errorf("no pending key (send csr first): %w", err)
	}
	defer clear(keyPEM)
	// Validate in a staging directory, exactly as the store will judge it.
	stage, err := os.MkdirTemp(dir, ".install-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(stage)
	crt, key := filepath.Join(stage, "client.crt"), filepath.Join(stage, "client.key")
	if err := writeFileSync(crt, []byte(*args.Cert), 0o644); err != nil {
		return nil, err
	}
	if err := writeFileSync(key, keyPEM, 0o600); err != nil {
		return nil, err
	}
	opts := a.cfg.CertOptions(slog.New(slog.DiscardHandler))
	opts.CertFile, opts.KeyFile = crt, key
	st, err := certs.Load(opts)
	if err != nil {
		return nil, fmt.Errorf("certificate refused, the live one stays: %w", err)
	}
	s := st.Status()
	switch {
	case s.Expired:
		return nil, fmt.Errorf("certificate refused, the live one stays: %s", s.Warning)
	case s.ClientSubject != "CN="+a.cfg.Agent.ID:
		return nil, fmt.Errorf("certificate refused, the live one stays: subject %s, want CN=%s", s.ClientSubject, a.cfg.Agent.ID)
	}
	gen := filepath.Join(dir, s.ClientSerial)
	if err := os.RemoveAll(gen); err != nil {
		return nil, err
	}
	if err := os.Rename(stage, gen); err != nil {
		return nil, err
	}
	cur := filepath.Join(dir, "current")
	old, _ := os.Readlink(cur)
	if err := swapSymlink(cur, s.ClientSerial); err != nil {
		return nil, err
	}
	if err := a.store.Install(filepath.Join(cur, "client.crt"), filepath.Join(cur, "client.key")); err != nil {
		if old != "" {
			_ = swapSymlink(cur, old)
		} else {
			_ = os.Remove(cur)
		}
		return nil, fmt.Errorf("certificate refused, the live one stays: %w", err)
	}
	_ = os.Remove(filepath.Join(dir, pendingKey))
	_ = os.Remove(filepath.Join(dir, pendingCSR))
	if old != "" && old != s.ClientSerial {
		_ = os.RemoveAll(filepath.Join(dir, old)) // the previous pair; the configured files stay as they are
	}
	a.log.Info("remote install_cert: new client certificate live; reconnecting with it", "serial", s.ClientSerial,
		"not_after", s.ClientNotAfter, "path", cur)
	a.up.Reconnect()
	return map[string]any{"serial": s.ClientSerial, "subject": s.ClientSubject, "not_after": s.ClientNotAfter,
		"days_left": s.ClientDaysLeft, "path": cur}, nil
}

// swapSymlink points link at target atomically (a new link renamed over it).
func swapSymlink(link, target string) error {
	tmp := link + ".tmp"
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, link); err != nil {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(link))
}

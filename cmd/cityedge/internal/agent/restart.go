package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"syscall"
	"time"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/atomicfile"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/remote"
	"github.com/coreos/go-systemd/v22/daemon"
)

// A pushed configuration (the config command) is applied by restarting in
// place: Run shuts down in order (the buffer is closed cleanly, every
// reading in it stays) and returns ErrRestart; the command then calls Exec,
// which replaces the process with a fresh start of the same binary and
// arguments — the same PID, so systemd sees a reload (RELOADING=1, then
// READY=1 from the new start).
//
// The new configuration is on trial until the uplink has connected and had
// a message acknowledged under it (Sessions > 0 and Acked > 0 since this
// start, or connected with nothing to send). Its deadline,
// remote.confirm_within after the first start under it, is kept in
// state_dir/remote-trial.json, so a crash or a systemd restart does not
// extend it. Past the deadline, or when the agent cannot start under the
// new configuration at all, the last good one is restored and the agent
// restarts again; state_dir/remote-rollback.json records the rollback for
// status and the next answer.

// ErrRestart is returned by Run after a clean shutdown when the agent is to
// restart in place (see Exec).
var ErrRestart = errors.New("agent: restart in place")

// Files of the trial in agent.state_dir.
const (
	trialName    = "remote-trial.json"
	rollbackName = "remote-rollback.json"
	failedSuffix = ".failed" // remote.toml.failed: the configuration rolled back
)

// Previous values of trialFile.
const (
	prevLastGood = "last-good" // remote.toml.last-good was in force
	prevLocal    = "local"     // the --config file was in force
)

type trialFile struct {
	JTI      string    `json:"jti"`
	Previous string    `json:"previous"`
	Written  time.Time `json:"written"`
	Deadline time.Time `json:"deadline,omitzero"` // set at the first start under the new configuration
}

type rollbackFile struct {
	JTI       string    `json:"jti"`
	Time      time.Time `json:"time"`
	Reason    string    `json:"reason"`
	Restored  string    `json:"restored"` // the file in force again
	Announced bool      `json:"announced"`
}

func readJSON(path string, v any) (bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, json.Unmarshal(b, v)
}

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, b, 0o600)
}

func writeFileSync(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeRemoteConfig keeps the pushed configuration in force as
// remote.toml.last-good (or notes that the --config file was in force),
// writes data as remote.toml and starts the trial.
func (a *agent) writeRemoteConfig(jti string, data []byte) error {
	rp, lg := a.cfg.StatePath(config.RemoteFile), a.cfg.StatePath(config.LastGoodFile)
	prev := prevLocal
	if a.cfg.Source() == "remote" {
		cur, err := os.ReadFile(rp)
		if err != nil {
			return err
		}
		if err := atomicfile.Write(lg, cur, 0o600); err != nil {
			return err
		}
		prev = prevLastGood
	} else if err := os.Remove(lg); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	// The trial is recorded first: a crash in between leaves a trial of the
	// configuration still in force, which confirms at once.
	t := trialFile{JTI: jti, Previous: prev, Written: a.clock.Now().UTC()}
	if err := writeJSON(a.cfg.StatePath(trialName), t); err != nil {
		return err
	}
	if err := atomicfile.Write(rp, data, 0o600); err != nil {
		_ = os.Remove(a.cfg.StatePath(trialName))
		return err
	}
	_ = os.Remove(a.cfg.StatePath(rollbackName)) // a new push ends the report of the last rollback
	a.ops.mu.Lock()
	a.ops.rollback = nil
	a.ops.mu.Unlock()
	return nil
}

// loadTrialState reads the trial and the last rollback, and starts the
// trial's clock at the first start under the new configuration.
func (a *agent) loadTrialState() {
	var rb rollbackFile
	if ok, err := readJSON(a.cfg.StatePath(rollbackName), &rb); err != nil {
		a.log.Warn("remote rollback record unreadable", "err", err)
	} else if ok {
		a.ops.rollback = &rb
	}
	var t trialFile
	ok, err := readJSON(a.cfg.StatePath(trialName), &t)
	if err != nil {
		a.log.Warn("remote trial record unreadable; the configuration in force is kept", "err", err)
		_ = os.Remove(a.cfg.StatePath(trialName))
		return
	}
	if !ok {
		return
	}
	if t.Deadline.IsZero() {
		t.Deadline = a.clock.Now().UTC().Add(a.cfg.Remote.ConfirmWithin.D())
		if err := writeJSON(a.cfg.StatePath(trialName), t); err != nil {
			a.log.Warn("remote trial record not written", "err", err)
		}
	}
	a.ops.trial = &t
	a.log.Info("pushed configuration on trial: confirmed once the uplink connects and gets an acknowledgement",
		"jti", t.JTI, "config", a.cfg.Path(), "deadline", t.Deadline)
}

// watchTrial confirms the configuration on trial or rolls it back.
func (a *agent) watchTrial(ctx context.Context) {
	a.ops.mu.Lock()
	t := a.ops.trial
	a.ops.mu.Unlock()
	if t == nil {
		return
	}
	if a.cfg.Source() != "remote" {
		a.rollBack(t, "the pushed configuration was not in force at start (set aside as remote.toml.rejected)")
		return
	}
	tick := a.clock.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		u := a.up.State()
		if u.Sessions > 0 && (u.Acked > 0 || (u.Connected && a.q.Stats().Count == 0)) {
			a.confirm(t)
			return
		}
		if !a.clock.Now().Before(t.Deadline) {
			reason := fmt.Sprintf("the uplink did not connect and get an acknowledgement within remote.confirm_within (%v)",
				a.cfg.Remote.ConfirmWithin.D())
			if u.LastError != "" {
				reason += "; last uplink error: " + u.LastError
			}
			a.rollBack(t, reason)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.Chan():
		}
	}
}

func (a *agent) confirm(t *trialFile) {
	if err := os.Remove(a.cfg.StatePath(trialName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		a.log.Error("remote trial record not removed", "err", err)
		return
	}
	_ = atomicfile.SyncDir(a.cfg.Agent.StateDir)
	a.ops.mu.Lock()
	a.ops.trial = nil
	a.ops.mu.Unlock()
	a.log.Info("pushed configuration confirmed", "jti", t.JTI, "config", a.cfg.Path())
	a.answer(t.JTI, true, "", map[string]any{"confirmed": true, "config": a.cfg.Path()})
}

// rollBack restores the configuration in force before t and restarts.
func (a *agent) rollBack(t *trialFile, reason string) {
	restored, err := rollBackFiles(a.cfg, t, reason, a.clock.Now())
	if err != nil {
		a.log.Error("rollback of the pushed configuration failed", "jti", t.JTI, "err", err)
		return
	}
	a.log.Warn("pushed configuration rolled back", "jti", t.JTI, "reason", reason, "restored", restored)
	a.requestRestart("rollback to " + restored)
}

// rollBackFiles puts the previous configuration back in force and records
// the rollback; it returns the file in force again.
func rollBackFiles(cfg *config.Config, t *trialFile, reason string, now time.Time) (string, error) {
	rp, lg := cfg.StatePath(config.RemoteFile), cfg.StatePath(config.LastGoodFile)
	if err := os.Rename(rp, rp+failedSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	restored := cfg.BasePath()
	if t.Previous == prevLastGood {
		if err := os.Rename(lg, rp); err != nil {
			return "", err
		}
		restored = rp
	}
	rb := rollbackFile{JTI: t.JTI, Time: now.UTC(), Reason: reason, Restored: restored}
	if err := writeJSON(cfg.StatePath(rollbackName), rb); err != nil {
		return "", err
	}
	if err := os.Remove(cfg.StatePath(trialName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	return restored, atomicfile.SyncDir(cfg.Agent.StateDir)
}

// announce answers a rollback not yet reported: the next result on
// <prefix>/cmd/result carries it, with the jti of the configuration that
// was rolled back.
func (a *agent) announce() {
	a.ops.mu.Lock()
	rb := a.ops.rollback
	a.ops.mu.Unlock()
	if rb == nil || rb.Announced {
		return
	}
	a.answer(rb.JTI, false, "rolled back: "+rb.Reason+"; "+rb.Restored+" is in force again",
		map[string]any{"rolled_back": true, "restored": rb.Restored, "time": rb.Time})
	marked := *rb
	marked.Announced = true
	if err := writeJSON(a.cfg.StatePath(rollbackName), marked); err != nil {
		a.log.Warn("remote rollback record not updated", "err", err)
	}
}

// answer queues a result for a config command outside the dispatcher: its
// confirmation or its rollback, after a restart.
func (a *agent) answer(jti string, ok bool, errText string, result any) {
	if a.ops.d == nil {
		return // the remote channel is off under this configuration
	}
	res := remote.Result{JTI: jti, Cmd: remote.CmdConfig, OK: ok, Error: errText, Time: a.clock.Now()}
	if result != nil {
		b, err := json.Marshal(result)
		if err != nil {
			return
		}
		res.Result = b
	}
	b, err := json.Marshal(res)
	if err != nil {
		return
	}
	a.up.Send(resultSuffix, b)
}

// requestRestart makes Run shut down and return ErrRestart.
func (a *agent) requestRestart(why string) {
	a.ops.once.Do(func() {
		a.ops.mu.Lock()
		a.ops.why = why
		a.ops.mu.Unlock()
		a.log.Info("restarting in place", "why", why)
		close(a.ops.restart)
	})
}

func (a *agent) restarting() bool {
	a.ops.mu.Lock()
	defer a.ops.mu.Unlock()
	return a.ops.why != ""
}

// notifyStopping tells systemd that the agent stops, or that it reloads
// when it restarts in place (the new start says READY=1).
func (a *agent) notifyStopping() {
	if a.ops != nil && a.restarting() {
		notify(a.log, daemon.SdNotifyReloading+"\nMONOTONIC_USEC="+daemon.SdNotifyMonotonicUsec())
		return
	}
	notify(a.log, daemon.SdNotifyStopping)
}

// exitErr is Run's result after a clean shutdown.
func (a *agent) exitErr() error {
	if a.ops != nil && a.restarting() {
		return ErrRestart
	}
	return nil
}

// failedStart is Run's last word: when the agent could not run under a
// pushed configuration on trial, that configuration is rolled back and the
// agent restarts instead of failing.
func failedStart(cfg *config.Config, log *slog.Logger, err error) error {
	if err == nil || errors.Is(err, ErrRestart) || cfg.Source() != "remote" {
		return err
	}
	var t trialFile
	if ok, rerr := readJSON(cfg.StatePath(trialName), &t); !ok || rerr != nil {
		return err
	}
	restored, rerr := rollBackFiles(cfg, &t, "the agent failed under it: "+err.Error(), time.Now())
	if rerr != nil {
		log.Error("rollback of the pushed configuration failed", "jti", t.JTI, "err", rerr)
		return err
	}
	log.Warn("pushed configuration rolled back: the agent failed under it", "jti", t.JTI, "err", err, "restored", restored)
	return ErrRestart
}

// Exec replaces the process with a fresh start of the same binary, with the
// same arguments and environment (same PID). It returns only on failure.
func Exec() error {
	// /proc/self/exe is this very binary, even after a package upgrade
	// replaced the file at its path.
	exe := "/proc/self/exe"
	if _, err := os.Stat(exe); err != nil {
		if exe, err = os.Executable(); err != nil {
			return err
		}
	}
	return syscall.Exec(exe, os.Args, os.Environ())
}

package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"golang.org/x/sys/unix"
)

// ServiceUser is the user the packaged unit runs the agent as (User= in
// scripts/systemd/cityedge.service); systemd's StateDirectory= gives it
// agent.state_dir.
const ServiceUser = "cityedge"

// StateDirProblem says why agent.state_dir cannot be used, without changing
// anything (--diagnose): it is not a directory, it is missing and cannot be
// created because its parent is missing or not writable, or this process
// cannot write in it. A missing directory whose parent exists and is
// writable is no problem: the agent creates it (DECISIONS 10). The error is
// a *config.ConfigError naming agent.state_dir.
func StateDirProblem(cfg *config.Config) error {
	dir := cfg.Agent.StateDir
	fi, err := os.Stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return cfg.KeyError("agent.state_dir", "%s is a file, not a directory: point agent.state_dir at a directory (default /var/lib/cityedge)", dir)
	case err == nil:
		if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
			return cfg.KeyError("agent.state_dir", "%s is not writable by %s: %v (give it to the user the agent runs as, mode 0700)", dir, whoAmI(), err)
		}
		return nil
	case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR):
		return cfg.KeyError("agent.state_dir", "%s: %v", dir, unwrapPath(err))
	}
	parent := filepath.Dir(filepath.Clean(dir))
	pfi, err := os.Stat(parent)
	switch {
	case err != nil:
		return cfg.KeyError("agent.state_dir", "%s does not exist and cannot be created: its parent %s %v", dir, parent, describeStatErr(err))
	case !pfi.IsDir():
		return cfg.KeyError("agent.state_dir", "%s cannot be created: its parent %s is not a directory", dir, parent)
	}
	if err := unix.Access(parent, unix.W_OK|unix.X_OK); err != nil {
		return cfg.KeyError("agent.state_dir", "%s does not exist and %s cannot create it in %s: %v", dir, whoAmI(), parent, err)
	}
	return nil
}

// prepareStateDir makes sure agent.state_dir is a directory the agent can
// write, creating it (mode 0700, not its parents) when its parent exists.
// Created by root, it is given to the service user when that user exists,
// as StateDirectory= would have made it.
func prepareStateDir(cfg *config.Config) error {
	if err := StateDirProblem(cfg); err != nil {
		return err
	}
	dir := cfg.Agent.StateDir
	err := os.Mkdir(dir, 0o700)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return cfg.KeyError("agent.state_dir", "cannot create %s: %v", dir, unwrapPath(err))
	}
	if os.Geteuid() == 0 {
		if u, err := user.Lookup(ServiceUser); err == nil {
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			if err := os.Chown(dir, uid, gid); err != nil {
				return cfg.KeyError("agent.state_dir", "created %s but cannot give it to %s: %v", dir, ServiceUser, err)
			}
		}
	}
	return nil
}

func whoAmI() string {
	uid := os.Geteuid()
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return fmt.Sprintf("user %s (uid %d)", u.Username, uid)
	}
	return fmt.Sprintf("uid %d", uid)
}

func describeStatErr(err error) string {
	if errors.Is(err, fs.ErrNotExist) {
		return "does not exist either"
	}
	return "cannot be read: " + unwrapPath(err).Error()
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	if errno, ok := err.(syscall.Errno); ok {
		return errno
	}
	return err
}

package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/remote"
)

// RemoteConfig is the [remote] table: signed remote commands (docs/REMOTE.md).
type RemoteConfig struct {
	Enabled       bool     `toml:"enabled"`
	TrustedKeys   string   `toml:"trusted_keys"`
	MaxAge        Duration `toml:"max_age"`
	ConfirmWithin Duration `toml:"confirm_within"`
}

// MetricsConfig is the [metrics] table: the Prometheus text file for
// node_exporter's textfile collector.
type MetricsConfig struct {
	// Textfile is off ("") unless set: the agent never guesses a directory
	// another package owns (README "Remote operations").
	Textfile string   `toml:"textfile"`
	Interval Duration `toml:"interval"`
}

// Defaults and limits of [remote] and [metrics].
const (
	DefaultTrustedKeys     = "/etc/cityedge/operators.pem"
	DefaultMaxAge          = 10 * time.Minute
	DefaultConfirmWithin   = 5 * time.Minute
	MinConfirmWithin       = 10 * time.Second
	MaxConfirmWithin       = 24 * time.Hour
	DefaultMetricsInterval = 15 * time.Second
	minMaxAge              = 30 * time.Second
	maxMaxAge              = 24 * time.Hour
	minMetricsInterval     = time.Second
	maxMetricsInterval     = time.Hour
)

// Files the remote channel writes in agent.state_dir (DECISIONS 11).
const (
	// RemoteFile is a configuration pushed with the config command; while
	// it exists it is the configuration in force.
	RemoteFile = "remote.toml"
	// LastGoodFile is the pushed configuration that was in force before
	// RemoteFile, restored by a rollback.
	LastGoodFile = "remote.toml.last-good"
	// CertsDir holds the key made by csr and the pairs installed by
	// install_cert; CertsDir/current/client.crt and client.key, when both
	// exist, take the place of uplink.cert_file and uplink.key_file.
	CertsDir = "certs"
)

func (c *Config) remoteDefaults(has func(table, key string) bool) {
	if !has("remote", "trusted_keys") {
		c.Remote.TrustedKeys = DefaultTrustedKeys
	}
	if !has("remote", "max_age") {
		c.Remote.MaxAge = Duration(DefaultMaxAge)
	}
	if !has("remote", "confirm_within") {
		c.Remote.ConfirmWithin = Duration(DefaultConfirmWithin)
	}
	if !has("metrics", "interval") {
		c.Metrics.Interval = Duration(DefaultMetricsInterval)
	}
}

func (c *Config) validateRemote(fail Fail) {
	r, m := c.Remote, c.Metrics
	if r.Enabled && r.TrustedKeys == "" {
		fail("remote.trusted_keys", "required with remote.enabled: a PEM file of the operators' Ed25519 public keys")
	}
	if r.MaxAge.D() < minMaxAge || r.MaxAge.D() > maxMaxAge {
		fail("remote.max_age", "%v is out of range: use 30s to 24h", r.MaxAge.D())
	}
	if r.ConfirmWithin.D() < MinConfirmWithin || r.ConfirmWithin.D() > MaxConfirmWithin {
		fail("remote.confirm_within", "%v is out of range: use 10s to 24h", r.ConfirmWithin.D())
	}
	if m.Textfile != "" && (!filepath.IsAbs(m.Textfile) || filepath.Ext(m.Textfile) != ".prom") {
		fail("metrics.textfile", "%q: use an absolute path ending in .prom (node_exporter reads only *.prom), e.g. %q", m.Textfile, "/var/lib/prometheus/node-exporter/cityedge.prom")
	}
	if m.Interval.D() < minMetricsInterval || m.Interval.D() > maxMetricsInterval {
		fail("metrics.interval", "%v is out of range: use 1s to 1h", m.Interval.D())
	}
	if r.Enabled && r.TrustedKeys != "" {
		ks, err := remote.LoadKeys(r.TrustedKeys)
		if err != nil {
			fail("remote.trusted_keys", "%v", err)
		}
		c.remoteKeys = ks
	}
}

// RemoteKeys are the keys of remote.trusted_keys, read when the
// configuration was validated; nil unless remote.enabled.
func (c *Config) RemoteKeys() *remote.KeySet { return c.remoteKeys }

// StatePath is name inside agent.state_dir.
func (c *Config) StatePath(name string) string { return filepath.Join(c.Agent.StateDir, name) }

// Source says where the configuration in force came from: the file given
// with --config, or agent.state_dir/remote.toml pushed by a config command.
func (c *Config) Source() string {
	if c.remote {
		return "remote"
	}
	return "local"
}

// BasePath is the file given with --config (the package's conffile),
// whichever file is in force.
func (c *Config) BasePath() string {
	if c.base != "" {
		return c.base
	}
	return c.path
}

// InstalledCert reports whether the client certificate and key come from
// agent.state_dir/certs/current (installed by install_cert) rather than
// uplink.cert_file and uplink.key_file.
func (c *Config) InstalledCert() bool { return c.installed }

// LoadInForce reads the configuration in force: the file at path, unless
// its agent.state_dir holds remote.toml, which is then read and validated
// like any configuration. A remote.toml that no longer validates (it
// cannot have been written so, but a person may edit it) is set aside as
// remote.toml.rejected and the file at path is used, so that a gateway
// never stops on it. warn receives such notes (nil: none).
//
// Either way, when agent.state_dir/certs/current holds client.crt and
// client.key, they replace uplink.cert_file and uplink.key_file.
func LoadInForce(path string, warn func(msg string)) (*Config, error) {
	base, err := Load(path)
	if err != nil {
		return nil, err
	}
	cfg := base
	rp := base.StatePath(RemoteFile)
	if data, err := os.ReadFile(rp); err == nil {
		r, perr := ParseRemote(rp, data, base)
		if perr == nil {
			cfg = r
		} else {
			_ = os.Rename(rp, rp+".rejected")
			if warn != nil {
				warn(fmt.Sprintf("%v; set aside as %s.rejected, using %s", perr, RemoteFile, path))
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) && warn != nil {
		warn(fmt.Sprintf("%s: %v; using %s", rp, err, path))
	}
	cfg.base = path
	cfg.useInstalledCert()
	return cfg, nil
}

// ParseRemote parses and validates a configuration pushed with the config
// command, to be written at path (agent.state_dir/remote.toml) while cur is
// in force: exactly as at start, and agent.id and agent.state_dir may not
// change.
func ParseRemote(path string, data []byte, cur *Config) (*Config, error) {
	c, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	fail := func(key, format string, args ...any) error {
		return &ConfigError{File: path, Line: c.pos.line(key), Key: key, Msg: fmt.Sprintf(format, args...)}
	}
	switch {
	case c.Agent.ID != cur.Agent.ID:
		return nil, fail("agent.id", "%q: a remote configuration may not change agent.id (%q)", c.Agent.ID, cur.Agent.ID)
	case filepath.Clean(c.Agent.StateDir) != filepath.Clean(cur.Agent.StateDir):
		return nil, fail("agent.state_dir", "%q: a remote configuration may not change agent.state_dir (%q)", c.Agent.StateDir, cur.Agent.StateDir)
	}
	c.remote = true
	c.base = cur.BasePath()
	c.useInstalledCert()
	return c, nil
}

// useInstalledCert points uplink.cert_file and uplink.key_file at the pair
// install_cert installed, when there is one.
func (c *Config) useInstalledCert() {
	dir := filepath.Join(c.StatePath(CertsDir), "current")
	crt, key := filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	if fileExists(crt) && fileExists(key) {
		c.Uplink.CertFile, c.Uplink.KeyFile, c.installed = crt, key, true
	}
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

package config

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeKeys(t *testing.T, dir string) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "operators.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRemoteDefaults(t *testing.T) {
	dir := t.TempDir()
	cfg, err := parse(t, dir, validConfig(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	r, m := cfg.Remote, cfg.Metrics
	if r.Enabled || r.TrustedKeys != DefaultTrustedKeys || r.MaxAge.D() != 10*time.Minute ||
		r.ConfirmWithin.D() != 5*time.Minute || m.Textfile != "" || m.Interval.D() != 15*time.Second {
		t.Fatalf("defaults: %+v %+v", r, m)
	}
	if cfg.RemoteKeys() != nil || cfg.Source() != "local" {
		t.Fatalf("keys %v source %s", cfg.RemoteKeys(), cfg.Source())
	}
}

func TestRemoteKeys(t *testing.T) {
	dir := t.TempDir()
	keys := writeKeys(t, dir)
	text := validConfig(t, dir) + "\n[remote]\nenabled = true\ntrusted_keys = \"" + keys + "\"\nconfirm_within = \"10s\"\n" +
		"[metrics]\ntextfile = \"" + dir + "/m/cityedge.prom\"\ninterval = \"1s\"\n"
	cfg, err := parse(t, dir, text)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RemoteKeys() == nil || len(cfg.RemoteKeys().Keys()) != 1 || cfg.Remote.ConfirmWithin.D() != 10*time.Second {
		t.Fatalf("remote %+v", cfg.Remote)
	}
}

// TestRemoteRejects: every bad value names file, line and key.
func TestRemoteRejects(t *testing.T) {
	cases := []struct {
		name, table, key string
		line             int
		say              string
	}{
		{"confirm too short", "[remote]\nconfirm_within = \"9s\"", "remote.confirm_within", 2, "10s to 24h"},
		{"confirm too long", "[remote]\nconfirm_within = \"25h\"", "remote.confirm_within", 2, "10s to 24h"},
		{"confirm a number", "[remote]\nconfirm_within = 300", "remote.confirm_within", 2, "duration string"},
		{"max_age not a duration", "[remote]\nmax_age = \"ten minutes\"", "remote.max_age", 2, ""},
		{"max_age too short", "[remote]\nmax_age = \"1s\"", "remote.max_age", 2, "out of range"},
		{"enabled not a bool", "[remote]\nenabled = \"yes\"", "remote.enabled", 2, ""},
		{"missing keys file", "[remote]\nenabled = true\ntrusted_keys = \"/nonexistent/operators.pem\"", "remote.trusted_keys", 3, "no such file"},
		{"keys file not PEM", "[remote]\nenabled = true\ntrusted_keys = \"@DIR@/ca.pem\"", "remote.trusted_keys", 3, ""},
		{"unknown remote key", "[remote]\nenable = true", "remote.enable", 2, "unknown key"},
		{"relative textfile", "[metrics]\ntextfile = \"cityedge.prom\"", "metrics.textfile", 2, "absolute"},
		{"textfile not .prom", "[metrics]\ntextfile = \"/var/lib/prometheus/node-exporter/cityedge.txt\"", "metrics.textfile", 2, ".prom"},
		{"interval too short", "[metrics]\ninterval = \"100ms\"", "metrics.interval", 2, "out of range"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			base := validConfig(t, dir)
			n := strings.Count(base, "\n")
			text := base + "\n" + strings.ReplaceAll(c.table, "@DIR@", dir) + "\n"
			_, err := parse(t, dir, text)
			var ce *ConfigError
			if err == nil || !asConfigError(err, &ce) {
				t.Fatalf("error %v, want a ConfigError", err)
			}
			if ce.Key != c.key || ce.Line != n+1+c.line || !strings.Contains(ce.Error(), c.say) ||
				!strings.Contains(ce.Error(), "cityedge.toml:") {
				t.Fatalf("error %q (key %s line %d), want key %s line %d saying %q", ce.Error(), ce.Key, ce.Line, c.key, n+1+c.line, c.say)
			}
		})
	}
}

func asConfigError(err error, ce **ConfigError) bool {
	e, ok := err.(*ConfigError)
	*ce = e
	return ok
}

// TestLoadInForce: remote.toml in state_dir is the configuration in force;
// an invalid one is set aside; the installed client pair replaces the
// configured one.
func TestLoadInForce(t *testing.T) {
	dir := t.TempDir()
	text := validConfig(t, dir)
	path := filepath.Join(dir, "cityedge.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(filepath.Join(state, CertsDir, "current"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadInForce(path, nil)
	if err != nil || cfg.Source() != "local" || cfg.Path() != path || cfg.InstalledCert() {
		t.Fatalf("without remote.toml: %v %s %s", err, cfg.Source(), cfg.Path())
	}
	// A pushed configuration with another batch size.
	rp := filepath.Join(state, RemoteFile)
	if err := os.WriteFile(rp, []byte(strings.Replace(text, "batch_max = 100", "batch_max = 7", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"client.crt", "client.key"} {
		if err := os.WriteFile(filepath.Join(state, CertsDir, "current", f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err = LoadInForce(path, nil)
	if err != nil || cfg.Source() != "remote" || cfg.Path() != rp || cfg.BasePath() != path || cfg.Uplink.BatchMax != 7 {
		t.Fatalf("with remote.toml: %v %s %s %d", err, cfg.Source(), cfg.Path(), cfg.Uplink.BatchMax)
	}
	if !cfg.InstalledCert() || cfg.Uplink.CertFile != filepath.Join(state, CertsDir, "current", "client.crt") {
		t.Fatalf("installed pair not used: %s", cfg.Uplink.CertFile)
	}
	// Changing agent.id or state_dir is refused.
	for _, bad := range []string{strings.Replace(text, `id = "gw-0042"`, `id = "gw-9"`, 1),
		strings.Replace(text, `state_dir = "`+dir+`/state"`, `state_dir = "`+dir+`/elsewhere"`, 1)} {
		if _, err := ParseRemote(rp, []byte(bad), cfg); err == nil {
			t.Fatalf("ParseRemote accepted %q", bad)
		}
	}
	// An invalid remote.toml is set aside; the --config file is used.
	if err := os.WriteFile(rp, []byte("[agent\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var notes []string
	cfg, err = LoadInForce(path, func(m string) { notes = append(notes, m) })
	if err != nil || cfg.Source() != "local" || len(notes) != 1 {
		t.Fatalf("invalid remote.toml: %v %s %v", err, cfg.Source(), notes)
	}
	if _, err := os.Stat(rp + ".rejected"); err != nil {
		t.Fatal(err)
	}
}

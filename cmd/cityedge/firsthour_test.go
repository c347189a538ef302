package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/agent"
)

// TestHelpAndBadFlag: --help writes flags with two dashes as README does;
// an unknown flag's error is printed once, with exit status 2.
func TestHelpAndBadFlag(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"--help"}, &out, &errb); code != 0 {
		t.Errorf("--help: exit %d", code)
	}
	for _, want := range []string{"--config PATH", "--diagnose", "--csr PATH", "usage: cityedge [--config PATH]"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("--help lacks %q:\n%s", want, errb.String())
		}
	}
	if strings.Contains(errb.String(), "\n  -config") {
		t.Errorf("--help shows a flag with one dash:\n%s", errb.String())
	}
	errb.Reset()
	if code := run([]string{"--nonsense"}, &out, &errb); code != 2 {
		t.Errorf("bad flag: exit %d, want 2", code)
	}
	if n := strings.Count(errb.String(), "nonsense"); n != 1 {
		t.Errorf("the bad flag is named %d times, want once:\n%s", n, errb.String())
	}
}

// TestUptimeWholeSeconds: uptime_s is an integer, as README shows it.
func TestUptimeWholeSeconds(t *testing.T) {
	b, _ := json.Marshal(agent.Status{Uptime: 3600})
	if !strings.Contains(string(b), `"uptime_s":3600,`) {
		t.Errorf("status JSON %s", b)
	}
}

// TestStateDir: a missing state_dir whose parent exists is created 0700; one
// that is a file, or whose parent is missing, stops the agent with exit 2
// naming agent.state_dir and the configuration file; --diagnose FAILs it.
func TestStateDir(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	for _, c := range []struct {
		name, stateDir string
	}{
		{"a file", file},
		{"parent missing", filepath.Join(dir, "no", "state")},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := writeMinimalConfig(t, dir, c.stateDir)
			cmd := exec.Command(agentBinary(t), "--config", cfg, "--simulate")
			out, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != 2 {
				t.Errorf("exit %d, want 2:\n%s", code, out)
			}
			if !strings.Contains(string(out), "agent.state_dir") || !strings.Contains(string(out), cfg) {
				t.Errorf("the message does not name agent.state_dir and %s:\n%s", cfg, out)
			}
			d := exec.Command(agentBinary(t), "--config", cfg, "--diagnose", "--simulate")
			dout, _ := d.Output()
			if !strings.Contains(string(dout), "FAIL  state") || d.ProcessState.ExitCode() != 1 {
				t.Errorf("--diagnose does not FAIL the state_dir (exit %d):\n%s", d.ProcessState.ExitCode(), dout)
			}
		})
	}
	t.Run("created", func(t *testing.T) {
		state := filepath.Join(dir, "new-state")
		cfg := writeMinimalConfig(t, dir, state)
		p := startAgent(t, cfg, "--simulate")
		waitFor(t, "state_dir created", 10*time.Second, func() bool {
			_, err := os.Stat(filepath.Join(state, "buffer.db"))
			return err == nil
		})
		p.stop(t)
		fi, err := os.Stat(state)
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("state_dir %v, %v; want mode 0700", fi.Mode(), err)
		}
	})
}

func writeMinimalConfig(t *testing.T, dir, stateDir string) string {
	t.Helper()
	for _, f := range []string{"ca.pem", "client.pem", "client.key"} {
		os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600)
	}
	path := filepath.Join(t.TempDir(), "cityedge.toml")
	text := "[agent]\nid = \"gw-1\"\nstate_dir = \"" + stateDir + "\"\n[uplink]\nbrokers = [\"mqtts://127.0.0.1:1\"]\n" +
		"ca_file = \"" + dir + "/ca.pem\"\ncert_file = \"" + dir + "/client.pem\"\nkey_file = \"" + dir + "/client.key\"\n" +
		"[[sensors]]\nname = \"air-1\"\ndriver = \"bme280\"\nbus = \"1\"\n"
	os.WriteFile(path, []byte(text), 0o644)
	return path
}

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cityedge/cityedge/certs/devpki"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/diagnose"
	"github.com/cityedge/cityedge/scripts/nginxtest"
	"github.com/cityedge/cityedge/uplink/sentilo"
	"github.com/cityedge/cityedge/uplink/sentilo/sentilotest"
)

// TestEndToEndSentiloOnly runs the real binary with [sentilo] and no MQTT
// broker (an [uplink] holding only the TLS files [sentilo] inherits),
// through real nginx with mutual TLS. It starts with the key readable by
// all: the agent samples and says why nothing goes; after chmod 600 and
// SIGHUP, with no restart, readings and the bay's occupancy
// reach Sentilo, --diagnose asks the running agent and FAILs nothing (MQTT
// not configured is said, not failed), SIGTERM exits 0, and the token is
// in no log line.
func TestEndToEndSentiloOnly(t *testing.T) {
	dir := t.TempDir()
	pki, err := devpki.Dev(filepath.Join(dir, "pki"), "gw-test")
	if err != nil {
		t.Fatal(err)
	}
	const token, provider = "solo-t0ken-5eCr3t-0123456789", "cityedge-solo"
	temp, occ := sentilo.DefaultID("gw-test", "air-1", "temperature"), sentilo.DefaultID("gw-test", "bay-1", "occupied")
	var ids []string
	for _, q := range []string{"bay-1/occupied", "air-1/temperature", "air-1/humidity", "air-1/pressure", "cityedge/dropped", "cityedge/corrupt"} {
		s, qu, _ := strings.Cut(q, "/")
		ids = append(ids, sentilo.DefaultID("gw-test", s, qu))
	}
	srv := sentilotest.Start(t, sentilotest.Options{Provider: provider, Token: token, RequireHTTPS: true, Sensors: ids})
	px := nginxtest.Start(t, nginxtest.Options{PKI: pki, Upstream: srv.Addr})
	tokenFile := filepath.Join(dir, "sentilo.token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "cityedge.toml")
	text := fmt.Sprintf(`[agent]
id = "gw-test"
state_dir = %q

[buffer]
commit_interval = "50ms"

[uplink]
ca_file = %q
cert_file = %q
key_file = %q
`+testClockRule+`
[sentilo]
url = %q
provider = %q
token_file = %q
batch_wait = "200ms"

[[sensors]]
name = "bay-1"
driver = "gpio-presence"
pin = "GPIO17"
interval = "300ms"

[[sensors]]
name = "air-1"
driver = "bme280"
bus = "1"
interval = "100ms"
`, filepath.Join(dir, "state"), pki.CA.CertFile, pki.Client.CertFile, pki.Client.KeyFile, px.URL, provider, tokenFile)
	if err := os.WriteFile(config, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RUNTIME_DIRECTORY", dir) // the control socket, for --diagnose
	// An operator's mistake first: the key readable by all. The agent runs
	// and samples, Sentilo gets nothing; the fixed key is taken at SIGHUP.
	if err := os.Chmod(pki.Client.KeyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	agent := startAgent(t, config, "--simulate")
	waitFor(t, "the agent to say why it cannot deliver", 15*time.Second, func() bool {
		return strings.Contains(agent.stderr.String(), "0644")
	})
	time.Sleep(time.Second)
	if n := len(srv.Observations()); n != 0 {
		t.Fatalf("Sentilo stored %d observations sent with a world-readable key\n%s", n, agent.stderr.String())
	}
	if err := os.Chmod(pki.Client.KeyFile, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := agent.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := map[string]int{}
		for _, o := range srv.Observations() {
			n[o.Sensor]++
		}
		if n[temp] >= 10 && n[occ] >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Sentilo stored %v; want ≥10 temperatures and the bay\n%s", n, agent.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	r, code, out := runDiagnose(t, config, "--simulate")
	if c := verdictOf(r, "agent", ""); !strings.Contains(c.Detail, "running") {
		t.Errorf("--diagnose did not ask the running agent: %+v", c)
	}
	if c := verdictOf(r, "uplink", "brokers"); c.Verdict != diagnose.Pass || !strings.Contains(c.Detail, "no MQTT output") {
		t.Errorf("uplink: %+v; want PASS saying there is no MQTT output", c)
	}
	for _, c := range r.Checks {
		if c.Verdict == diagnose.Fail {
			t.Errorf("FAIL: %+v", c)
		}
	}
	if code != 0 || strings.Contains(out, token) {
		t.Errorf("--diagnose exit %d; token shown: %v\n%s", code, strings.Contains(out, token), out)
	}
	if code, _ := agent.stop(t); code != 0 {
		t.Fatalf("exit %d\n%s", code, agent.stderr.String())
	}
	logs := agent.stderr.String()
	if strings.Contains(logs, token) {
		t.Error("the token is in the log")
	}
	if !strings.Contains(logs, "MQTT output not configured") {
		t.Errorf("the start does not say MQTT is not configured:\n%s", logs)
	}
}

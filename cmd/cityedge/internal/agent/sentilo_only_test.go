package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/certs/devpki"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/clocksync"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/remote/remotetest"
	"github.com/cityedge/cityedge/scripts/testlog"
	"github.com/cityedge/cityedge/uplink/sentilo"
	"github.com/cityedge/cityedge/uplink/sentilo/sentilotest"
)

// syncedClock is a gateway whose wall clock is synchronised (the clock rule
// releases everything at once).
type syncedClock struct{}

func (syncedClock) Wall() time.Time     { return time.Now() }
func (syncedClock) Boot() time.Duration { return time.Duration(time.Now().UnixNano()) }
func (syncedClock) BootID() uint32      { return 7 }
func (syncedClock) Sync() (clocksync.Sync, error) {
	return clocksync.Sync{Synced: true, MaxError: 10 * time.Millisecond}, nil
}

// TestRunSentiloOnly runs the whole agent (simulated hardware) with
// [sentilo] and no uplink.brokers: no MQTT client at all. Readings and zone
// counts reach the stand-in (speaking mutual TLS itself), the live state
// says MQTT is not configured rather than disconnected, the metrics carry
// no uplink-connected series, and the agent stops cleanly.
func TestRunSentiloOnly(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("RUNTIME_DIRECTORY", dir)
	const id, provider, token = "gw-solo", "solo", "s0lo-t0ken-0123456789"
	pki, err := devpki.Dev(filepath.Join(dir, "pki"), id)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(pki.CA.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(pki.Server.CertFile, pki.Server.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	envIDs := []string{sentilo.DefaultID(id, "air-1", "temperature"), sentilo.DefaultID(id, "air-1", "humidity")}
	zoneIDs := []string{sentilo.DefaultID(id, "north", "free"), sentilo.DefaultID(id, "north", "total")}
	var all []string
	all = append(all, envIDs...)
	for _, q := range config.ZoneQuantities {
		all = append(all, sentilo.DefaultID(id, "north", q))
	}
	for _, b := range []string{"bay-1", "bay-2"} {
		all = append(all, sentilo.DefaultID(id, b, "occupied"))
	}
	srv := sentilotest.Start(t, sentilotest.Options{Provider: provider, Token: token, Sensors: all,
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}})
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	keysFile := filepath.Join(dir, "operators.pem")
	if err := os.WriteFile(keysFile, remotetest.PublicPEM(pub), 0o644); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "sentilo.token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	// [uplink] holds only the TLS files, which [sentilo] inherits; and
	// remote.enabled, which cannot work without MQTT (said, not fatal).
	text := fmt.Sprintf(`[agent]
id = %q
state_dir = %q

[buffer]
commit_interval = "100ms"

[uplink]
ca_file = %q
cert_file = %q
key_file = %q

[remote]
enabled = true
trusted_keys = %q

[sentilo]
url = %q
provider = %q
token_file = %q
batch_wait = "100ms"

[[sensors]]
name = "air-1"
driver = "sht3x"
bus = "1"
interval = "200ms"

[[sensors]]
name = "bay-1"
driver = "gpio-presence"
pin = "GPIO5"

[[sensors]]
name = "bay-2"
driver = "gpio-presence"
pin = "GPIO6"

[[zones]]
name = "north"
bays = ["bay-1", "bay-2"]
`, id, filepath.Join(dir, "state"), pki.CA.CertFile, pki.Client.CertFile, pki.Client.KeyFile, keysFile, srv.URL, provider, tokenFile)
	path := filepath.Join(dir, "cityedge.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err == nil {
		err = cfg.CheckFiles(true)
	}
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MQTT() {
		t.Fatal("MQTT configured without uplink.brokers")
	}
	var logs testlog.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, Deps{Version: "test", Simulate: true, Logger: log, ClockSource: syncedClock{},
			BuildDate: time.Now().Add(-time.Hour)})
	}()

	stored := func() map[string]int {
		n := map[string]int{}
		for _, o := range srv.Observations() {
			n[o.Sensor]++
		}
		return n
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := stored()
		if n[envIDs[0]] >= 3 && n[envIDs[1]] >= 3 && n[zoneIDs[0]] >= 1 && n[zoneIDs[1]] >= 1 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Run returned early: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("Sentilo stored %v; want ≥3 of each environmental id and the zone counts\n%s", n, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	live, _ := Query(ctx, cfg, log)
	if live == nil {
		t.Fatalf("no live state over the control socket\n%s", logs.String())
	}
	if !live.Uplink.NotConfigured || live.Uplink.Connected {
		t.Errorf("live uplink = %+v; want not configured", live.Uplink)
	}
	if o, ok := live.Outputs[outputSentilo]; !ok || o.Acked == 0 {
		t.Errorf("live outputs = %+v; want Sentilo's acknowledgements", live.Outputs)
	}
	if _, ok := live.Outputs[outputMQTT]; ok {
		t.Errorf("live outputs = %+v; want no MQTT output", live.Outputs)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not stop")
	}
	out := logs.String()
	for _, want := range []string{mqttOff, "remote commands are not available"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, token) {
		t.Error("the token is in the log")
	}
	for _, o := range srv.Observations() {
		if o.Provider != provider {
			t.Fatalf("observation under provider %q", o.Provider)
		}
	}
}

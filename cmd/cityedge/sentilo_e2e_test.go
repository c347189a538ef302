package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cityedge/cityedge/buffer"
	"github.com/cityedge/cityedge/certs/devpki"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/diagnose"
	"github.com/cityedge/cityedge/scripts/nginxtest"
	"github.com/cityedge/cityedge/scripts/testbroker"
	"github.com/cityedge/cityedge/uplink/senml"
	"github.com/cityedge/cityedge/uplink/sentilo"
	"github.com/cityedge/cityedge/uplink/sentilo/sentilotest"
)

// markClockSynced does what an NTP client does (DECISIONS 1): it clears
// the kernel's STA_UNSYNC flag (adjtimex, root) so that an agent that holds
// readings while the clock looks unsynced delivers them; restored at the end.
func markClockSynced(t *testing.T) {
	t.Helper()
	var old unix.Timex
	if _, err := unix.Adjtimex(&old); err != nil {
		t.Fatalf("adjtimex (read): %v", err)
	}
	tx := unix.Timex{Modes: unix.ADJ_STATUS | unix.ADJ_MAXERROR | unix.ADJ_ESTERROR,
		Status: old.Status &^ unix.STA_UNSYNC, Maxerror: 100_000, Esterror: 10_000}
	if _, err := unix.Adjtimex(&tx); err != nil {
		t.Fatalf("adjtimex: clear STA_UNSYNC: %v", err)
	}
	t.Cleanup(func() {
		back := unix.Timex{Modes: unix.ADJ_STATUS | unix.ADJ_MAXERROR | unix.ADJ_ESTERROR,
			Status: old.Status, Maxerror: old.Maxerror, Esterror: old.Esterror}
		_, _ = unix.Adjtimex(&back)
	})
}

// leftFor opens the stopped agent's buffer with both outputs and returns,
// per output, the readings it has still to get.
func leftFor(t *testing.T, stateDir string) map[string][]buffer.Entry {
	t.Helper()
	q, err := buffer.Open(filepath.Join(stateDir, config.BufferFile), buffer.Options{Outputs: []string{"mqtt", "sentilo"}})
	if err != nil {
		t.Fatalf("reopen buffer: %v", err)
	}
	defer q.Close()
	out := map[string][]buffer.Entry{}
	for _, name := range []string{"mqtt", "sentilo"} {
		o, err := q.Output(name)
		if err != nil {
			t.Fatal(err)
		}
		var after uint64
		for {
			es, err := o.ReadAfter(after, 1000, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(es) == 0 {
				break
			}
			out[name] = append(out[name], es...)
			after = es[len(es)-1].Seq
		}
	}
	return out
}

// TestEndToEndSentilo runs the real binary with MQTT (real mosquitto) and
// Sentilo (the stand-in behind real nginx with mutual TLS) both on, on
// simulated bays and environmental sensors. During the run: a 429 with a
// reset, one bay unregistered and then registered, one sensor offline to
// the end, nginx SIGKILLed and restarted, a response lost after the store.
// Then every reading reached both outputs or is still buffered for the one
// that lacks it, none is missing, the accepted part of every 404 was never
// resent (Sentilo's duplicates number at most the readings the agent
// counted as resent after an unknown outcome), every Sentilo timestamp is
// the reading's own time in UTC, and the token is in no log line.
func TestEndToEndSentilo(t *testing.T) {
	needRoot(t)
	markClockSynced(t)
	b := testbroker.Start(t, testbroker.Options{})
	const token, provider = "e2e-t0ken-5eCr3t-0123456789", "cityedge-e2e"
	ids := map[string]string{} // "sensor/quantity" → id
	for _, q := range []string{"bay-1/occupied", "air-1/temperature", "air-1/humidity", "air-1/pressure",
		"air-2/temperature", "air-2/humidity", "air-2/pressure", "cityedge/dropped", "cityedge/corrupt"} {
		s, qu, _ := strings.Cut(q, "/")
		ids[q] = sentilo.DefaultID("gw-test", s, qu)
	}
	var registered []string
	for q, id := range ids {
		if q != "bay-1/occupied" {
			registered = append(registered, id)
		}
	}
	srv := sentilotest.Start(t, sentilotest.Options{Provider: provider, Token: token, RequireHTTPS: true, Sensors: registered})
	offline := ids["air-2/pressure"]
	srv.SetOffline(offline)
	px := nginxtest.Start(t, nginxtest.Options{PKI: b.PKI, Upstream: srv.Addr})

	s := newSetup(t, b, b.PKI.Client, "")
	tokenFile := filepath.Join(s.dir, "sentilo.token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	text = append(text, fmt.Sprintf(`
[sentilo]
url = %q
provider = %q
token_file = %q
batch_wait = "200ms"
`, px.URL, provider, tokenFile)...)
	if err := os.WriteFile(s.config, text, 0o644); err != nil {
		t.Fatal(err)
	}
	col := collect(t, b, "cityedge/test/gw-test")
	agent := startAgent(t, s.config, "--simulate")

	stored := func() int { return len(srv.Observations()) }
	waitFor(t, "first observations in Sentilo", 15*time.Second, func() bool { return stored() > 50 })
	// A 429 with a reset of one minute: Sentilo gets nothing before it;
	// MQTT goes on meanwhile.
	srv.Throttle(1, "1", false)
	waitFor(t, "the 429", 10*time.Second, func() bool { return srv.Answers()[429] > 0 })
	throttled, mqttAt := stored(), len(col.snapshot())
	time.Sleep(30 * time.Second)
	if n := stored(); n != throttled {
		t.Errorf("%d observations reached Sentilo before the reset", n-throttled)
	}
	if len(col.snapshot()) < mqttAt+500 {
		t.Errorf("MQTT got %d records while Sentilo was throttled: one output stalls the other", len(col.snapshot())-mqttAt)
	}
	srv.Register(ids["bay-1/occupied"]) // the city registers the bay meanwhile
	waitFor(t, "delivery after the reset", 60*time.Second, func() bool { return stored() > throttled+100 })
	// nginx SIGKILLed and restarted.
	px.Kill()
	time.Sleep(3 * time.Second)
	px.Restart()
	before := stored()
	waitFor(t, "delivery after nginx's restart", 30*time.Second, func() bool { return stored() > before+100 })
	// A response lost after the store: an unknown outcome, resent.
	srv.LoseResponses(1)
	before = stored()
	waitFor(t, "delivery after the lost response", 30*time.Second, func() bool { return stored() > before+100 })
	time.Sleep(2 * time.Second)
	code, _ := agent.stop(t)
	if code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0", code)
	}
	time.Sleep(500 * time.Millisecond)

	// MQTT: nothing missing, per the usual contract.
	left := leftFor(t, s.stateDir)
	leftMQTT := map[uint64]bool{}
	for _, e := range left["mqtt"] {
		leftMQTT[e.Seq] = true
	}
	recs := col.snapshot()
	distinct, repeats := checkDelivery(t, recs, leftMQTT)

	// Every reading taken: what MQTT got plus what it has still to get.
	type key struct{ id, ts, value string }
	expected := map[key]int{}
	maybe := map[key]int{} // in entries Sentilo has still to get (in whole or in part)
	leftSentilo := map[uint64]bool{}
	for _, e := range left["sentilo"] {
		leftSentilo[e.Seq] = true
	}
	add := func(seq uint64, sensor, quantity string, at time.Time, value string) {
		id, ok := ids[sensor+"/"+quantity]
		if !ok {
			return
		}
		k := key{id, sentilo.FormatTime(at), value}
		if leftSentilo[seq] {
			maybe[k]++
		} else {
			expected[k]++
		}
	}
	seen := map[string]bool{}
	for _, r := range recs {
		parts := strings.Split(r.name, "/")
		if len(parts) < 3 || parts[1] == "cityedge" {
			continue
		}
		if k := fmt.Sprint(r.name, r.seq); seen[k] {
			continue
		} else {
			seen[k] = true
		}
		v := sentilo.FormatNumber(r.v, false)
		if r.vb != nil {
			v = map[bool]string{true: "true", false: "false"}[*r.vb]
		}
		add(r.seq, parts[1], parts[2], time.UnixMilli(r.ms), v)
	}
	for _, e := range left["mqtt"] {
		rd, err := senml.DecodeReading(e.Data)
		if err != nil || rd.Sensor == "cityedge" {
			continue
		}
		for _, v := range rd.Values {
			val := sentilo.FormatNumber(v.Num, v.Float32)
			if v.IsBool {
				val = map[bool]string{true: "true", false: "false"}[v.Bool]
			}
			add(e.Seq, rd.Sensor, v.Quantity, rd.Time, val)
		}
	}
	got := map[key]int{}
	for _, o := range srv.Observations() {
		if !strings.HasSuffix(o.Timestamp, "+0000") {
			t.Errorf("observation %s timestamp %q is not UTC", o.Sensor, o.Timestamp)
		}
		if o.Sensor == ids["cityedge/dropped"] || o.Sensor == ids["cityedge/corrupt"] {
			continue
		}
		got[key{o.Sensor, o.Timestamp, o.Value}]++
	}
	missing, dups := 0, 0
	for k, n := range expected {
		if got[k] < n {
			missing += n - got[k]
			if missing < 10 {
				t.Errorf("reading %v missing in Sentilo (%d of %d stored) and not buffered for it", k, got[k], n)
			}
		}
	}
	for k, n := range got {
		want := expected[k]
		if n > want+maybe[k] {
			dups += n - want - maybe[k]
		}
		if want == 0 && maybe[k] == 0 {
			t.Errorf("Sentilo stored %v, which the gateway never measured", k)
		}
	}
	var resent float64
	if st := col.lastStatus(); st != nil {
		if outs, ok := st["outputs"].(map[string]any); ok {
			if se, ok := outs["sentilo"].(map[string]any); ok {
				resent, _ = se["resent"].(float64)
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d readings missing in Sentilo", missing)
	}
	if dups > int(resent) {
		t.Errorf("Sentilo stored %d duplicates, but the agent counted only %v resent after an unknown outcome", dups, resent)
	}
	if resent == 0 {
		t.Error("the lost response was not counted as resent")
	}
	offlineLeft := 0
	for k, n := range maybe {
		if k.id == offline {
			offlineLeft += n
		}
	}
	if offlineLeft == 0 {
		t.Error("the offline sensor's readings are not held in the buffer")
	}
	for _, o := range srv.Observations() {
		if o.Sensor == offline {
			t.Fatalf("the offline sensor's reading was stored: %+v", o)
		}
	}
	logs := agent.stderr.String()
	if strings.Contains(logs, token) {
		t.Error("the token appears in the agent's log")
	}
	for _, want := range []string{"429", "404.1"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log does not mention %s", want)
		}
	}
	t.Logf("MQTT: %d distinct readings (%d repeats); Sentilo: %d observations, %d expected values, %d still held (offline sensor %d), %d duplicates, %v resent; answers %v",
		distinct, repeats, len(srv.Observations()), len(expected), len(maybe), offlineLeft, dups, resent, srv.Answers())
}

// sentiloSetup is the e2e configuration with a [sentilo] table for url.
func sentiloSetup(t *testing.T, b *testbroker.Broker, url, provider, token string) *testSetup {
	t.Helper()
	s := newSetup(t, b, b.PKI.Client, "")
	tokenFile := filepath.Join(s.dir, "sentilo.token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(s.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "\n[sentilo]\nurl = %q\nprovider = %q\ntoken_file = %q\n", url, provider, tokenFile)
	return s
}

// TestDiagnoseSentilo: --diagnose checks TLS to the proxy, the token and
// the catalog, naming each id the city has not registered; a proxy that
// does not trust our CA is named as the side that refused. The token never
// shows.
func TestDiagnoseSentilo(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	const token, provider = "diag-t0ken-0123456789", "cityedge-diag"
	missing := sentilo.DefaultID("gw-test", "bay-1", "occupied")
	var registered []string
	for _, q := range []string{"air-1/temperature", "air-1/humidity", "air-1/pressure", "air-2/temperature",
		"air-2/humidity", "air-2/pressure", "cityedge/dropped", "cityedge/corrupt"} {
		s, qu, _ := strings.Cut(q, "/")
		registered = append(registered, sentilo.DefaultID("gw-test", s, qu))
	}
	srv := sentilotest.Start(t, sentilotest.Options{Provider: provider, Token: token, RequireHTTPS: true, Sensors: registered})
	px := nginxtest.Start(t, nginxtest.Options{PKI: b.PKI, Upstream: srv.Addr})
	s := sentiloSetup(t, b, px.URL, provider, token)
	r, code, out := runDiagnose(t, s.config, "--simulate")
	if c := verdictOf(r, "sentilo", "tls"); c.Verdict != diagnose.Pass {
		t.Errorf("tls: %+v", c)
	}
	if c := verdictOf(r, "sentilo", "catalog"); c.Verdict != diagnose.Warn || !strings.Contains(c.Detail, missing) {
		t.Errorf("catalog: %+v; want WARN naming %s", c, missing)
	}
	for _, c := range r.Checks {
		if c.Verdict == diagnose.Fail {
			t.Errorf("FAIL: %+v", c)
		}
	}
	if code != 0 || strings.Contains(out, token) {
		t.Errorf("exit %d; token shown: %v", code, strings.Contains(out, token))
	}

	// A proxy whose client CA is another one refuses our certificate (its
	// own certificate is one we trust, so only its side refuses).
	ca2, err := devpki.NewCA(t.TempDir(), "other")
	if err != nil {
		t.Fatal(err)
	}
	other := nginxtest.Start(t, nginxtest.Options{PKI: &devpki.Set{CA: ca2, Server: b.PKI.Server}, Upstream: srv.Addr})
	s2 := sentiloSetup(t, b, other.URL, provider, token)
	r, code, _ = runDiagnose(t, s2.config, "--simulate")
	if c := verdictOf(r, "sentilo", "tls"); c.Verdict != diagnose.Fail || !strings.Contains(c.Detail, "the proxy refused our client certificate") {
		t.Errorf("tls with a proxy that does not trust us: %+v", c)
	}
	if code != 1 {
		t.Errorf("exit %d, want 1 on a FAIL", code)
	}
}

// TestSentiloCatalogFlag: --sentilo-catalog prints, without network, the
// registration of every id with its type, data type, unit and component.
func TestSentiloCatalogFlag(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	s := sentiloSetup(t, b, "https://sentilo.invalid", "cityedge-cat", "cat-t0ken-0123456789")
	out, err := exec.Command(agentBinary(t), "--config", s.config, "--sentilo-catalog").Output()
	if err != nil {
		t.Fatalf("--sentilo-catalog: %v", err)
	}
	var body struct {
		Sensors []struct {
			Sensor, Type, DataType, Unit, Component, ComponentType string
		} `json:"sensors"`
	}
	if err := json.Unmarshal(out, &body); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	got := map[string]string{}
	for _, e := range body.Sensors {
		got[e.Sensor] = strings.Join([]string{e.Type, e.DataType, e.Unit, e.Component, e.ComponentType}, " ")
	}
	for id, want := range map[string]string{
		"gw-test-bay-1-occupied":    "occupied BOOLEAN  gw-test-bay-1 parking",
		"gw-test-air-1-temperature": "temperature NUMBER Cel gw-test-air-1 generic",
		"gw-test-air-2-pressure":    "pressure NUMBER Pa gw-test-air-2 generic",
	} {
		if got[id] != want {
			t.Errorf("%s: %q, want %q", id, got[id], want)
		}
	}
	if strings.Contains(string(out), "cat-t0ken") {
		t.Error("the token is in the catalog")
	}
}

package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/cityedge/cityedge/certs/devpki"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/remote"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/remote/remotetest"
	"github.com/cityedge/cityedge/scripts/testbroker"
	"github.com/cityedge/cityedge/scripts/testproc"
)

const remotePrefix = "cityedge/test/gw-test"

var (
	ctlOnce sync.Once
	ctlBin  string
	ctlErr  error
)

// ctlBinary builds the real cityedge-ctl once per test run.
func ctlBinary(t testing.TB) string {
	t.Helper()
	ctlOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cityedge-ctl-bin-")
		if err != nil {
			ctlErr = err
			return
		}
		ctlBin = filepath.Join(dir, "cityedge-ctl")
		cmd := exec.Command("go", "build", "-trimpath", "-o", ctlBin, "../cityedge-ctl")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			ctlErr = fmt.Errorf("go build cityedge-ctl: %v\n%s", err, out)
		}
	})
	if ctlErr != nil {
		t.Fatal(ctlErr)
	}
	return ctlBin
}

// remoteRig is a broker with a CRL, an operator (signing key and TLS
// client certificate) and an agent configuration with remote commands on.
type remoteRig struct {
	b        *testbroker.Broker
	pki      *devpki.Set
	crl      string
	s        *testSetup
	ops      ed25519.PrivateKey
	opsKey   string // PKCS#8 PEM, 0600, for cityedge-ctl --key
	opsTLS   *devpki.Issued
	col      *collector
	results  chan map[string]any
	metrics  string
	extra    string // the [remote]/[metrics] tables appended to the configuration
	baseText string
}

func newRemoteRig(t *testing.T, confirmWithin string) *remoteRig {
	t.Helper()
	dir := t.TempDir()
	pki, err := devpki.Dev(dir, "gw-test")
	if err != nil {
		t.Fatal(err)
	}
	crl, err := pki.CA.CRL("revoked") // none revoked yet
	if err != nil {
		t.Fatal(err)
	}
	b := testbroker.Start(t, testbroker.Options{PKI: pki, Extra: "crlfile " + crl})
	r := &remoteRig{b: b, pki: pki, crl: crl, results: make(chan map[string]any, 256)}
	r.s = newSetup(t, b, pki.Client, "")
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	r.ops = priv
	keys := filepath.Join(dir, "operators.pem")
	if err := os.WriteFile(keys, remotetest.PublicPEM(pub), 0o644); err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	r.opsKey = filepath.Join(dir, "ops.key")
	if err := os.WriteFile(r.opsKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if r.opsTLS, err = pki.CA.Issue("ops-console", devpki.Leaf{CN: "ops-console", Client: true}); err != nil {
		t.Fatal(err)
	}
	r.metrics = filepath.Join(dir, "prom", "cityedge.prom")
	if err := os.MkdirAll(filepath.Dir(r.metrics), 0o755); err != nil {
		t.Fatal(err)
	}
	r.extra = fmt.Sprintf("\n[remote]\nenabled = true\ntrusted_keys = %q\nconfirm_within = %q\n\n[metrics]\ntextfile = %q\ninterval = \"1s\"\n",
		keys, confirmWithin, r.metrics)
	base, err := os.ReadFile(r.s.config)
	if err != nil {
		t.Fatal(err)
	}
	r.baseText = string(base) + r.extra
	if err := os.WriteFile(r.s.config, []byte(r.baseText), 0o644); err != nil {
		t.Fatal(err)
	}
	// Readings and status into the collector; answers into results.
	r.col = &collector{}
	for _, topic := range []string{remotePrefix + "/readings", remotePrefix + "/status"} {
		ch := b.Subscribe(t, topic)
		go func() {
			for m := range ch {
				r.col.add(t, m.Topic, m.Payload)
			}
		}()
	}
	ch := b.Subscribe(t, remotePrefix+"/cmd/result")
	go func() {
		for m := range ch {
			var res map[string]any
			if err := json.Unmarshal(m.Payload, &res); err != nil {
				t.Errorf("answer is not JSON: %s", m.Payload)
				continue
			}
			r.results <- res
		}
	}()
	return r
}

// ctl runs cityedge-ctl against the agent and returns its exit code and the
// answer it printed.
func (r *remoteRig) ctl(t *testing.T, args ...string) (int, map[string]any, string) {
	t.Helper()
	full := append([]string{"--key", r.opsKey, "--broker", r.b.URL, "--ca", r.pki.CA.CertFile, "--cert", r.opsTLS.CertFile,
		"--key-file", r.opsTLS.KeyFile, "--timeout", "20s", remotePrefix}, args...)
	cmd := exec.Command(ctlBinary(t), full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	var res map[string]any
	_ = json.Unmarshal(stdout.Bytes(), &res)
	return code, res, stdout.String() + stderr.String()
}

// publish sends raw to <prefix>/cmd as the operator (no signing: forged
// and replayed commands).
func (r *remoteRig) publish(t *testing.T, raws ...string) {
	t.Helper()
	tc := testbroker.TLSConfig(t, r.pki.CA.CertFile, r.opsTLS.CertFile, r.opsTLS.KeyFile)
	opts := mqtt.NewClientOptions().AddBroker(r.b.URL).SetClientID("forger").SetTLSConfig(tc).
		SetConnectTimeout(5 * time.Second).SetAutoReconnect(false)
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	for _, raw := range raws {
		if tok := c.Publish(remotePrefix+"/cmd", 1, false, raw); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
}

// answer waits for the next answer with jti for which match holds.
func (r *remoteRig) answer(t *testing.T, jti string, d time.Duration, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case res := <-r.results:
			if res["jti"] == jti && match(res) {
				return res
			}
		case <-deadline:
			t.Fatalf("no answer with jti %s within %v", jti, d)
		}
	}
}

func (r *remoteRig) waitOnline(t *testing.T) {
	t.Helper()
	waitFor(t, "agent online with readings", 20*time.Second, func() bool {
		st := r.col.lastStatus()
		return st != nil && st["state"] == "online" && len(r.col.snapshot()) > 0
	})
}

// stateFiles lists agent.state_dir's files (but the buffer, which changes
// with every reading) with their contents.
func stateFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() || strings.HasSuffix(p, config.BufferFile) || strings.HasSuffix(p, ".sock") {
			return nil
		}
		b, _ := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[rel] = string(b)
		return nil
	})
	return out
}

// TestRemoteRejections: against a real mosquitto with client certificates
// and the real binary, every forged or replayed command is rejected,
// changes nothing, is logged with its reason and counted in status, and
// answers to rejections stay within the rate limit.
func TestRemoteRejections(t *testing.T) {
	r := newRemoteRig(t, "5m")
	agent := startAgent(t, r.s.config, "--simulate")
	r.waitOnline(t)

	// One genuine command, so that its jti can be replayed.
	code, res, out := r.ctl(t, "status")
	if code != 0 || res["ok"] != true {
		t.Fatalf("status: exit %d\n%s", code, out)
	}
	jti, _ := res["jti"].(string)
	before := stateFiles(t, r.s.stateDir)
	if _, ok := before[remote.ReplayFile]; !ok {
		t.Fatalf("no %s after an accepted command: %v", remote.ReplayFile, before)
	}

	intruder := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	forged := remotetest.Forgeries(r.ops, intruder, "gw-test", time.Now(), config.DefaultMaxAge)
	raws := []string{}
	for _, f := range forged {
		raws = append(raws, f.Token)
	}
	// The genuine command again (replayed), and the fixture of
	// internal/remote signed by a key this agent does not trust.
	// Ed25519 signs deterministically, but cityedge-ctl's iat is not known
	// here: the replay is the same jti signed afresh by the trusted key,
	// which the agent must refuse whatever the times.
	now := time.Now()
	raws = append(raws, remotetest.Sign(r.ops, remote.Payload{Agent: "gw-test", Cmd: remote.CmdStatus, JTI: jti,
		IAT: now.Unix(), EXP: now.Add(time.Minute).Unix()}))
	vec, err := os.ReadFile("internal/remote/testdata/vector.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ Token string }
	if err := json.Unmarshal(vec, &v); err != nil {
		t.Fatal(err)
	}
	raws = append(raws, v.Token)
	if len(raws) < 22 {
		t.Fatalf("only %d variants", len(raws))
	}
	r.publish(t, raws...)

	want := map[string]uint64{}
	for _, f := range forged {
		want[string(f.Reason)]++
	}
	want[string(remote.ReasonReplayed)]++
	want[string(remote.ReasonUnknownKey)]++ // the vector carries the kid of its own key
	total := uint64(len(raws))
	// Logged with the reason, each one.
	waitFor(t, "every rejection logged", 20*time.Second, func() bool {
		return uint64(strings.Count(agent.stderr.String(), "remote command rejected")) >= total
	})
	logs := agent.stderr.String()
	for reason, n := range want {
		if got := uint64(strings.Count(logs, "reason="+reason+" ")); got != n {
			t.Errorf("reason %s logged %d times, want %d", reason, got, n)
		}
	}
	if n := strings.Count(logs, "remote command accepted"); n != 1 {
		t.Errorf("%d commands accepted, want only the genuine one:\n%s", n, logs)
	}
	// Counted in status.
	code, res, out = r.ctl(t, "status")
	if code != 0 {
		t.Fatalf("status: exit %d\n%s", code, out)
	}
	st := res["result"].(map[string]any)
	rs := st["remote"].(map[string]any)
	if rs["accepted"] != float64(2) || rs["rejected"] != float64(total) {
		t.Errorf("status remote counters %v, want 2 accepted and %d rejected", rs, total)
	}
	by := rs["rejected_by_reason"].(map[string]any)
	for reason, n := range want {
		if by[reason] != float64(n) {
			t.Errorf("status counts %v for %s, want %d", by[reason], reason, n)
		}
	}
	// Answered within the rate limit: at least one, at most the burst.
	answered := 0
	drain := time.After(2 * time.Second)
loop:
	for {
		select {
		case a := <-r.results:
			if a["ok"] == false && a["reason"] != nil {
				answered++
			}
		case <-drain:
			break loop
		}
	}
	if answered < 1 || answered > 5 {
		t.Errorf("%d rejections answered, want 1 to 5 (burst of the rate limit)", answered)
	}
	// Nothing changed: the state directory holds the same files, but the
	// replay store, which gained the second status command's jti only.
	after := stateFiles(t, r.s.stateDir)
	for name, content := range after {
		if name == remote.ReplayFile {
			continue
		}
		if before[name] != content {
			t.Errorf("%s changed or appeared in the state directory", name)
		}
	}
	for _, name := range []string{config.RemoteFile, config.CertsDir} {
		if _, err := os.Stat(filepath.Join(r.s.stateDir, name)); err == nil {
			t.Errorf("%s exists after forged commands", name)
		}
	}
	if strings.Count(logs, "cityedge started") != 1 {
		t.Errorf("the agent restarted")
	}
}

// signCSR issues a client certificate for a CSR with the test CA.
func signCSR(t *testing.T, ca *devpki.CA, csrPEM string) (*x509.Certificate, []byte) {
	t.Helper()
	blk, _ := pem.Decode([]byte(csrPEM))
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		t.Fatalf("not a CSR: %q", csrPEM)
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil || csr.CheckSignature() != nil {
		t.Fatalf("CSR: %v", err)
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: csr.Subject.CommonName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, csr.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func result(t *testing.T, res map[string]any) map[string]any {
	t.Helper()
	m, ok := res["result"].(map[string]any)
	if !ok {
		t.Fatalf("answer without result: %v", res)
	}
	return m
}

// TestRemoteOperations runs every command end to end with cityedge-ctl
// against the real binary while readings flow: status, diagnose, a config
// with a syntax error (refused, nothing written), a good config (restart in
// place, same PID, READY again, confirmed), csr + install_cert (the new
// certificate is the only one the broker still accepts); no reading is lost.
func TestRemoteOperations(t *testing.T) {
	r := newRemoteRig(t, "30s")
	notify := listenNotify(t)
	cmd := exec.Command(agentBinary(t), "--config", r.s.config, "--simulate")
	cmd.Env = append(cmd.Environ(), "NOTIFY_SOCKET="+notify.path)
	agent := startAgentCmd(t, cmd)
	pid := cmd.Process.Pid
	r.waitOnline(t)

	// status: published now, and returned.
	code, res, out := r.ctl(t, "status")
	if code != 0 || res["ok"] != true || result(t, res)["agent"] != "gw-test" || result(t, res)["config"] != r.s.config ||
		result(t, res)["config_source"] != "local" {
		t.Fatalf("status: exit %d\n%s", code, out)
	}

	// diagnose: the running agent's live report, no bus access.
	code, res, out = r.ctl(t, "diagnose")
	if code != 0 || res["ok"] != true {
		t.Fatalf("diagnose: exit %d\n%s", code, out)
	}
	diag, _ := json.Marshal(result(t, res))
	if !strings.Contains(string(diag), "in-process") || !strings.Contains(string(diag), `"checks"`) ||
		strings.Contains(string(diag), "checking hardware and buffer directly") {
		t.Errorf("diagnose report is not the live one: %s", diag)
	}

	// config with a syntax error: refused, nothing written.
	bad := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(bad, []byte(strings.Replace(r.baseText, "[buffer]", "[buffer", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	before := stateFiles(t, r.s.stateDir)
	code, res, out = r.ctl(t, "config", bad)
	if code != 1 || res["ok"] != false || !strings.Contains(fmt.Sprint(res["error"]), "remote.toml:") {
		t.Fatalf("bad config: exit %d\n%s", code, out)
	}
	for _, f := range []string{config.RemoteFile, config.LastGoodFile, "remote-trial.json"} {
		if _, err := os.Stat(filepath.Join(r.s.stateDir, f)); err == nil {
			t.Errorf("%s written for a refused configuration", f)
		}
	}
	if after := stateFiles(t, r.s.stateDir); len(after) != len(before) {
		t.Errorf("state directory changed: %v → %v", keys(before), keys(after))
	}
	// Changing agent.id is refused too.
	other := filepath.Join(t.TempDir(), "other.toml")
	if err := os.WriteFile(other, []byte(strings.Replace(r.baseText, `id = "gw-test"`, `id = "gw-else"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, res, out = r.ctl(t, "config", other); code != 1 || !strings.Contains(fmt.Sprint(res["error"]), "agent.id") {
		t.Fatalf("config changing agent.id: exit %d\n%s", code, out)
	}

	// A good config (another batch size): written, restart in place,
	// confirmed under the new configuration.
	good := filepath.Join(t.TempDir(), "good.toml")
	if err := os.WriteFile(good, []byte(strings.Replace(r.baseText, "batch_max = 20", "batch_max = 10", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	code, res, out = r.ctl(t, "config", good)
	if code != 0 || res["ok"] != true || result(t, res)["restart"] != true {
		t.Fatalf("config: exit %d\n%s", code, out)
	}
	cfgJTI := res["jti"].(string)
	conf := r.answer(t, cfgJTI, 30*time.Second, func(a map[string]any) bool {
		m, _ := a["result"].(map[string]any)
		return m != nil && m["confirmed"] != nil
	})
	if conf["ok"] != true || result(t, conf)["confirmed"] != true {
		t.Fatalf("config not confirmed: %v", conf)
	}
	if cmd.Process.Pid != pid || cmd.ProcessState != nil {
		t.Fatal("the agent is not the same process")
	}
	logs := agent.stderr.String()
	if strings.Count(logs, "cityedge started") != 2 {
		t.Fatalf("want two starts in one process:\n%s", logs)
	}
	waitFor(t, "READY=1 twice and RELOADING=1", 5*time.Second, func() bool {
		return notify.count("READY=1") >= 2 && notify.count("RELOADING=1") == 1 && notify.count("STOPPING=1") == 0
	})
	code, res, out = r.ctl(t, "status")
	if code != 0 || result(t, res)["config"] != filepath.Join(r.s.stateDir, config.RemoteFile) ||
		result(t, res)["config_source"] != "remote" {
		t.Fatalf("status after config: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(r.s.stateDir, "remote-trial.json")); err == nil {
		t.Error("trial record left after confirmation")
	}

	// csr + install_cert while readings flow.
	oldSerial := fmt.Sprintf("%X", r.pki.Client.Cert.SerialNumber)
	code, res, out = r.ctl(t, "csr")
	if code != 0 || res["ok"] != true {
		t.Fatalf("csr: exit %d\n%s", code, out)
	}
	csr := result(t, res)["csr"].(string)
	if strings.Contains(out, "PRIVATE KEY") {
		t.Fatal("a private key left the gateway")
	}
	// A certificate for another key is refused; the live one stays.
	wrong := filepath.Join(t.TempDir(), "wrong.pem")
	wrongPEM, _ := os.ReadFile(r.opsTLS.CertFile)
	if err := os.WriteFile(wrong, wrongPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, out = r.ctl(t, "install-cert", wrong); code != 1 {
		t.Fatalf("install-cert of a foreign certificate: exit %d\n%s", code, out)
	}
	newCert, newPEM := signCSR(t, r.pki.CA, csr)
	certFile := filepath.Join(t.TempDir(), "new.pem")
	if err := os.WriteFile(certFile, newPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	code, res, out = r.ctl(t, "install-cert", certFile)
	newSerial := fmt.Sprintf("%X", newCert.SerialNumber)
	if code != 0 || result(t, res)["serial"] != newSerial {
		t.Fatalf("install-cert: exit %d\n%s", code, out)
	}
	// The broker now refuses the old certificate (revoked); the agent
	// comes back with the new one and readings keep flowing.
	if _, err := r.pki.CA.CRL("revoked", r.pki.Client.Cert); err != nil {
		t.Fatal(err)
	}
	r.b.Restart()
	mark := len(r.col.snapshot())
	waitFor(t, "readings through the new certificate", 30*time.Second, func() bool {
		st := r.col.lastStatus()
		c, _ := st["certs"].(map[string]any)
		return st["state"] == "online" && c != nil && c["client_serial"] == newSerial && len(r.col.snapshot()) > mark+20
	})
	if oldSerial == newSerial {
		t.Fatal("same serial")
	}
	if err := connectWith(t, r, r.pki.Client); err == nil {
		t.Error("the broker still accepts the old certificate: the test proves nothing")
	}
	if !strings.Contains(r.b.Log(), "u'gw-test'") {
		t.Errorf("broker log does not show gw-test connected:\n%s", r.b.Log())
	}

	// Stop; every reading was delivered or is still buffered.
	time.Sleep(time.Second)
	if code, _ := agent.stop(t); code != 0 {
		t.Errorf("exit code %d", code)
	}
	time.Sleep(500 * time.Millisecond)
	distinct, repeats := checkDelivery(t, r.col.snapshot(), remaining(t, r.s.stateDir))
	t.Logf("delivered %d distinct readings (%d repeats) across a restart in place and a certificate renewal", distinct, repeats)
}

// TestRemoteConfigRollback: a config that breaks the uplink (a port where no
// broker listens) is rolled back within remote.confirm_within; the rollback
// is in the next answer and in status; no reading is lost.
func TestRemoteConfigRollback(t *testing.T) {
	r := newRemoteRig(t, "10s")
	agent := startAgent(t, r.s.config, "--simulate")
	pid := agent.cmd.Process.Pid
	r.waitOnline(t)

	port, err := testproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(t.TempDir(), "broken.toml")
	text := strings.Replace(r.baseText, r.b.URL, fmt.Sprintf("mqtts://127.0.0.1:%d", port), 1)
	if err := os.WriteFile(broken, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	code, res, out := r.ctl(t, "config", broken)
	if code != 0 || res["ok"] != true {
		t.Fatalf("config: exit %d\n%s", code, out)
	}
	jti := res["jti"].(string)
	sent := time.Now()
	rb := r.answer(t, jti, 60*time.Second, func(a map[string]any) bool { return a["ok"] == false })
	took := time.Since(sent)
	if rb["ok"] != false || !strings.Contains(fmt.Sprint(rb["error"]), "rolled back") || result(t, rb)["rolled_back"] != true {
		t.Fatalf("rollback answer %v", rb)
	}
	// confirm_within is 10 s; the restarts and the reconnect add seconds.
	if took > 40*time.Second {
		t.Errorf("rolled back after %v, want within confirm_within (10 s) plus restarts", took)
	}
	if agent.cmd.Process.Pid != pid || strings.Count(agent.stderr.String(), "cityedge started") != 3 {
		t.Fatalf("want three starts in one process:\n%s", agent.stderr.String())
	}
	code, res, out = r.ctl(t, "status")
	st := result(t, res)
	rs := st["remote"].(map[string]any)
	rbs, _ := rs["rollback"].(map[string]any)
	if code != 0 || st["config_source"] != "local" || rbs == nil || rbs["jti"] != jti {
		t.Fatalf("status after rollback: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(r.s.stateDir, config.RemoteFile+".failed")); err != nil {
		t.Errorf("the failed configuration is not kept: %v", err)
	}
	time.Sleep(2 * time.Second)
	if code, _ := agent.stop(t); code != 0 {
		t.Errorf("exit code %d", code)
	}
	time.Sleep(500 * time.Millisecond)
	distinct, repeats := checkDelivery(t, r.col.snapshot(), remaining(t, r.s.stateDir))
	t.Logf("rolled back after %v; delivered %d distinct readings (%d repeats)", took.Round(time.Millisecond), distinct, repeats)
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// connectWith tries an MQTT connection with a client certificate.
func connectWith(t *testing.T, r *remoteRig, c *devpki.Issued) error {
	tc := testbroker.TLSConfig(t, r.pki.CA.CertFile, c.CertFile, c.KeyFile)
	opts := mqtt.NewClientOptions().AddBroker(r.b.URL).SetClientID("old-cert").SetTLSConfig(tc).
		SetConnectTimeout(5 * time.Second).SetAutoReconnect(false)
	cli := mqtt.NewClient(opts)
	tok := cli.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return fmt.Errorf("timeout")
	}
	if tok.Error() == nil {
		cli.Disconnect(100)
	}
	return tok.Error()
}

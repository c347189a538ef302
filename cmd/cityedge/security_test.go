package main

// Security cases of the uplink, each proved with the real binary on simulated
// sensors against a real mosquitto that requires client certificates: the
// agent refuses to talk to a broker it cannot verify, the broker refuses a
// gateway it cannot verify, and in every failure nothing is sent, the
// readings stay buffered, the log names the cause, and delivery resumes
// without loss once the cause is fixed. Then certificate rotation while
// readings flow, and the hygiene of the logs of a whole run.

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cityedge/cityedge/certs/devpki"
	"github.com/cityedge/cityedge/scripts/testbroker"
)

const secPrefix = "cityedge/test/gw-test" // topic prefix of newSetup

// secSessionRE matches mosquitto's line for an MQTT session of the agent
// (client id gw-test; --diagnose connects as gw-test-diagnose).
var secSessionRE = regexp.MustCompile(`New client connected from \S+ as gw-test \(`)

// agentSessions counts the MQTT sessions the broker accepted from the agent.
func agentSessions(b *testbroker.Broker) int {
	return len(secSessionRE.FindAllStringIndex(b.Log(), -1))
}

// logLine returns the first line of log that holds every one of parts.
func logLine(log string, parts ...string) (string, bool) {
	for _, line := range strings.Split(log, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return line, true
		}
	}
	return "", false
}

func logHas(log string, parts ...string) bool {
	_, ok := logLine(log, parts...)
	return ok
}

// secInstall replaces dst by the content of src the way certificate tools
// do: a complete temporary file in the same directory, renamed over dst.
func secInstall(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	secWriteAtomic(t, dst, data, mode)
}

func secWriteAtomic(t *testing.T, dst string, data []byte, mode os.FileMode) {
	t.Helper()
	f, err := os.CreateTemp(filepath.Dir(dst), ".install-*")
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), dst)
	}
	if err != nil {
		t.Fatalf("install %s: %v", dst, err)
	}
}

// secCopyClient copies a client certificate and key into dir, where the
// agent's configuration points, so that the test can replace them.
func secCopyClient(t *testing.T, dir string, iss *devpki.Issued) *devpki.Issued {
	t.Helper()
	c := &devpki.Issued{Cert: iss.Cert, CertFile: filepath.Join(dir, "client.pem"), KeyFile: filepath.Join(dir, "client.key")}
	secInstall(t, iss.CertFile, c.CertFile, 0o644)
	secInstall(t, iss.KeyFile, c.KeyFile, 0o600)
	return c
}

// secRotate installs the certificate and key of next at the paths of live,
// key first, each by atomic rename.
func secRotate(t *testing.T, next, live *devpki.Issued) {
	t.Helper()
	secInstall(t, next.KeyFile, live.KeyFile, 0o600)
	secInstall(t, next.CertFile, live.CertFile, 0o644)
}

// secEditConfig replaces old by new in the agent's configuration file.
func secEditConfig(t *testing.T, s *testSetup, old, new string) {
	t.Helper()
	data, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), old) {
		t.Fatalf("configuration has no %q:\n%s", old, data)
	}
	if err := os.WriteFile(s.config, []byte(strings.Replace(string(data), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// hup sends SIGHUP once the agent has said it started: before its handler is
// installed, SIGHUP's default action would end the process.
func hup(t *testing.T, a *agentProc) {
	t.Helper()
	waitFor(t, "the agent to start", 10*time.Second, func() bool { return strings.Contains(a.stderr.String(), "cityedge started") })
	if err := a.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
}

// deliveredAll reports whether every seq in want reached the collector.
func deliveredAll(col *collector, want map[uint64]bool) bool {
	got := map[uint64]bool{}
	for _, r := range col.snapshot() {
		got[r.seq] = true
	}
	for s := range want {
		if !got[s] {
			return false
		}
	}
	return true
}

// repeatedReadings counts the readings (seqs) that arrived more than once.
func repeatedReadings(recs []received) int {
	type key struct {
		name string
		seq  uint64
	}
	seen := map[key]bool{}
	rep := map[uint64]bool{}
	for _, r := range recs {
		k := key{r.name, r.seq}
		if seen[k] {
			rep[r.seq] = true
		}
		seen[k] = true
	}
	return len(rep)
}

// scene is a failing arrangement and how to fix it.
type scene struct {
	s   *testSetup
	col *collector // nil when nothing can subscribe to the failing broker
	// hotFix repairs the agent's TLS files while it runs; the test then sends
	// SIGHUP and expects a reconnect without restart.
	hotFix func(t *testing.T)
	// restartFix repairs what takes effect only at a (re)start — the broker's
	// configuration, the agent's uplink settings — while the agent is stopped,
	// and returns the broker to deliver to.
	restartFix func(t *testing.T) *testbroker.Broker
	// brokerSays is text the broker's log must hold when it refused the
	// agent; empty when the agent refused the broker.
	brokerSays string
}

type refusalCase struct {
	name string
	// cause holds texts that one "connection failed" line of the agent's log
	// must carry: the cause, named.
	cause   []string
	arrange func(t *testing.T) *scene
}

// refused runs the agent in the failing arrangement until its log names the
// cause, stops it, and proves that no MQTT session was established, nothing
// reached the subscriber and the readings stayed buffered. It returns the
// buffered seqs.
func refused(t *testing.T, sc *scene, cause []string) map[uint64]bool {
	t.Helper()
	agent := startAgent(t, sc.s.config, "--simulate")
	want := append([]string{"uplink: connection failed"}, cause...)
	waitFor(t, fmt.Sprintf("the agent's log to name the cause %q", cause), 15*time.Second, func() bool {
		return logHas(agent.stderr.String(), want...)
	})
	time.Sleep(time.Second) // more readings and attempts, all of which must fail
	if code, _ := agent.stop(t); code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0", code)
	}
	log := agent.stderr.String()
	line, _ := logLine(log, want...)
	t.Logf("the agent logged: %s", line)
	if strings.Contains(log, "uplink: connected") {
		t.Errorf("the agent says it connected:\n%s", log)
	}
	b := sc.s.broker
	if n := agentSessions(b); n != 0 {
		t.Errorf("the broker accepted %d sessions from the agent:\n%s", n, b.Log())
	}
	if sc.brokerSays != "" && !strings.Contains(b.Log(), sc.brokerSays) {
		t.Errorf("the broker's log does not say %q:\n%s", sc.brokerSays, b.Log())
	}
	if sc.col != nil {
		if n := len(sc.col.snapshot()); n != 0 {
			t.Errorf("the subscriber received %d records", n)
		}
	}
	left := remaining(t, sc.s.stateDir)
	if len(left) == 0 {
		t.Fatal("no readings stayed buffered")
	}
	return left
}

// proveRefusal runs one case: the failure, then the fix, then delivery of
// everything that was buffered and of what comes after, without gaps.
func proveRefusal(t *testing.T, c refusalCase) {
	sc := c.arrange(t)
	left := refused(t, sc, c.cause)
	t.Logf("%d readings stayed buffered while refused", len(left))

	b, col := sc.s.broker, sc.col
	var agent *agentProc
	if sc.hotFix != nil {
		// Still failing after a restart; fixed under the running agent.
		agent = startAgent(t, sc.s.config, "--simulate")
		waitFor(t, "the restarted agent to fail again", 15*time.Second, func() bool {
			return logHas(agent.stderr.String(), append([]string{"uplink: connection failed"}, c.cause...)...)
		})
		sc.hotFix(t)
		hup(t, agent)
	} else {
		nb := sc.restartFix(t)
		if nb != b || col == nil {
			col = collect(t, nb, secPrefix)
		}
		b = nb
		agent = startAgent(t, sc.s.config, "--simulate")
	}
	waitFor(t, "the buffered readings to be delivered after the fix", 20*time.Second, func() bool {
		return deliveredAll(col, left)
	})
	n := len(col.snapshot())
	waitFor(t, "live readings after the backlog", 10*time.Second, func() bool { return len(col.snapshot()) > n+20 })
	if code, _ := agent.stop(t); code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0", code)
	}
	time.Sleep(300 * time.Millisecond) // the last messages reach the subscriber
	distinct, repeats := checkDelivery(t, col.snapshot(), remaining(t, sc.s.stateDir))
	t.Logf("after the fix: %d distinct readings delivered (%d repeated records), %d sessions", distinct, repeats, agentSessions(b))
	if agentSessions(b) == 0 {
		t.Errorf("the broker's log shows no session of the agent after the fix:\n%s", b.Log())
	}
	if sc.hotFix != nil && !strings.Contains(agent.stderr.String(), "client certificate changed; reconnecting with it") {
		t.Errorf("the agent did not report the new certificate:\n%s", agent.stderr.String())
	}
}

// TestSecurityRefusal: one subtest per way mutual TLS can go wrong (the
// untrusted broker CA is TestForeignBrokerCA; a broker limited to TLS 1.1
// is TestSecurityLegacyTLSBroker).
func TestSecurityRefusal(t *testing.T) {
	cases := []refusalCase{
		{
			// The broker's certificate is good but for another name than the
			// one the agent dials; uplink.server_name fixes it.
			name:  "wrong host name",
			cause: []string{"x509: certificate is valid for broker.city.example, not localhost"},
			arrange: func(t *testing.T) *scene {
				pki, err := devpki.Dev(t.TempDir(), "gw-test")
				if err != nil {
					t.Fatal(err)
				}
				// 127.0.0.1 is in it so the subscriber can watch; the agent
				// dials "localhost".
				srv, err := pki.CA.Issue("server-city", devpki.Leaf{CN: "broker.city.example", DNS: []string{"broker.city.example"},
					IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
				if err != nil {
					t.Fatal(err)
				}
				b := testbroker.Start(t, testbroker.Options{PKI: &devpki.Set{CA: pki.CA, Server: srv, Client: pki.Client}})
				s := newSetup(t, b, pki.Client, "")
				secEditConfig(t, s, b.URL, fmt.Sprintf("mqtts://localhost:%d", b.Port))
				return &scene{s: s, col: collect(t, b, secPrefix), restartFix: func(t *testing.T) *testbroker.Broker {
					secEditConfig(t, s, "[uplink]\n", "[uplink]\nserver_name = \"broker.city.example\"\n")
					return b
				}}
			},
		},
		{
			// The agent starts with it (it samples and buffers) but never
			// offers it: no connection attempt is made at all.
			name:  "expired client certificate",
			cause: []string{"TLS configuration unusable", "expired on"},
			arrange: func(t *testing.T) *scene {
				now := time.Now()
				return clientCertScene(t, devpki.Leaf{CN: "gw-test", Client: true,
					NotBefore: now.Add(-30 * time.Minute), NotAfter: now.Add(-10 * time.Minute)})
			},
		},
		{
			name:  "not yet valid client certificate",
			cause: []string{"TLS configuration unusable", "is valid only from"},
			arrange: func(t *testing.T) *scene {
				now := time.Now()
				return clientCertScene(t, devpki.Leaf{CN: "gw-test", Client: true,
					NotBefore: now.Add(24 * time.Hour), NotAfter: now.AddDate(1, 0, 0)})
			},
		},
		{
			// The agent's bundle trusts both CAs (so its own checks pass); the
			// broker trusts only the city's CA and refuses the certificate.
			name:  "client certificate of a foreign CA",
			cause: []string{"the broker rejected this gateway's certificate (issuer CN=", "remote error: tls: unknown certificate authority"},
			arrange: func(t *testing.T) *scene {
				b := testbroker.Start(t, testbroker.Options{})
				foreign, err := devpki.NewCA(t.TempDir(), "foreign-ca")
				if err != nil {
					t.Fatal(err)
				}
				alien, err := foreign.Issue("client", devpki.Leaf{CN: "gw-test", Client: true})
				if err != nil {
					t.Fatal(err)
				}
				dir := t.TempDir()
				live := secCopyClient(t, dir, alien)
				s := newSetup(t, b, live, "")
				bundle := filepath.Join(dir, "ca-bundle.pem")
				var pems []byte
				for _, f := range []string{b.PKI.CA.CertFile, foreign.CertFile} {
					p, err := os.ReadFile(f)
					if err != nil {
						t.Fatal(err)
					}
					pems = append(pems, p...)
				}
				if err := os.WriteFile(bundle, pems, 0o644); err != nil {
					t.Fatal(err)
				}
				secEditConfig(t, s, fmt.Sprintf("ca_file = %q", b.PKI.CA.CertFile), fmt.Sprintf("ca_file = %q", bundle))
				return &scene{s: s, col: collect(t, b, secPrefix), brokerSays: "certificate verify failed",
					hotFix: func(t *testing.T) { secRotate(t, b.PKI.Client, live) }}
			},
		},
		{
			// The URL says mqtts:// but the port speaks plain MQTT: the
			// handshake fails and no byte of MQTT is ever sent.
			name:  "plaintext listener behind mqtts",
			cause: []string{"TLS handshake", "not a TLS listener"},
			arrange: func(t *testing.T) *scene {
				b := testbroker.Start(t, testbroker.Options{Plaintext: true})
				s := newSetup(t, b, b.PKI.Client, "")
				return &scene{s: s, restartFix: func(t *testing.T) *testbroker.Broker {
					b.Stop()
					return testbroker.Start(t, testbroker.Options{PKI: b.PKI, Port: b.Port})
				}}
			},
		},
		{
			name:  "revoked client certificate",
			cause: []string{"the broker rejected this gateway's certificate (issuer CN=", "remote error: tls: revoked certificate"},
			arrange: func(t *testing.T) *scene {
				pki, err := devpki.Dev(t.TempDir(), "gw-test")
				if err != nil {
					t.Fatal(err)
				}
				crl, err := pki.CA.CRL("revoked", pki.Client.Cert)
				if err != nil {
					t.Fatal(err)
				}
				b := testbroker.Start(t, testbroker.Options{PKI: pki, Extra: "crlfile " + crl})
				live := secCopyClient(t, t.TempDir(), pki.Client)
				s := newSetup(t, b, live, "")
				return &scene{s: s, col: collect(t, b, secPrefix), brokerSays: "certificate verify failed",
					hotFix: func(t *testing.T) {
						renewed, err := pki.CA.Issue("renewed", devpki.Leaf{CN: "gw-test", Client: true})
						if err != nil {
							t.Fatal(err)
						}
						secRotate(t, renewed, live)
					}}
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			proveRefusal(t, c)
		})
	}
}

// clientCertScene: a good broker, and an agent whose client certificate
// (from the right CA) has the dates of leaf; fixed by installing a valid one.
func clientCertScene(t *testing.T, leaf devpki.Leaf) *scene {
	t.Helper()
	b := testbroker.Start(t, testbroker.Options{})
	bad, err := b.PKI.CA.Issue("client-dated", leaf)
	if err != nil {
		t.Fatal(err)
	}
	live := secCopyClient(t, t.TempDir(), bad)
	s := newSetup(t, b, live, "")
	return &scene{s: s, col: collect(t, b, secPrefix), hotFix: func(t *testing.T) { secRotate(t, b.PKI.Client, live) }}
}

// legacyOpenSSL limits OpenSSL (and so mosquitto) to TLS 1.1 at most, at the
// security level that still allows its SHA-1 handshake signatures. mosquitto
// has no "at most" setting: its tls_version names the lowest version.
const legacyOpenSSL = `openssl_conf = default_conf
[default_conf]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
MaxProtocol = TLSv1.1
CipherString = DEFAULT@SECLEVEL=0
`

// TestSecurityLegacyTLSBroker: a broker that speaks only TLS 1.1 (proved by
// a handshake at that version) gets nothing from the agent, whose floor is
// TLS 1.2. A broker upgraded to a current configuration gets everything.
//
// Not parallel: the OpenSSL limit reaches mosquitto through OPENSSL_CONF in
// the environment, which a parallel test would inherit.
func TestSecurityLegacyTLSBroker(t *testing.T) {
	proveRefusal(t, refusalCase{
		name:  "broker limited to TLS 1.1",
		cause: []string{"TLS handshake", "remote error: tls: protocol version not supported"},
		arrange: func(t *testing.T) *scene {
			conf := filepath.Join(t.TempDir(), "openssl-legacy.cnf")
			if err := os.WriteFile(conf, []byte(legacyOpenSSL), 0o644); err != nil {
				t.Fatal(err)
			}
			orig, had := os.LookupEnv("OPENSSL_CONF")
			t.Setenv("OPENSSL_CONF", conf)
			// tls_version tlsv1.1 lifts mosquitto's own default floor of 1.2.
			b := testbroker.Start(t, testbroker.Options{Extra: "tls_version tlsv1.1"})
			if had {
				os.Setenv("OPENSSL_CONF", orig)
			} else {
				os.Unsetenv("OPENSSL_CONF")
			}

			// The broker really speaks TLS 1.1 and nothing newer.
			tc := b.ClientTLS(t)
			tc.MinVersion, tc.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
			conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", b.Port), tc)
			if err != nil {
				t.Fatalf("this mosquitto/OpenSSL does not accept TLS 1.1 with %s, so the case cannot be shown: %v\n%s", conf, err, b.Log())
			}
			if v := conn.ConnectionState().Version; v != tls.VersionTLS11 {
				t.Fatalf("legacy handshake negotiated %s, want TLS 1.1", tls.VersionName(v))
			}
			conn.Close()

			s := newSetup(t, b, b.PKI.Client, "")
			return &scene{s: s, restartFix: func(t *testing.T) *testbroker.Broker {
				b.Stop()
				return testbroker.Start(t, testbroker.Options{PKI: b.PKI, Port: b.Port})
			}}
		},
	})
}

// TestSecurityRotation replaces the client certificate and key by atomic
// rename while readings flow, once announced with SIGHUP and once left to
// the file watch. Nothing is lost (checkDelivery), repeats stay within the
// at-least-once window (the batches in flight when a session ends: window ×
// batch_max readings per session end), and the broker sees a new session of
// the agent. That session presents the new certificate: after the broker
// restarts with the old certificate revoked, the agent still connects and
// delivers.
func TestSecurityRotation(t *testing.T) {
	const window, batchMax = 16, 20 // the agent's default window; newSetup's batch_max
	for _, viaHUP := range []bool{true, false} {
		name := map[bool]string{true: "SIGHUP", false: "file watch"}[viaHUP]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := testbroker.Start(t, testbroker.Options{})
			live := secCopyClient(t, t.TempDir(), b.PKI.Client)
			old := b.PKI.Client.Cert
			s := newSetup(t, b, live, "")
			col := collect(t, b, secPrefix)
			agent := startAgent(t, s.config, "--simulate")
			waitFor(t, "first readings", 10*time.Second, func() bool { return len(col.snapshot()) > 0 })
			if n := agentSessions(b); n != 1 {
				t.Fatalf("%d sessions before rotation, want 1", n)
			}

			next, err := b.PKI.CA.Issue("client-next", devpki.Leaf{CN: "gw-test", Client: true, NotAfter: time.Now().AddDate(2, 0, 0)})
			if err != nil {
				t.Fatal(err)
			}
			secRotate(t, next, live)
			rotated := len(col.snapshot())
			wait := 5 * time.Second
			if viaHUP {
				hup(t, agent)
			} else {
				wait = 25 * time.Second // the watch polls every 10 s and waits for the files to settle
			}
			waitFor(t, "a new session after the rotation", wait, func() bool { return agentSessions(b) == 2 })
			if !viaHUP {
				if serial := fmt.Sprintf("serial=%X", next.Cert.SerialNumber); !logHas(agent.stderr.String(), "certificate set reloaded", serial) {
					t.Errorf("the agent's log does not name the new certificate (%s):\n%s", serial, agent.stderr.String())
				}
			}
			waitFor(t, "readings after the rotation", 10*time.Second, func() bool { return len(col.snapshot()) > rotated+50 })

			// Revoke the old certificate at the broker: only a gateway that
			// presents the new one gets back in.
			crl, err := b.PKI.CA.CRL("old", old)
			if err != nil {
				t.Fatal(err)
			}
			conf := filepath.Join(b.Dir, "mosquitto.conf")
			text, err := os.ReadFile(conf)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(conf, append(text, []byte("crlfile "+crl+"\n")...), 0o600); err != nil {
				t.Fatal(err)
			}
			b.Restart()
			revoked := len(col.snapshot())
			waitFor(t, "a session with the old certificate revoked", 10*time.Second, func() bool { return agentSessions(b) == 3 })
			waitFor(t, "readings after the revocation", 10*time.Second, func() bool { return len(col.snapshot()) > revoked+50 })

			if code, _ := agent.stop(t); code != 0 {
				t.Errorf("exit code after SIGTERM = %d, want 0", code)
			}
			time.Sleep(300 * time.Millisecond)
			recs := col.snapshot()
			distinct, _ := checkDelivery(t, recs, remaining(t, s.stateDir))
			repeated := repeatedReadings(recs)
			bound := (agentSessions(b) - 1) * window * batchMax
			t.Logf("%s: %d distinct readings, %d delivered more than once (bound %d), %d sessions", name, distinct, repeated, bound, agentSessions(b))
			if repeated > bound {
				t.Errorf("%d readings repeated, more than the %d that can be in flight across %d session ends", repeated, bound, agentSessions(b)-1)
			}
			if strings.Contains(b.Log(), "certificate revoked") {
				t.Errorf("the broker refused a revoked certificate, so the old one was still presented:\n%s", b.Log())
			}
		})
	}
}

// secretForms returns what would betray the PEM file at path if it showed up
// in a log: its PEM text, every base64 body line, every 40-character piece of
// the body and of the DER in base64 (both alphabets) and hex, and for an EC
// key the private scalar in decimal, hex and base64.
func secretForms(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(data)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	forms := map[string]string{"PEM text": strings.TrimSpace(string(data))}
	var body []string
	for _, line := range strings.Split(string(data), "\n") {
		if line != "" && !strings.HasPrefix(line, "-----") {
			forms["body line "+line] = line
			body = append(body, line)
		}
	}
	window := func(what, s string) {
		for i := 0; i+40 <= len(s); i++ {
			forms[fmt.Sprintf("%s [%d:%d]", what, i, i+40)] = s[i : i+40]
		}
	}
	window("base64 body", strings.Join(body, ""))
	window("base64url DER", base64.RawURLEncoding.EncodeToString(blk.Bytes))
	window("hex DER", hex.EncodeToString(blk.Bytes))
	window("HEX DER", strings.ToUpper(hex.EncodeToString(blk.Bytes)))
	if blk.Type == "PRIVATE KEY" {
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if ec, ok := k.(*ecdsa.PrivateKey); ok {
			d, err := ec.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			forms["scalar decimal"] = ec.D.String()
			window("scalar hex", hex.EncodeToString(d))
			window("scalar base64", base64.StdEncoding.EncodeToString(d))
		}
	}
	return forms
}

// findSecret returns the first form of forms found in text.
func findSecret(text string, forms map[string]string) (string, bool) {
	for form, needle := range forms {
		if strings.Contains(text, needle) {
			return form, true
		}
	}
	return "", false
}

// TestSecurityLogHygiene runs the agent at debug level through start,
// delivery, a certificate rotation, rejected certificate sets of several
// kinds, a broker outage and shutdown, plus --diagnose and --enroll, and
// proves that no private key, whole certificate or PEM block appears in any
// of the output.
func TestSecurityLogHygiene(t *testing.T) {
	t.Parallel()
	b := testbroker.Start(t, testbroker.Options{})
	dir := t.TempDir()
	live := secCopyClient(t, dir, b.PKI.Client)
	s := newSetup(t, b, live, "")
	secEditConfig(t, s, "[agent]\n", "[agent]\nlog_level = \"debug\"\n")
	col := collect(t, b, secPrefix)

	var out strings.Builder
	runOnce := func(args ...string) {
		cmd := exec.Command(agentBinary(t), append([]string{"--config", s.config}, args...)...)
		b, _ := cmd.CombinedOutput()
		fmt.Fprintf(&out, "\n=== cityedge %s (exit %d)\n%s", strings.Join(args, " "), cmd.ProcessState.ExitCode(), b)
	}
	runOnce("--diagnose", "--simulate")

	agent := startAgent(t, s.config, "--simulate")
	waitFor(t, "first readings", 10*time.Second, func() bool { return len(col.snapshot()) > 0 })

	next, err := b.PKI.CA.Issue("client-next", devpki.Leaf{CN: "gw-test", Client: true})
	if err != nil {
		t.Fatal(err)
	}
	other, err := b.PKI.CA.Issue("client-other", devpki.Leaf{CN: "gw-test", Client: true})
	if err != nil {
		t.Fatal(err)
	}
	expired, err := b.PKI.CA.Issue("client-expired", devpki.Leaf{CN: "gw-test", Client: true,
		NotBefore: time.Now().Add(-30 * time.Minute), NotAfter: time.Now().Add(-10 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	secRotate(t, next, live)
	hup(t, agent)
	waitFor(t, "a session with the rotated certificate", 5*time.Second, func() bool { return agentSessions(b) == 2 })

	read := func(p string) []byte {
		d, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	nextKey, nextCert, otherKey := read(next.KeyFile), read(next.CertFile), read(other.KeyFile)
	bad := []struct {
		name  string
		apply func()
	}{
		{"certificate without its key", func() { secInstall(t, other.CertFile, live.CertFile, 0o644) }},
		{"truncated key", func() {
			secInstall(t, next.CertFile, live.CertFile, 0o644)
			secWriteAtomic(t, live.KeyFile, otherKey[:len(otherKey)/2], 0o600)
		}},
		{"key readable by others", func() { secWriteAtomic(t, live.KeyFile, otherKey, 0o644) }},
		{"expired certificate and key", func() {
			secInstall(t, expired.KeyFile, live.KeyFile, 0o600)
			secInstall(t, expired.CertFile, live.CertFile, 0o644)
		}},
		{"key pasted into the certificate file", func() {
			secWriteAtomic(t, live.KeyFile, nextKey, 0o600)
			secWriteAtomic(t, live.CertFile, append(append([]byte{}, otherKey...), nextCert...), 0o644)
		}},
	}
	for i, c := range bad {
		c.apply()
		hup(t, agent)
		waitFor(t, "the rejection of the "+c.name, 5*time.Second, func() bool {
			return strings.Count(agent.stderr.String(), "certificate reload rejected") > i
		})
	}
	secRotate(t, next, live) // back to the good set
	hup(t, agent)

	b.Stop()
	waitFor(t, "a failed attempt while the broker is down", 10*time.Second, func() bool {
		return strings.Contains(agent.stderr.String(), "uplink: connection failed")
	})
	b.Restart()
	n := len(col.snapshot())
	waitFor(t, "delivery after the outage", 15*time.Second, func() bool { return len(col.snapshot()) > n+50 })
	agent.stop(t)
	out.WriteString("\n=== agent\n" + agent.stderr.String())
	// The status messages leave the device too.
	col.mu.Lock()
	st, err := json.Marshal(col.statuses)
	col.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	out.WriteString("\n=== status messages\n" + string(st) + "\n")

	runOnce("--diagnose", "--json", "--simulate")
	// Enrollment creates a key; it must not be printed either.
	enrollKey := filepath.Join(t.TempDir(), "enrolled.key")
	secEditConfig(t, s, fmt.Sprintf("key_file = %q", live.KeyFile), fmt.Sprintf("key_file = %q", enrollKey))
	runOnce("--enroll", "--csr", filepath.Join(t.TempDir(), "gw-test.csr"))

	logs := out.String()
	for _, must := range []string{"certificate reload rejected", "does not belong", "malformed or truncated", "chmod 600", "holds a private key", "expired on", "uplink: connected", "client_days_left", "level=DEBUG", "PASS"} {
		if !strings.Contains(logs, must) {
			t.Errorf("the run did not go through %q; the test would prove less than it claims", must)
		}
	}
	if _, err := os.Stat(enrollKey); err != nil {
		t.Errorf("--enroll made no key: %v", err)
	}
	for _, marker := range []string{"PRIVATE KEY", "BEGIN CERTIFICATE", "-----BEGIN", "-----END"} {
		if strings.Contains(logs, marker) {
			t.Errorf("output contains %q", marker)
		}
	}
	secrets := map[string]string{
		"first key": b.PKI.Client.KeyFile, "rotated key": next.KeyFile, "rejected key": other.KeyFile, "enrolled key": enrollKey,
		"first certificate": b.PKI.Client.CertFile, "rotated certificate": next.CertFile,
	}
	checked := 0
	for what, path := range secrets {
		forms := secretForms(t, path)
		checked += len(forms)
		if form, found := findSecret(logs, forms); found {
			t.Errorf("output contains the %s (%s)", what, form)
		}
	}

	// The check itself catches a key the way a careless log line would
	// print it.
	forms := secretForms(t, next.KeyFile)
	blk, _ := pem.Decode(nextKey)
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	var textLog strings.Builder
	slog.New(slog.NewTextHandler(&textLog, nil)).Info("leak", "key", string(nextKey))
	jsonDER, _ := json.Marshal(blk.Bytes)
	for _, leak := range []string{textLog.String(), string(jsonDER), fmt.Sprintf("%x", blk.Bytes), fmt.Sprintf("%+v", k)} {
		if _, found := findSecret(leak, forms); !found {
			t.Errorf("the check misses a key printed as %.60q...", leak)
		}
	}
	t.Logf("%d bytes of output from a full run, checked against %d forms of %d keys and certificates", len(logs), checked, len(secrets))
	if t.Failed() || os.Getenv("SEC_DUMP") != "" {
		t.Logf("output:\n%s", logs)
	}
}

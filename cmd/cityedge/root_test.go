package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cityedge/cityedge/buffer"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/diagnose"
	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/scripts/testbroker"
	"github.com/cityedge/cityedge/uplink/senml"
)

// serviceUID is the stand-in for the service user "cityedge" in tests that
// run as root.
const serviceUID = 4242

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CITYEDGE_REQUIRE_ROOT") == "1" {
		t.Fatal("needs root (CITYEDGE_REQUIRE_ROOT=1)")
	}
	t.Skip("needs root to give files to another user; CITYEDGE_REQUIRE_ROOT=1 makes this a failure")
}

// installed is a gateway laid out as the package lays it out, in a folder
// every user may traverse: the binary, the configuration and the CA and
// certificate readable by all, the key 0600 and state_dir 0700, both owned
// by the service user.
type installed struct {
	dir, bin, config, stateDir, key string
}

func install(t *testing.T, b *testbroker.Broker) *installed {
	t.Helper()
	dir, err := os.MkdirTemp("", "cityedge-root-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	in := &installed{dir: dir, bin: filepath.Join(dir, "cityedge"), config: filepath.Join(dir, "cityedge.toml"),
		stateDir: filepath.Join(dir, "state"), key: filepath.Join(dir, "client.key")}
	cp := func(src, dst string, mode os.FileMode, uid int) {
		t.Helper()
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dst, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dst, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	cp(agentBinary(t), in.bin, 0o755, 0)
	cp(b.PKI.CA.CertFile, filepath.Join(dir, "ca.pem"), 0o644, 0)
	cp(b.PKI.Client.CertFile, filepath.Join(dir, "client.pem"), 0o644, 0)
	cp(b.PKI.Client.KeyFile, in.key, 0o600, serviceUID)
	if err := os.Mkdir(in.stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(in.stateDir, serviceUID, serviceUID); err != nil {
		t.Fatal(err)
	}
	text := fmt.Sprintf(`[agent]
id = "gw-test"
state_dir = %q

[buffer]
max_bytes = "1MiB"
commit_interval = "50ms"

[uplink]
brokers = [%q]
topic_prefix = "cityedge/test/gw-test"
drain_order = "oldest-first"
ca_file = %q
cert_file = %q
key_file = %q
`+testClockRule+`
[[sensors]]
name = "air-1"
driver = "bme280"
bus = "1"
interval = "200ms"
`, in.stateDir, b.URL, filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"), in.key)
	if err := os.WriteFile(in.config, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return in
}

// fileFacts is what must not change: owner, mode, size and content.
type fileFacts struct {
	uid, gid uint32
	mode     os.FileMode
	size     int64
	sha      [32]byte
}

func factsOf(t *testing.T, path string) fileFacts {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return fileFacts{uid: st.Uid, gid: st.Gid, mode: fi.Mode(), size: fi.Size(), sha: sum}
}

func listDir(t *testing.T, dir string) string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return strings.Join(names, " ")
}

// TestDiagnoseAsRootLeavesTheServiceAlone: a technician runs `sudo cityedge
// --diagnose` (text and --json) with the service stopped, on a buffer file
// of the service user that is half free (half its readings were acked).
// The file's owner, mode, size and SHA-256 are unchanged and nothing new
// appears in state_dir; the key, owned by the service user, is judged as
// the service judges it (PASS), and the broker is checked with it. Then
// the agent, started as the service user, drains every buffered reading to
// mosquitto.
func TestDiagnoseAsRootLeavesTheServiceAlone(t *testing.T) {
	needRoot(t)
	b := testbroker.Start(t, testbroker.Options{})
	in := install(t, b)
	bufPath := filepath.Join(in.stateDir, config.BufferFile)

	// The service's buffer: 4,000 readings, the first half acknowledged.
	q, err := buffer.Open(bufPath, buffer.Options{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint64]bool{}
	at := time.Now().Add(-time.Hour)
	for i := range 40 {
		recs := make([]buffer.Record, 100)
		for j := range recs {
			data, err := senml.AppendReading(nil, drivers.Reading{Sensor: "air-1", Time: at.Add(time.Duration(i*100+j) * 10 * time.Millisecond),
				Values: []drivers.Value{drivers.Number(drivers.Temperature, drivers.UnitCelsius, 20), drivers.Number(drivers.Humidity, drivers.UnitPercentRH, 50)}})
			if err != nil {
				t.Fatal(err)
			}
			recs[j] = buffer.Record{Key: "air-1", Data: data}
		}
		first, err := q.Append(context.Background(), recs)
		if err != nil {
			t.Fatal(err)
		}
		for j := range uint64(len(recs)) {
			if i < 20 {
				if err := q.Ack(first + j); err != nil {
					t.Fatal(err)
				}
			} else {
				want[first+j] = true
			}
		}
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	before := factsOf(t, bufPath)
	if before.uid != serviceUID {
		t.Fatalf("the buffer file belongs to uid %d, want the owner of state_dir (%d)", before.uid, serviceUID)
	}
	files := listDir(t, in.stateDir)

	r, code, out := runDiagnose(t, in.config, "--simulate")
	cmd := exec.Command(in.bin, "--config", in.config, "--diagnose", "--simulate")
	text, _ := cmd.Output()
	t.Logf("sudo cityedge --diagnose:\n%s", text)
	if code != 0 || !r.OK || cmd.ProcessState.ExitCode() != 0 {
		t.Fatalf("--diagnose --json exit %d, --diagnose exit %d: %s", code, cmd.ProcessState.ExitCode(), out)
	}
	if c := verdictOf(r, "buffer", bufPath); c.Verdict != diagnose.Pass || !strings.Contains(c.Detail, "backlog 2000 readings") {
		t.Errorf("buffer check = %+v", c)
	}
	if c := verdictOf(r, "certs", "client"); c.Verdict != diagnose.Pass {
		t.Errorf("certs check as root on a correct installation = %+v", c)
	}
	if c := verdictOf(r, "broker", b.URL); c.Verdict != diagnose.Pass || !strings.Contains(c.Detail, "CONNACK ok") {
		t.Errorf("broker check = %+v", c)
	}
	for _, bad := range []string{"chown root", "chown 0 "} {
		if strings.Contains(out, bad) || strings.Contains(string(text), bad) {
			t.Errorf("the report advises %q, which would lock the service out", bad)
		}
	}
	if after := factsOf(t, bufPath); after != before {
		t.Fatalf("--diagnose changed the buffer file: before %+v, after %+v", before, after)
	}
	if now := listDir(t, in.stateDir); now != files {
		t.Fatalf("--diagnose changed state_dir: %q, was %q", now, files)
	}

	// The service starts as its own user and drains the file.
	col := collect(t, b, "cityedge/test/gw-test")
	agent := exec.Command(in.bin, "--config", in.config, "--simulate")
	agent.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: serviceUID, Gid: serviceUID}}
	p := startAgentCmd(t, agent)
	waitFor(t, "the service user's agent to deliver the buffered readings", 30*time.Second, func() bool { return deliveredAll(col, want) })
	if code, _ := p.stop(t); code != 0 {
		t.Errorf("the agent as uid %d exited %d:\n%s", serviceUID, code, p.stderr.String())
	}
	for _, e := range []string{"permission denied", "EACCES"} {
		if strings.Contains(p.stderr.String(), e) {
			t.Errorf("the service met %q:\n%s", e, p.stderr.String())
		}
	}
}

// TestDiagnoseCannotReadKey: run by a user who is neither root nor the
// service user, --diagnose cannot read the key: the certificate check WARNs
// "run as root or as the service user", every other check still runs, and
// nothing advises a change that would break the service.
func TestDiagnoseCannotReadKey(t *testing.T) {
	needRoot(t)
	b := testbroker.Start(t, testbroker.Options{})
	in := install(t, b)
	cmd := exec.Command(in.bin, "--config", in.config, "--diagnose", "--json", "--simulate")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: serviceUID + 1, Gid: serviceUID + 1}}
	out, _ := cmd.Output()
	var r diagReport
	if err := jsonUnmarshal(out, &r); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	c := verdictOf(r, "certs", "client")
	if c.Verdict != diagnose.Warn || !strings.Contains(c.Detail, "run as root or as") {
		t.Errorf("certs check = %+v, want WARN saying to run as root or as the service user", c)
	}
	for _, area := range []string{"config", "sensor", "buffer", "disk", "clock", "broker"} {
		if verdictOf(r, area, "").Verdict == "" {
			t.Errorf("no %s check: %s", area, out)
		}
	}
	if strings.Contains(string(out), "chown") || strings.Contains(string(out), "chmod") {
		t.Errorf("the report advises a change of the key's owner or mode: %s", out)
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// TestDiagnoseAsRootJudgesStateDirForTheService: root may write anything,
// so `sudo cityedge --diagnose` judges state_dir and the files in it for
// the service user, the directory's owner. A buffer file left to root, or a
// state_dir its owner may not write, is a FAIL naming the path and the fix
// that gives it to the service user; with that fix applied the check
// passes, and the report never advises a chown to root.
func TestDiagnoseAsRootJudgesStateDirForTheService(t *testing.T) {
	needRoot(t)
	b := testbroker.Start(t, testbroker.Options{})
	for _, tc := range []struct {
		name   string
		breaks func(in *installed) (path string)
		want   string
		fix    func(in *installed, path string) error
	}{
		{"buffer owned by root", func(in *installed) string {
			p := filepath.Join(in.stateDir, config.BufferFile)
			if err := os.WriteFile(p, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}, fmt.Sprintf("chown %d:%d", serviceUID, serviceUID), func(in *installed, p string) error {
			return os.Chown(p, serviceUID, serviceUID)
		}},
		{"state_dir without write for its owner", func(in *installed) string {
			if err := os.Chmod(in.stateDir, 0o500); err != nil {
				t.Fatal(err)
			}
			return in.stateDir
		}, "chmod 700", func(in *installed, p string) error {
			return os.Chmod(p, 0o700)
		}},
		{"certs directory left to root", func(in *installed) string {
			p := filepath.Join(in.stateDir, "certs")
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
			return p
		}, fmt.Sprintf("chown %d:%d", serviceUID, serviceUID), func(in *installed, p string) error {
			return os.Chown(p, serviceUID, serviceUID)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := install(t, b)
			path := tc.breaks(in)
			r, code, out := runDiagnose(t, in.config, "--simulate")
			c := verdictOf(r, "state", in.stateDir)
			if c.Verdict != diagnose.Fail || !strings.Contains(c.Detail, path) || !strings.Contains(c.Detail, tc.want) {
				t.Fatalf("state check = %+v, want FAIL naming %s and %q", c, path, tc.want)
			}
			if code != 1 || r.OK {
				t.Errorf("exit %d, ok %v: a state_dir the service cannot use must fail --diagnose", code, r.OK)
			}
			if strings.Contains(out, "chown root") || strings.Contains(out, "chown 0:") {
				t.Errorf("the report advises giving a file to root:\n%s", out)
			}
			if err := tc.fix(in, path); err != nil {
				t.Fatal(err)
			}
			r, _, _ = runDiagnose(t, in.config, "--simulate")
			if c := verdictOf(r, "state", in.stateDir); c.Verdict != diagnose.Pass {
				t.Errorf("after the advised fix the state check = %+v", c)
			}
		})
	}
}

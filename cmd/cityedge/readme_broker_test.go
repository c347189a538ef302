package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/diagnose"
	"github.com/cityedge/cityedge/scripts/testbroker"
	"github.com/cityedge/cityedge/scripts/testlog"
	"github.com/cityedge/cityedge/scripts/testproc"
)

// readmeBlock returns the fenced block that follows <!-- recipe:name --> in
// README.md: the text users copy.
func readmeBlock(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)<!-- recipe:" + regexp.QuoteMeta(name) + " -->\n```[a-z]*\n(.*?)```")
	m := re.FindSubmatch(data)
	if m == nil {
		t.Fatalf("README.md has no block marked recipe:%s", name)
	}
	return string(m[1])
}

// TestReadmeConnectYourOwnBroker runs README's "Connect your own broker":
// its openssl commands make the PKI, mosquitto runs with its listener block,
// the agent (the real binary, --simulate) runs with its configuration lines,
// --diagnose passes, and readings arrive at the broker.
func TestReadmeConnectYourOwnBroker(t *testing.T) {
	needRoot(t) // to mark the clock synchronised, as the gateway's NTP client would (DECISIONS 1)
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CITYEDGE_REQUIRE_OPENSSL") == "1" {
			t.Fatal("openssl not found (CITYEDGE_REQUIRE_OPENSSL=1): apt-get install openssl")
		}
		t.Skip("openssl not found: apt-get install openssl")
	}
	mosq, err := testbroker.Find()
	if err != nil {
		if os.Getenv(testbroker.RequireEnv) == "1" {
			t.Fatalf("mosquitto not found (%s=1): apt-get install mosquitto", testbroker.RequireEnv)
		}
		t.Skip("mosquitto not found: apt-get install mosquitto")
	}
	dir := t.TempDir()

	// 1. The PKI, with README's commands exactly.
	sh := exec.Command("sh", "-e", "-x", "-c", readmeBlock(t, "pki"))
	sh.Dir = dir
	if out, err := sh.CombinedOutput(); err != nil {
		t.Fatalf("README's openssl commands failed: %v\n%s", err, out)
	}
	if key, _ := os.ReadFile(filepath.Join(dir, "gw-0042.key")); !strings.Contains(string(key), "EC PARAMETERS") {
		t.Errorf("the recipe no longer makes a key with `openssl ecparam -genkey` (EC PARAMETERS block)")
	}

	// 2. mosquitto with README's listener block: the broker's files where
	// the block expects them, on a free port of the loopback.
	port, err := testproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	listener := readmeBlock(t, "mosquitto")
	if !strings.Contains(listener, "listener 8883\n") {
		t.Fatalf("listener block does not start with `listener 8883`:\n%s", listener)
	}
	listener = strings.Replace(listener, "listener 8883\n", fmt.Sprintf("listener %d 127.0.0.1\n", port), 1)
	listener = strings.ReplaceAll(listener, "/etc/mosquitto/certs/", dir+"/")
	conf := "per_listener_settings false\nlog_dest stderr\nlog_type all\nconnection_messages true\n"
	if os.Geteuid() == 0 {
		conf += "user root\n" // otherwise mosquitto drops to a user that cannot read the 0600 key
	}
	conf += listener
	confPath := filepath.Join(dir, "mosquitto.conf")
	os.WriteFile(confPath, []byte(conf), 0o600)
	var mlog testlog.Buffer
	m := exec.Command(mosq, "-c", confPath)
	m.Stdout, m.Stderr = &mlog, &mlog
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Process.Kill()
		m.Wait()
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", mlog.String())
		}
	})
	waitFor(t, "mosquitto listening", 10*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	// 3. The agent's configuration: README's lines with the files in dir,
	// the broker on the loopback under the name its certificate carries,
	// plus what any configuration has (state_dir, a sensor).
	cfg := readmeBlock(t, "config")
	for _, f := range [][2]string{{"ca.pem", "ca.pem"}, {"client.pem", "gw-0042.pem"}, {"client.key", "gw-0042.key"}} {
		cfg = strings.ReplaceAll(cfg, "/etc/cityedge/"+f[0], filepath.Join(dir, f[1]))
	}
	if !strings.Contains(cfg, "broker.example.org:8883") {
		t.Fatalf("config block does not name broker.example.org:8883:\n%s", cfg)
	}
	cfg = strings.Replace(cfg, "broker.example.org:8883", fmt.Sprintf("127.0.0.1:%d", port), 1)
	cfg = strings.Replace(cfg, "[agent]\n", "[agent]\nstate_dir = \""+filepath.Join(dir, "state")+"\"\n", 1)
	cfg = strings.Replace(cfg, "[uplink]\n", "[uplink]\nserver_name = \"broker.example.org\"\nbatch_wait = \"200ms\"\n", 1)
	cfg += "\n[[sensors]]\nname = \"air-1\"\ndriver = \"bme280\"\nbus = \"1\"\ninterval = \"1s\"\n"
	cfgPath := filepath.Join(dir, "cityedge.toml")
	os.WriteFile(cfgPath, []byte(cfg), 0o644)

	holdKernelClock(t).sync() // as the gateway's NTP client would (DECISIONS 1); restored at cleanup

	// 5. The check README gives: --diagnose (on simulated hardware).
	out, _ := exec.Command(agentBinary(t), "--config", cfgPath, "--diagnose", "--simulate", "--json").Output()
	var rep struct {
		Checks []diagnose.Check `json:"checks"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("--diagnose --json: %v\n%s", err, out)
	}
	for _, c := range rep.Checks {
		if (c.Area == "broker" || c.Area == "certs") && c.Verdict != diagnose.Pass {
			t.Errorf("--diagnose: %s %s %s: %s", c.Verdict, c.Area, c.Name, c.Detail)
		}
	}

	// Readings arrive.
	got := make(chan string, 100)
	sub := subscribeReadme(t, dir, port, "cityedge/gw-0042/#", got)
	defer sub.Disconnect(100)
	p := startAgent(t, cfgPath, "--simulate")
	deadline := time.After(20 * time.Second)
	for {
		select {
		case topic := <-got:
			if topic == "cityedge/gw-0042/readings" {
				p.stop(t)
				if strings.Contains(p.stderr.String(), "is not agent.id") {
					t.Errorf("the recipe's certificate CN is not agent.id:\n%s", p.stderr.String())
				}
				return
			}
		case <-deadline:
			t.Fatalf("no reading arrived within 20 s; agent log:\n%s", p.stderr.String())
		}
	}
}

// subscribeReadme watches topic with the recipe's gateway certificate under
// a client id of its own (no ACL in the recipe's listener).
func subscribeReadme(t *testing.T, dir string, port int, topic string, got chan<- string) mqtt.Client {
	t.Helper()
	tc := testbroker.TLSConfig(t, filepath.Join(dir, "ca.pem"), filepath.Join(dir, "gw-0042.pem"), filepath.Join(dir, "gw-0042.key"))
	tc.ServerName = "broker.example.org"
	var once sync.Once
	opts := mqtt.NewClientOptions().AddBroker("ssl://127.0.0.1:" + strconv.Itoa(port)).SetClientID("readme-watch").
		SetTLSConfig(tc).SetAutoReconnect(false)
	cli := mqtt.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok := cli.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
	}
	if tok.Error() != nil || !cli.IsConnected() {
		t.Fatalf("subscriber cannot connect: %v", tok.Error())
	}
	st := cli.Subscribe(topic, 1, func(_ mqtt.Client, m mqtt.Message) {
		select {
		case got <- m.Topic():
		default:
			once.Do(func() {})
		}
	})
	if !st.WaitTimeout(10*time.Second) || st.Error() != nil {
		t.Fatalf("subscribe: %v", st.Error())
	}
	return cli
}

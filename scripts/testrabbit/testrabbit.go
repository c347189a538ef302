// Package testrabbit runs a real RabbitMQ node for tests: Debian's
// rabbitmq-server with its MQTT plugin, a TLS-only MQTT listener on
// 127.0.0.1 that requires a client certificate from a development PKI
// (certs/devpki) and logs the client in as the certificate's common name
// (mqtt.ssl_cert_login), the configuration the fleet test (scripts/fleet)
// gives each node of its cluster.
//
// A node takes seconds to boot, so a test binary starts one (or two) once
// and shares it between tests; Close stops it. Everything runs in the
// foreground as the calling user, with its own Erlang cookie, epmd port,
// configuration and data under the directory given, and is stopped by
// process id (no system service is touched, nothing is left running; the
// processes also die with the test binary).
//
// Tests that need it are skipped when rabbitmq-server is missing, and fail
// instead when CITYEDGE_REQUIRE_RABBITMQ=1 (set by CI).
package testrabbit

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/cityedge/cityedge/certs/devpki"

	"github.com/cityedge/cityedge/scripts/testproc"
)

// RequireEnv names the environment variable that turns a missing RabbitMQ
// from a skip into a failure.
const RequireEnv = "CITYEDGE_REQUIRE_RABBITMQ"

// binDir is where Debian's package keeps the scripts that run a node in the
// foreground as the calling user (/usr/sbin's wrappers switch to the
// rabbitmq user and the system's settings).
const binDir = "/usr/lib/rabbitmq/bin"

// Find returns the installed RabbitMQ's version, or an error naming the
// package to install.
func Find() (version string, err error) {
	if _, err := os.Stat(filepath.Join(binDir, "rabbitmq-server")); err != nil {
		return "", errors.New("rabbitmq-server not found: apt-get install rabbitmq-server")
	}
	if _, err := exec.LookPath("epmd"); err != nil {
		return "", errors.New("epmd not found: apt-get install rabbitmq-server (erlang-base)")
	}
	libs, _ := filepath.Glob("/usr/lib/rabbitmq/lib/rabbitmq_server-*")
	if len(libs) == 0 {
		return "", errors.New("rabbitmq-server: no /usr/lib/rabbitmq/lib/rabbitmq_server-*")
	}
	return strings.TrimPrefix(filepath.Base(libs[len(libs)-1]), "rabbitmq_server-"), nil
}

// Options configure a node.
type Options struct {
	// Dir holds the node's configuration, data and logs; it must exist and
	// belongs to the caller (Close does not remove it).
	Dir string
	// Name is the node's short name ("uplink1" gives uplink1@localhost).
	Name string
	// PKI provides the CA and the broker certificate.
	PKI *devpki.Set
	// Users are the certificate common names allowed to log in (users
	// without a password: only a certificate logs them in), with full
	// rights on the default vhost.
	Users []string
}

// Node is a running RabbitMQ node.
type Node struct {
	URL     string // "mqtts://127.0.0.1:PORT"
	Port    int
	Name    string // uplink1@localhost
	Version string
	LogFile string

	base     []string // environment of rabbitmqctl
	probeTLS *tls.Config
	env      []string // environment of the node

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	epmd *exec.Cmd
}

// Start writes the node's configuration, starts its own epmd and the node,
// and waits until it accepts an MQTT session (a minute at most,
// on a loaded machine).
func Start(ctx context.Context, o Options) (*Node, error) {
	version, err := Find()
	if err != nil {
		return nil, err
	}
	ports, err := testproc.FreePorts(3)
	if err != nil {
		return nil, err
	}
	n := &Node{Port: ports[0], Name: o.Name + "@localhost", Version: version}
	n.URL = fmt.Sprintf("mqtts://127.0.0.1:%d", n.Port)
	dir := o.Dir
	if err := os.MkdirAll(filepath.Join(dir, "log"), 0o700); err != nil {
		return nil, err
	}
	n.LogFile = filepath.Join(dir, "log", "rabbit.log")
	cookie := make([]byte, 24)
	_, _ = rand.Read(cookie)
	// The cookie in HOME is what both the node and rabbitmqctl read.
	if err := os.WriteFile(filepath.Join(dir, ".erlang.cookie"), []byte(hex.EncodeToString(cookie)), 0o400); err != nil {
		return nil, err
	}
	envFile := filepath.Join(dir, "rabbitmq-env.conf")
	plugins := filepath.Join(dir, "enabled_plugins")
	defs := filepath.Join(dir, "definitions.json")
	conf := filepath.Join(dir, "rabbitmq.conf")
	if err := os.WriteFile(envFile, []byte("# empty: the test's settings come from the environment\n"), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(plugins, []byte("[rabbitmq_mqtt].\n"), 0o600); err != nil {
		return nil, err
	}
	probe, err := o.PKI.CA.Issue("testrabbit-probe-"+o.Name, devpki.Leaf{CN: "testrabbit-probe", Client: true})
	if err != nil {
		return nil, err
	}
	if n.probeTLS, err = clientTLS(o.PKI.CA.CertFile, probe.CertFile, probe.KeyFile); err != nil {
		return nil, err
	}
	if err := WriteDefinitions(defs, append([]string{"testrabbit-probe"}, o.Users...)); err != nil {
		return nil, err
	}
	var c strings.Builder
	c.WriteString("listeners.tcp = none\n")
	c.WriteString("mqtt.listeners.tcp = none\n")
	fmt.Fprintf(&c, "mqtt.listeners.ssl.default = 127.0.0.1:%d\n", n.Port)
	fmt.Fprintf(&c, "ssl_options.cacertfile = %s\n", o.PKI.CA.CertFile)
	fmt.Fprintf(&c, "ssl_options.certfile = %s\n", o.PKI.Server.CertFile)
	fmt.Fprintf(&c, "ssl_options.keyfile = %s\n", o.PKI.Server.KeyFile)
	c.WriteString("ssl_options.verify = verify_peer\n")
	c.WriteString("ssl_options.fail_if_no_peer_cert = true\n")
	c.WriteString("ssl_cert_login_from = common_name\n")
	c.WriteString("mqtt.ssl_cert_login = true\n")
	c.WriteString("mqtt.allow_anonymous = false\n")
	c.WriteString("mqtt.vhost = /\n")
	c.WriteString("mqtt.exchange = amq.topic\n")
	fmt.Fprintf(&c, "load_definitions = %s\n", defs)
	c.WriteString("log.console = false\nlog.file.level = info\n")
	if err := os.WriteFile(conf, []byte(c.String()), 0o600); err != nil {
		return nil, err
	}
	n.base = []string{
		"HOME=" + dir,
		"PATH=" + os.Getenv("PATH"),
		"LANG=C.UTF-8",
		"ERL_EPMD_PORT=" + strconv.Itoa(ports[2]),
		"RABBITMQ_CONF_ENV_FILE=" + envFile,
		"RABBITMQ_ENABLED_PLUGINS_FILE=" + plugins,
	}
	n.env = append(append([]string{}, n.base...),
		"RABBITMQ_NODENAME="+n.Name,
		"RABBITMQ_CONFIG_FILE="+conf,
		"RABBITMQ_ADVANCED_CONFIG_FILE="+filepath.Join(dir, "advanced.config"),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
		"RABBITMQ_LOGS="+n.LogFile,
		"RABBITMQ_PID_FILE="+filepath.Join(dir, "rabbit.pid"),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(ports[1]),
		// The start script then execs the Erlang VM (with -noinput)
		// instead of waiting on it in a shell: the process started here is
		// the VM, SIGTERM stops it in order and it dies with the test.
		"RUNNING_UNDER_SYSTEMD=1",
	)

	epmd, _ := exec.LookPath("epmd")
	n.epmd = exec.Command(epmd) // the port comes from ERL_EPMD_PORT
	n.epmd.Env = n.base
	n.epmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := n.epmd.Start(); err != nil {
		return nil, fmt.Errorf("epmd: %w", err)
	}
	out, err := os.OpenFile(filepath.Join(dir, "log", "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		n.Close()
		return nil, err
	}
	cmd := exec.Command(filepath.Join(binDir, "rabbitmq-server"))
	cmd.Env = n.env
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		n.Close()
		return nil, fmt.Errorf("%s: %w", n.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); out.Close(); close(done) }()
	n.mu.Lock()
	n.cmd, n.done = cmd, done
	n.mu.Unlock()
	if err := n.await(ctx, time.Minute); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// await waits until the node accepts an MQTT session. The listener opens
// last in RabbitMQ's boot, but even then the MQTT plugin refuses every
// CONNECT (closing the connection) until its client-id registry, a Raft
// cluster, has elected a leader: so the probe is a real mutual-TLS CONNECT
// as user "testrabbit-probe".
func (n *Node) await(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	if err := n.awaitListener(ctx, limit); err != nil {
		return err
	}
	var last error
	for time.Now().Before(deadline) {
		if last = n.probe(); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s accepts no MQTT session within %v (last: %v); see %s", n.Name, limit, last, n.LogFile)
}

// probe connects and disconnects once.
func (n *Node) probe() error {
	opts := mqtt.NewClientOptions().AddBroker(n.URL).SetClientID("testrabbit-probe").
		SetTLSConfig(n.probeTLS).SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(5 * time.Second).SetProtocolVersion(4)
	cli := mqtt.NewClient(opts)
	tok := cli.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return errors.New("no CONNACK within 10s")
	}
	if err := tok.Error(); err != nil {
		return err
	}
	cli.Disconnect(0)
	return nil
}

// awaitListener waits until the MQTT listener accepts TCP connections.
func (n *Node) awaitListener(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		n.mu.Lock()
		done := n.done
		n.mu.Unlock()
		select {
		case <-done:
			return fmt.Errorf("%s exited during boot; see %s", n.Name, n.LogFile)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", n.Port), time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
	}
	return fmt.Errorf("%s did not open its MQTT listener within %v; see %s", n.Name, limit, n.LogFile)
}

// Stop stops the RabbitMQ application (`rabbitmqctl stop_app`): every
// connection is closed and the listener with it, so clients get "connection
// refused", as from a broker that is down; the Erlang VM keeps running so
// that Restart takes seconds, not a full boot.
func (n *Node) Stop(ctx context.Context) error {
	_, err := n.Ctl(ctx, "stop_app")
	return err
}

// Restart starts the RabbitMQ application again (`rabbitmqctl start_app`)
// and waits until it accepts an MQTT session.
func (n *Node) Restart(ctx context.Context) error {
	if _, err := n.Ctl(ctx, "start_app"); err != nil {
		return err
	}
	return n.await(ctx, time.Minute)
}

// Ctl runs rabbitmqctl against the node.
func (n *Node) Ctl(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "rabbitmqctl"), append([]string{"-n", n.Name, "-q"}, args...)...)
	cmd.Env = n.base
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("rabbitmqctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Log returns the node's log so far (its last 64 KiB).
func (n *Node) Log() string {
	b, err := os.ReadFile(n.LogFile)
	if err != nil {
		return err.Error()
	}
	if len(b) > 64<<10 {
		b = b[len(b)-64<<10:]
	}
	return string(b)
}

// Close stops the node (SIGTERM to the Erlang VM, which stops RabbitMQ in
// order; SIGKILL to its process group after 30 s) and its epmd.
func (n *Node) Close() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.cmd = nil
	n.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // stragglers of the group
		<-done
	}
	if n.epmd != nil && n.epmd.Process != nil {
		_ = syscall.Kill(-n.epmd.Process.Pid, syscall.SIGKILL)
		_ = n.epmd.Wait()
		n.epmd = nil
	}
}

// WriteDefinitions writes a RabbitMQ definitions file (load_definitions)
// with the default vhost and one password-less user per name, each allowed
// everything on it: users log in by their client certificate's CN only.
func WriteDefinitions(path string, users []string) error {
	type user struct {
		Name         string `json:"name"`
		PasswordHash string `json:"password_hash"`
		HashingAlg   string `json:"hashing_algorithm"`
		Tags         string `json:"tags"`
	}
	type perm struct {
		User      string `json:"user"`
		Vhost     string `json:"vhost"`
		Configure string `json:"configure"`
		Write     string `json:"write"`
		Read      string `json:"read"`
	}
	var d struct {
		Vhosts      []map[string]string `json:"vhosts"`
		Users       []user              `json:"users"`
		Permissions []perm              `json:"permissions"`
	}
	d.Vhosts = []map[string]string{{"name": "/"}}
	for _, u := range users {
		d.Users = append(d.Users, user{Name: u, HashingAlg: "rabbit_password_hashing_sha256"})
		d.Permissions = append(d.Permissions, perm{User: u, Vhost: "/", Configure: ".*", Write: ".*", Read: ".*"})
	}
	b, err := json.MarshalIndent(d, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

func clientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", caFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

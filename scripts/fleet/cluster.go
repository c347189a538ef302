package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cityedge/cityedge/certs/devpki"

	"github.com/cityedge/cityedge/scripts/testproc"
	"github.com/cityedge/cityedge/scripts/testrabbit"
)

// rabbitDir is where Debian's rabbitmq-server package keeps the scripts
// that start a node in the foreground as the calling user (/usr/sbin's
// wrappers would switch to the rabbitmq user and the system's settings).
const rabbitDir = "/usr/lib/rabbitmq/bin"

// findRabbit returns the foreground start script and the version of the
// installed RabbitMQ, or an error naming the package to install.
func findRabbit() (server string, version string, err error) {
	server = filepath.Join(rabbitDir, "rabbitmq-server")
	if _, err := os.Stat(server); err != nil {
		return "", "", errors.New("rabbitmq-server not found: apt-get install rabbitmq-server")
	}
	if _, err := exec.LookPath("epmd"); err != nil {
		return "", "", errors.New("epmd not found: apt-get install rabbitmq-server (erlang-base)")
	}
	libs, _ := filepath.Glob("/usr/lib/rabbitmq/lib/rabbitmq_server-*")
	if len(libs) == 0 {
		return "", "", errors.New("rabbitmq-server: no /usr/lib/rabbitmq/lib/rabbitmq_server-*")
	}
	version = strings.TrimPrefix(filepath.Base(libs[len(libs)-1]), "rabbitmq_server-")
	return server, version, nil
}

// node is one RabbitMQ node of the test cluster.
type node struct {
	name     string // fleet1@localhost
	dir      string
	mqttPort int
	distPort int
	env      []string
	logFile  string

	cmd  *exec.Cmd
	done chan struct{}
}

// URL is the node's mutual-TLS MQTT listener.
func (n *node) URL() string { return fmt.Sprintf("mqtts://127.0.0.1:%d", n.mqttPort) }

// cluster is a three-node RabbitMQ cluster on this machine, with its own
// epmd, Erlang cookie, ports and directories under dir. Everything it
// starts is stopped by process id in Close.
type cluster struct {
	dir    string
	server string
	nodes  []*node
	epmd   *exec.Cmd
	base   []string // environment shared by nodes and CLI calls
	logf   func(format string, args ...any)
}

// newCluster writes the configuration of n nodes: TLS-only MQTT listeners
// that require a client certificate signed by the test CA, the
// certificate's CN as the MQTT user, quorum queues for durable sessions,
// and one passwordless user per gateway (certificate login only).
func newCluster(dir string, n int, pki *devpki.Set, users []string, logf func(string, ...any)) (*cluster, error) {
	server, _, err := findRabbit()
	if err != nil {
		return nil, err
	}
	ports, err := testproc.FreePorts(2*n + 1)
	if err != nil {
		return nil, err
	}
	c := &cluster{dir: dir, server: server, logf: logf}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	// The cookie file in HOME is what both the nodes and rabbitmqctl read.
	if err := os.WriteFile(filepath.Join(dir, ".erlang.cookie"), []byte(randomToken()), 0o400); err != nil {
		return nil, err
	}
	envFile := filepath.Join(dir, "rabbitmq-env.conf")
	plugins := filepath.Join(dir, "enabled_plugins")
	defs := filepath.Join(dir, "definitions.json")
	for _, f := range []struct {
		path string
		body string
	}{
		{envFile, "# empty: the test's settings come from the environment\n"},
		{plugins, "[rabbitmq_mqtt].\n"},
	} {
		if err := os.WriteFile(f.path, []byte(f.body), 0o600); err != nil {
			return nil, err
		}
	}
	if err := testrabbit.WriteDefinitions(defs, users); err != nil {
		return nil, err
	}
	c.base = []string{
		"HOME=" + dir,
		"PATH=" + os.Getenv("PATH"),
		"LANG=C.UTF-8",
		"ERL_EPMD_PORT=" + strconv.Itoa(ports[2*n]),
		"RABBITMQ_CONF_ENV_FILE=" + envFile,
		"RABBITMQ_ENABLED_PLUGINS_FILE=" + plugins,
	}
	var peers []string
	for i := 0; i < n; i++ {
		peers = append(peers, fmt.Sprintf("fleet%d@localhost", i+1))
	}
	for i := 0; i < n; i++ {
		nd := &node{name: peers[i], dir: filepath.Join(dir, fmt.Sprintf("node%d", i+1)),
			mqttPort: ports[i], distPort: ports[n+i]}
		if err := os.MkdirAll(filepath.Join(nd.dir, "log"), 0o700); err != nil {
			return nil, err
		}
		nd.logFile = filepath.Join(nd.dir, "log", "rabbit.log")
		conf := filepath.Join(nd.dir, "rabbitmq.conf")
		var b strings.Builder
		fmt.Fprintf(&b, "listeners.tcp = none\n")
		fmt.Fprintf(&b, "mqtt.listeners.tcp = none\n")
		fmt.Fprintf(&b, "mqtt.listeners.ssl.default = 127.0.0.1:%d\n", nd.mqttPort)
		fmt.Fprintf(&b, "ssl_options.cacertfile = %s\n", pki.CA.CertFile)
		fmt.Fprintf(&b, "ssl_options.certfile = %s\n", pki.Server.CertFile)
		fmt.Fprintf(&b, "ssl_options.keyfile = %s\n", pki.Server.KeyFile)
		fmt.Fprintf(&b, "ssl_options.verify = verify_peer\n")
		fmt.Fprintf(&b, "ssl_options.fail_if_no_peer_cert = true\n")
		fmt.Fprintf(&b, "ssl_cert_login_from = common_name\n")
		fmt.Fprintf(&b, "mqtt.ssl_cert_login = true\n")
		fmt.Fprintf(&b, "mqtt.allow_anonymous = false\n")
		fmt.Fprintf(&b, "mqtt.vhost = /\n")
		fmt.Fprintf(&b, "mqtt.exchange = amq.topic\n")
		fmt.Fprintf(&b, "mqtt.durable_queue_type = quorum\n")
		fmt.Fprintf(&b, "load_definitions = %s\n", defs)
		fmt.Fprintf(&b, "cluster_formation.peer_discovery_backend = classic_config\n")
		for j, p := range peers {
			fmt.Fprintf(&b, "cluster_formation.classic_config.nodes.%d = %s\n", j+1, p)
		}
		fmt.Fprintf(&b, "log.console = false\nlog.file.level = info\n")
		if err := os.WriteFile(conf, []byte(b.String()), 0o600); err != nil {
			return nil, err
		}
		nd.env = append(append([]string{}, c.base...),
			"RABBITMQ_NODENAME="+nd.name,
			"RABBITMQ_CONFIG_FILE="+conf,
			"RABBITMQ_ADVANCED_CONFIG_FILE="+filepath.Join(nd.dir, "advanced.config"),
			"RABBITMQ_MNESIA_BASE="+filepath.Join(nd.dir, "mnesia"),
			"RABBITMQ_LOG_BASE="+filepath.Join(nd.dir, "log"),
			"RABBITMQ_LOGS="+nd.logFile,
			"RABBITMQ_PID_FILE="+filepath.Join(nd.dir, "rabbit.pid"),
			"RABBITMQ_DIST_PORT="+strconv.Itoa(nd.distPort),
		)
		c.nodes = append(c.nodes, nd)
	}
	return c, nil
}

// Start runs the cluster's own epmd, then the first node, then the others,
// which join it (classic_config peer discovery) on their first boot.
func (c *cluster) Start(ctx context.Context) error {
	epmd, _ := exec.LookPath("epmd")
	c.epmd = exec.Command(epmd) // the port comes from ERL_EPMD_PORT
	c.epmd.Env = c.base
	c.epmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.epmd.Start(); err != nil {
		return fmt.Errorf("epmd: %w", err)
	}
	if err := c.StartNodes(ctx, c.nodes[:1]...); err != nil {
		return err
	}
	return c.StartNodes(ctx, c.nodes[1:]...)
}

// StartNodes starts nodes at once and waits until each has booted.
func (c *cluster) StartNodes(ctx context.Context, nodes ...*node) error {
	for _, n := range nodes {
		if err := c.spawn(n); err != nil {
			return err
		}
	}
	for _, n := range nodes {
		if err := c.await(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

func (c *cluster) spawn(n *node) error {
	out, err := os.OpenFile(filepath.Join(n.dir, "log", "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.server)
	cmd.Env = n.env
	cmd.Dir = n.dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("%s: %w", n.name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); out.Close(); close(done) }()
	n.cmd, n.done = cmd, done
	return nil
}

// bootLimit bounds a node's boot. After a whole-cluster stop each node waits
// for its peers' tables (RabbitMQ's own default: 10 tries of 30 s), which on
// a loaded 2-core machine has taken more than two minutes.
const bootLimit = 5 * time.Minute

// await waits until the node's MQTT listener accepts TLS connections,
// which RabbitMQ opens last in its boot.
func (c *cluster) await(ctx context.Context, n *node) error {
	deadline := time.Now().Add(bootLimit)
	for time.Now().Before(deadline) {
		select {
		case <-n.done:
			return fmt.Errorf("%s exited during boot; see %s", n.name, n.logFile)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", n.mqttPort), time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
	}
	return fmt.Errorf("%s did not open its MQTT listener within %v; see %s", n.name, bootLimit, n.logFile)
}

// Kill ends a node at once (SIGKILL to its whole process group), as a
// crashed machine would.
func (c *cluster) Kill(n *node) {
	if n.cmd == nil {
		return
	}
	syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	<-n.done
	n.cmd = nil
}

// Stop shuts nodes down gracefully (SIGTERM to the Erlang VM, which stops
// RabbitMQ in order) at once, and waits for them; a node still running
// after 60 s is killed.
func (c *cluster) Stop(nodes ...*node) {
	for _, n := range nodes {
		if n.cmd == nil {
			continue
		}
		if pid := beamPID(n.cmd.Process.Pid); pid > 0 {
			syscall.Kill(pid, syscall.SIGTERM)
		} else {
			syscall.Kill(n.cmd.Process.Pid, syscall.SIGTERM)
		}
	}
	for _, n := range nodes {
		if n.cmd == nil {
			continue
		}
		select {
		case <-n.done:
		case <-time.After(60 * time.Second):
			c.logf("%s did not stop within 60 s: killing it", n.name)
		}
		syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL) // stragglers of the group
		<-n.done
		n.cmd = nil
	}
}

// beamPID finds the Erlang VM started by a node's start script.
func beamPID(script int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", script, script))
	if err != nil {
		return 0
	}
	for _, f := range strings.Fields(string(b)) {
		pid, _ := strconv.Atoi(f)
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.HasPrefix(strings.TrimSpace(string(comm)), "beam") {
			return pid
		}
	}
	return 0
}

// Close stops every node and the cluster's epmd.
func (c *cluster) Close() {
	c.Stop(c.nodes...)
	if c.epmd != nil && c.epmd.Process != nil {
		syscall.Kill(-c.epmd.Process.Pid, syscall.SIGKILL)
		c.epmd.Wait()
		c.epmd = nil
	}
}

// ctl runs rabbitmqctl against a node.
func (c *cluster) ctl(ctx context.Context, n *node, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(rabbitDir, "rabbitmqctl"), append([]string{"-n", n.name, "-q"}, args...)...)
	cmd.Env = c.base
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("rabbitmqctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Members returns the running nodes of the cluster as a node sees them.
func (c *cluster) Members(ctx context.Context, n *node) ([]string, error) {
	out, err := c.ctl(ctx, n, "eval", "rabbit_nodes:all_running().")
	if err != nil {
		return nil, err
	}
	return regexp.MustCompile(`fleet\d+@localhost`).FindAllString(out, -1), nil
}

// MQTTConnections counts the MQTT connections of the whole cluster.
func (c *cluster) MQTTConnections(ctx context.Context, n *node) (int, error) {
	out, err := c.ctl(ctx, n, "list_mqtt_connections", "client_id")
	if err != nil {
		return 0, err
	}
	count := 0
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "f") { // fgw-…, fleet-…
			count++
		}
	}
	return count, nil
}

// acceptedRE matches the line RabbitMQ logs for every MQTT connection it
// accepts (after TCP and TLS, before CONNECT).
var acceptedRE = regexp.MustCompile(`^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+[+-]\d\d:\d\d) \[\w+\] <[^>]*> accepting MQTT connection`)

// Accepted returns the times at which the cluster's nodes accepted MQTT
// connections, from their logs.
func (c *cluster) Accepted() ([]time.Time, error) {
	var ts []time.Time
	for _, n := range c.nodes {
		f, err := os.Open(n.logFile)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			m := acceptedRE.FindStringSubmatch(sc.Text())
			if m == nil {
				continue
			}
			t, err := time.Parse("2006-01-02 15:04:05.999999-07:00", m[1])
			if err == nil {
				ts = append(ts, t)
			}
		}
		f.Close()
	}
	return ts, nil
}

// randomToken is a fresh Erlang cookie.
func randomToken() string {
	b := make([]byte, 24)
	rand.Read(b)
	return hex.EncodeToString(b)
}

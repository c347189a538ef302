package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cityedge/cityedge/certs/devpki"
	"github.com/cityedge/cityedge/scripts/testproc"
)

// agent is one gateway: a process of the release binary with its own id,
// state dir, certificate and simulated sensors.
type agent struct {
	id      string
	dir     string
	conf    string
	logFile string
	brokers []string

	cmd  *exec.Cmd
	done chan struct{}
}

// agentID names gateway i.
func agentID(i int) string { return fmt.Sprintf("fgw-%03d", i) }

// rotate gives gateway i the broker list starting at node i mod n, so that
// the fleet spreads over the cluster.
func rotate(urls []string, i int) []string {
	out := make([]string, len(urls))
	for j := range urls {
		out[j] = urls[(i+j)%len(urls)]
	}
	return out
}

// newAgent writes gateway i's certificate and configuration: one parking
// bay and one BME280 read every 2 s, the cluster's nodes in rotated order.
func newAgent(dir string, i int, ca *devpki.CA, caFile string, urls []string) (*agent, error) {
	a := &agent{id: agentID(i), brokers: rotate(urls, i)}
	a.dir = filepath.Join(dir, a.id)
	if err := os.MkdirAll(a.dir, 0o700); err != nil {
		return nil, err
	}
	cert, err := ca.Issue(a.id, devpki.Leaf{CN: a.id, Client: true})
	if err != nil {
		return nil, fmt.Errorf("%s: certificate: %w", a.id, err)
	}
	var quoted []string
	for _, u := range a.brokers {
		quoted = append(quoted, strconv.Quote(u))
	}
	conf := fmt.Sprintf(`[agent]
id = %q
site = "fleet"
state_dir = %q

[buffer]
max_bytes = "4MiB"

[uplink]
brokers = [%s]
ca_file = %q
cert_file = %q
key_file = %q

[[sensors]]
name = "bay-1"
driver = "gpio-presence"
pin = "GPIO17"

[[sensors]]
name = "air-1"
driver = "bme280"
bus = "1"
interval = "2s"
`, a.id, filepath.Join(a.dir, "state"), strings.Join(quoted, ", "), caFile, cert.CertFile, cert.KeyFile)
	a.conf = filepath.Join(a.dir, "cityedge.toml")
	a.logFile = filepath.Join(a.dir, "agent.log")
	return a, os.WriteFile(a.conf, []byte(conf), 0o600)
}

func (a *agent) start(bin string) error {
	out, err := os.OpenFile(a.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "--config", a.conf, "--simulate")
	cmd.Dir = a.dir
	// No JOURNAL_STREAM: the log lines keep their timestamps.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + a.dir}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("%s: %w", a.id, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); out.Close(); close(done) }()
	a.cmd, a.done = cmd, done
	return nil
}

// stop ends the agent with SIGTERM (its orderly shutdown) and kills it
// if it is still running after grace.
func (a *agent) stop(grace time.Duration) (clean bool) {
	if a.cmd == nil {
		return true
	}
	syscall.Kill(a.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-a.done:
		clean = a.cmd.ProcessState.ExitCode() == 0
	case <-time.After(grace):
		syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
		<-a.done
	}
	a.cmd = nil
	return clean
}

func (a *agent) running() bool {
	if a.cmd == nil {
		return false
	}
	select {
	case <-a.done:
		return false
	default:
		return true
	}
}

// procStat is a process's CPU time (user + system) and resident memory.
type procStat struct {
	CPU time.Duration
	RSS int64 // bytes
}

// readProc reads /proc/PID/stat and /proc/PID/status.
func readProc(pid int) (procStat, error) {
	var s procStat
	cpu, err := testproc.CPU(pid)
	if err != nil {
		return s, err
	}
	s.CPU = cpu
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			kb, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			s.RSS = kb * 1024
		}
	}
	return s, nil
}

// logEvent is one uplink line of an agent's log.
type logEvent struct {
	At     time.Time
	Msg    string // "uplink: connected", "uplink: session ended", ...
	Broker string
	// ConnackAfter is how long the broker took to answer the session's
	// CONNECT ("uplink: connected" lines): At minus it is when the CONNECT
	// reached the cluster.
	ConnackAfter time.Duration
}

// readAgentLog returns the uplink connect and disconnect events of a log
// written by slog's text handler.
func readAgentLog(path string) ([]logEvent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var evs []logEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if ev, ok := parseLogLine(sc.Text()); ok {
			evs = append(evs, ev)
		}
	}
	return evs, sc.Err()
}

// skippedMsg is the buffer's log line when it skips the sequence numbers a
// killed run had reserved.
const skippedMsg = "buffer: the last run did not close the file; skipping the sequence numbers it had reserved"

// readSkipped returns the seq ranges the agent's buffer logged as skipped.
func readSkipped(path string) ([]span, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []span
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if sp, ok := parseSkipped(sc.Text()); ok {
			out = append(out, sp)
		}
	}
	return out, sc.Err()
}

func parseSkipped(l string) (span, bool) {
	if !strings.Contains(l, skippedMsg) {
		return span{}, false
	}
	var sp span
	var from, to bool
	for _, kv := range splitLogfmt(l) {
		v, err := strconv.ParseInt(kv[1], 10, 64)
		switch {
		case kv[0] == "from" && err == nil:
			sp.From, from = v, true
		case kv[0] == "to" && err == nil:
			sp.To, to = v, true
		}
	}
	return sp, from && to && sp.From <= sp.To
}

// parseLogLine picks the time, message and broker out of an uplink line.
func parseLogLine(l string) (logEvent, bool) {
	var ev logEvent
	if !strings.Contains(l, `msg="uplink: `) {
		return ev, false
	}
	for _, kv := range splitLogfmt(l) {
		switch kv[0] {
		case "time":
			t, err := time.Parse(time.RFC3339Nano, kv[1])
			if err != nil {
				return ev, false
			}
			ev.At = t
		case "msg":
			ev.Msg = kv[1]
		case "broker":
			ev.Broker = kv[1]
		case "connack_after":
			d, err := time.ParseDuration(kv[1])
			if err != nil {
				return ev, false
			}
			ev.ConnackAfter = d
		}
	}
	return ev, !ev.At.IsZero()
}

// splitLogfmt splits key=value pairs, values optionally double-quoted.
func splitLogfmt(l string) [][2]string {
	var out [][2]string
	for len(l) > 0 {
		l = strings.TrimLeft(l, " ")
		eq := strings.IndexByte(l, '=')
		if eq < 0 {
			break
		}
		k := l[:eq]
		l = l[eq+1:]
		var v string
		if strings.HasPrefix(l, `"`) {
			if uq, err := strconv.QuotedPrefix(l); err == nil {
				v, _ = strconv.Unquote(uq)
				l = l[len(uq):]
			} else {
				v, l = l, ""
			}
		} else if sp := strings.IndexByte(l, ' '); sp >= 0 {
			v, l = l[:sp], l[sp:]
		} else {
			v, l = l, ""
		}
		out = append(out, [2]string{k, v})
	}
	return out
}

// connectedNow reports whether the agent's log shows a session up: its last
// "uplink: connected" comes after its last announced reconnect wait.
func connectedNow(evs []logEvent) bool {
	up := false
	for _, ev := range evs {
		switch {
		case ev.Msg == "uplink: connected":
			up = true
		case strings.HasPrefix(ev.Msg, "uplink: reconnecting in"):
			up = false
		}
	}
	return up
}

// waitConnected polls the agents' logs until every running agent has a
// session, or timeout passes; it returns how long it waited.
func waitConnected(ctx context.Context, agents []*agent, timeout time.Duration) time.Duration {
	start := time.Now()
	for time.Since(start) < timeout && ctx.Err() == nil {
		all := true
		for _, a := range agents {
			if !a.running() {
				continue
			}
			evs, err := readAgentLog(a.logFile)
			if err != nil || !connectedNow(evs) {
				all = false
				break
			}
		}
		if all {
			break
		}
		sleep(ctx, 2*time.Second)
	}
	return time.Since(start)
}

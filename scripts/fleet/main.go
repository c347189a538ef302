// Command fleet is the city-fleet testbed (`make fleet-test`): a three-node
// RabbitMQ cluster on this machine with mutual-TLS MQTT listeners, 200
// processes of the release binary on simulated sensors, two persistent
// consumers, and the scenarios of a city's broker operations in one run —
// steady state, one node killed and restarted, the whole cluster stopped
// and started, a rolling restart. It prints what it measured as a table,
// writes it as Markdown (-report, and -doc to refresh docs/FLEET.md) and
// exits 1 when a gateway lost a reading or a bound was broken, naming the
// gateway and what it lost.
//
// It needs Debian's rabbitmq-server and root (to mark the clock synced as an
// NTP client would, see docs/FLEET.md). Without them it prints SKIP and
// exits 0, unless CITYEDGE_REQUIRE_RABBITMQ=1 (CI), where it fails.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cityedge/cityedge/certs/devpki"
)

// RequireEnv turns a missing RabbitMQ or missing root into a failure.
const RequireEnv = "CITYEDGE_REQUIRE_RABBITMQ"

type options struct {
	agents        int
	steady        time.Duration
	killOutage    time.Duration
	clusterOutage time.Duration
	settle        time.Duration
	bin           string
	report        string
	doc           string
	keep          bool
}

func main() {
	var o options
	flag.IntVar(&o.agents, "agents", 200, "gateways (agent processes)")
	flag.DurationVar(&o.steady, "steady", 30*time.Second, "steady-state phase")
	flag.DurationVar(&o.killOutage, "kill-outage", 30*time.Second, "how long the SIGKILLed node stays down")
	flag.DurationVar(&o.clusterOutage, "cluster-outage", 30*time.Second, "how long the whole cluster stays down")
	flag.DurationVar(&o.settle, "settle", 30*time.Second, "time after the cluster comes back before the next scenario")
	flag.StringVar(&o.bin, "bin", "", "agent binary (default: go build ./cmd/cityedge into the work dir)")
	flag.StringVar(&o.report, "report", "", "write the results as Markdown to this file")
	flag.StringVar(&o.doc, "doc", "", "replace the measured section of this file (docs/FLEET.md)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (logs of every node and agent)")
	flag.Parse()

	if reason := missing(); reason != "" {
		if os.Getenv(RequireEnv) == "1" {
			fmt.Fprintf(os.Stderr, "FAIL fleet test: %s (%s=1)\n", reason, RequireEnv)
			os.Exit(1)
		}
		fmt.Printf("SKIP fleet test: %s\n", reason)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ok, err := run(ctx, o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL fleet test: %v\n", err)
		os.Exit(1)
	}
	if !ok {
		fmt.Println("FAIL fleet test: see above")
		os.Exit(1)
	}
	fmt.Println("PASS fleet test")
}

// missing names what the machine lacks for the test, or "".
func missing() string {
	if _, _, err := findRabbit(); err != nil {
		return err.Error()
	}
	if os.Geteuid() != 0 {
		return "needs root (adjtimex to mark the clock synced, as an NTP client does)"
	}
	return ""
}

func logf(format string, args ...any) {
	fmt.Printf("%s  %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// results is everything the run measured.
type results struct {
	Started, Ended time.Time
	Machine        string
	RabbitVersion  string
	Agents         int
	Options        options

	GW []gwResult

	SteadyCPU   time.Duration // CPU time of all agents over SteadyWindow
	SteadyWin   time.Duration
	SteadyRSS   int64 // sum of VmRSS
	MaxRSS      int64
	Connections int // MQTT connections the cluster listed in steady state
	Members     []string

	Failovers []failoverResult

	RestartAt        time.Time // whole cluster back (all listeners open)
	BusiestAccepted  int       // RabbitMQ's "accepting MQTT connection" lines
	BusiestAcceptAt  time.Time
	BusiestConnected int // agents' "uplink: connected" lines
	BusiestConnAt    time.Time
	// The agents' sessions dated by when their CONNECT reached the cluster
	// (the line's time minus its connack_after): RabbitMQ 3.10 holds
	// CONNECTs while its client-id registry has no leader and answers all
	// it holds in one instant, so the busiest second of sessions
	// established is set by the broker; the arrivals are the fleet's.
	BusiestArrived   int
	BusiestArrivedAt time.Time
	BackAfter        time.Duration // last gateway reconnected, after the cluster was back

	RetainedSteady []int // per node: gateways whose status a late subscriber got
	RetainedEnd    []int
	RetainedOnline []int // at the end, of those: state "online"

	Takeovers    []string // one line per takeover test
	TakeoverOK   bool
	WillOffline  bool
	WillLatency  time.Duration
	ConsumerLost [2]int
	BadPayloads  int
	Problems     []string
}

type failoverResult struct {
	What     string
	Affected int
	Lat      []time.Duration
	Stuck    []string
}

func run(ctx context.Context, o options) (bool, error) {
	var r results
	r.Options = o
	r.Agents = o.agents
	r.Started = time.Now().UTC()
	r.Machine = machine()
	_, r.RabbitVersion, _ = findRabbit()

	work, err := os.MkdirTemp("", "cityedge-fleet-")
	if err != nil {
		return false, err
	}
	if o.keep {
		logf("work directory kept: %s", work)
	} else {
		defer os.RemoveAll(work)
	}

	restore, err := markClockSynced()
	if err != nil {
		return false, err
	}
	defer func() {
		if err := restore(); err != nil {
			logf("restoring the clock status: %v", err)
		}
	}()

	bin := o.bin
	if bin == "" {
		bin = filepath.Join(work, "cityedge")
		logf("building the release binary")
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "./cmd/cityedge")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Dir = repoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			return false, fmt.Errorf("go build ./cmd/cityedge: %v\n%s", err, out)
		}
	}

	logf("PKI: test CA, broker certificate, %d client certificates", o.agents+1)
	pki, err := devpki.Dev(filepath.Join(work, "pki"), "fleet-consumer")
	if err != nil {
		return false, err
	}
	users := []string{"fleet-consumer"}
	for i := 0; i < o.agents; i++ {
		users = append(users, agentID(i))
	}
	cl, err := newCluster(filepath.Join(work, "rabbit"), 3, pki, users, logf)
	if err != nil {
		return false, err
	}
	defer cl.Close()
	logf("starting RabbitMQ %s: 3 nodes", r.RabbitVersion)
	if err := cl.Start(ctx); err != nil {
		return false, err
	}
	if r.Members, err = cl.Members(ctx, cl.nodes[0]); err != nil {
		return false, err
	}
	logf("cluster running: %s", strings.Join(r.Members, ", "))
	if len(r.Members) != 3 {
		return false, fmt.Errorf("cluster has %d running nodes, want 3: %v", len(r.Members), r.Members)
	}
	var urls []string
	for _, n := range cl.nodes {
		urls = append(urls, n.URL())
	}

	tc, err := tlsConfig(pki.CA.CertFile, pki.Client.CertFile, pki.Client.KeyFile)
	if err != nil {
		return false, err
	}
	const readings = "cityedge/fleet/+/readings"
	const status = "cityedge/fleet/+/status"
	ca, cb := (*consumer)(nil), (*consumer)(nil)
	if ca, err = startConsumer("fleet-consumer-a", []string{urls[0], urls[2], urls[1]}, tc, readings); err != nil {
		return false, err
	}
	defer ca.close()
	if cb, err = startConsumer("fleet-consumer-b", []string{urls[1], urls[2], urls[0]}, tc, readings); err != nil {
		return false, err
	}
	defer cb.close()
	watch, err := startWatcher(urls[2], tc, status)
	if err != nil {
		return false, err
	}
	defer watch.close()

	agents := make([]*agent, o.agents)
	for i := range agents {
		if agents[i], err = newAgent(filepath.Join(work, "gw"), i, pki.CA, pki.CA.CertFile, urls); err != nil {
			return false, err
		}
	}
	defer func() {
		for _, a := range agents {
			if a != nil {
				a.stop(10 * time.Second)
			}
		}
	}()
	logf("starting %d agents", len(agents))
	for _, a := range agents {
		if err := a.start(bin); err != nil {
			return false, err
		}
		sleep(ctx, 25*time.Millisecond)
	}

	// Steady state: every gateway delivering, then CPU and memory over a
	// window, the cluster's connection count, takeovers and the last will.
	logf("steady state: waiting for every gateway's readings")
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) && len(silent(ids(agents), ca.snapshot(), time.Time{})) > 0 {
		sleep(ctx, time.Second)
	}
	if s := silent(ids(agents), ca.snapshot(), time.Time{}); len(s) > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d gateways delivered nothing within 60 s of start: %s", len(s), short(s)))
	}
	win := o.steady - 10*time.Second
	before := procStats(agents)
	t0 := time.Now()
	if r.Connections, err = cl.MQTTConnections(ctx, cl.nodes[0]); err != nil {
		r.Problems = append(r.Problems, err.Error())
	}
	sleep(ctx, win-time.Since(t0))
	after := procStats(agents)
	r.SteadyWin = time.Since(t0)
	for i, a := range after {
		r.SteadyCPU += a.CPU - before[i].CPU
		r.SteadyRSS += a.RSS
		r.MaxRSS = max(r.MaxRSS, a.RSS)
	}
	logf("steady: %d agents use %.1f%% CPU in all, %s RSS in all; cluster lists %d MQTT connections",
		len(agents), 100*r.SteadyCPU.Seconds()/r.SteadyWin.Seconds(), mib(r.SteadyRSS), r.Connections)

	r.RetainedSteady = retainedPerNode(urls, tc, statusTopics(agents), "steady", nil)
	logf("retained status seen by a late subscriber per node: %v of %d", r.RetainedSteady, len(agents))

	// Session takeover: a second connection with a gateway's client id
	// and certificate on another node.
	var tw sync.WaitGroup
	var tmu sync.Mutex
	tStart := time.Now()
	for _, i := range []int{3, 4, 5} {
		if i >= len(agents) {
			continue
		}
		a := agents[i]
		atc, err := tlsConfig(pki.CA.CertFile, filepath.Join(work, "pki", a.id+".pem"), filepath.Join(work, "pki", a.id+".key"))
		if err != nil {
			return false, err
		}
		other := a.brokers[1]
		tw.Add(1)
		go func() {
			defer tw.Done()
			err := takeover(other, a.id, atc, 3*time.Second)
			line := fmt.Sprintf("%s: second connection on %s held 3 s", a.id, other)
			if err != nil {
				line = fmt.Sprintf("%s: %v", a.id, err)
			}
			tmu.Lock()
			r.Takeovers = append(r.Takeovers, line)
			tmu.Unlock()
		}()
	}
	tw.Wait()

	// Last will: SIGKILL the last gateway; a live subscriber must get
	// "offline" from the broker; then start it again.
	last := agents[len(agents)-1]
	killAt := time.Now()
	syscall.Kill(-last.cmd.Process.Pid, syscall.SIGKILL)
	<-last.done
	last.cmd = nil
	if at, ok := watch.waitState(ctx, last.id, "offline", killAt, 30*time.Second); ok {
		r.WillOffline, r.WillLatency = true, at.Sub(killAt)
	}
	if err := last.start(bin); err != nil {
		return false, err
	}
	sleep(ctx, 15*time.Second)

	// Scenario 2: SIGKILL one node, restart it after killOutage.
	victim := cl.nodes[1]
	logf("scenario: SIGKILL %s for %s", victim.name, o.killOutage)
	died := time.Now()
	cl.Kill(victim)
	sleep(ctx, o.killOutage)
	if err := cl.StartNodes(ctx, victim); err != nil {
		return false, err
	}
	logf("%s back after %s", victim.name, time.Since(died).Round(time.Second))
	sleep(ctx, o.settle/2)

	// Scenario 3: the whole cluster stopped, then started.
	logf("scenario: whole cluster stopped for %s", o.clusterOutage)
	cl.Stop(cl.nodes...)
	stopped := time.Now()
	sleep(ctx, o.clusterOutage-time.Since(stopped))
	logf("starting the whole cluster")
	startAt := time.Now()
	if err := cl.StartNodes(ctx, cl.nodes...); err != nil {
		return false, err
	}
	r.RestartAt = time.Now()
	logf("cluster back %s after starting it", r.RestartAt.Sub(startAt).Round(time.Second))
	sleep(ctx, o.settle)

	// Scenario 4: rolling restart, one node at a time.
	var rolling []struct {
		at  time.Time
		url string
		n   string
	}
	for _, n := range cl.nodes {
		logf("scenario: rolling restart of %s", n.name)
		at := time.Now()
		cl.Stop(n)
		if err := cl.StartNodes(ctx, n); err != nil {
			return false, err
		}
		rolling = append(rolling, struct {
			at  time.Time
			url string
			n   string
		}{at, n.URL(), n.name})
		sleep(ctx, 5*time.Second)
	}
	// A gateway refused through several restarts may be in its widest wait
	// (the uplink's BackoffMax, 2 min): wait until every gateway has a
	// session again, then give the backlog time to drain.
	logf("draining: every gateway must catch up")
	waited := waitConnected(ctx, agents, 150*time.Second)
	logf("every gateway connected again after %s", waited.Round(time.Second))
	sleep(ctx, 10*time.Second)
	r.RetainedEnd = retainedPerNode(urls, tc, statusTopics(agents), "end", &r.RetainedOnline)
	r.Ended = time.Now().UTC()

	// Stop the agents (orderly: offline status, buffer closed), then read.
	for _, a := range agents {
		if !a.running() && a.cmd != nil {
			r.Problems = append(r.Problems, fmt.Sprintf("%s exited during the run; see its log", a.id))
		}
	}
	var sw sync.WaitGroup
	for _, a := range agents {
		sw.Add(1)
		go func() { defer sw.Done(); a.stop(15 * time.Second) }()
	}
	sw.Wait()
	sleep(ctx, 2*time.Second)

	events := map[string][]logEvent{}
	reconnects := map[string]int{}
	skipped := map[string][]span{}
	var connected, arrived []time.Time
	for _, a := range agents {
		evs, err := readAgentLog(a.logFile)
		if err != nil {
			return false, err
		}
		events[a.id] = evs
		n := 0
		for _, ev := range evs {
			if ev.Msg == "uplink: connected" {
				n++
				connected = append(connected, ev.At)
				arrived = append(arrived, ev.At.Add(-ev.ConnackAfter))
			}
		}
		reconnects[a.id] = max(n-1, 0)
		if skipped[a.id], err = readSkipped(a.logFile); err != nil {
			return false, err
		}
	}
	recA, recB := ca.snapshot(), cb.snapshot()
	r.GW = analyze(ids(agents), recA, recB, reconnects, skipped)
	// A gateway whose session was taken over reconnects within its
	// reconnect_spread; it must have delivered again by the end.
	r.TakeoverOK = len(silent(ids(agents[3:min(6, len(agents))]), recA, tStart.Add(5*time.Second))) == 0
	first := firstReceipt(append(recA, recB...))

	fk := failoverResult{What: "SIGKILL " + victim.name}
	fk.Lat, fk.Affected, fk.Stuck = failover(died, victim.URL(), events, first)
	r.Failovers = append(r.Failovers, fk)
	for _, ro := range rolling {
		f := failoverResult{What: "rolling: stop " + ro.n}
		f.Lat, f.Affected, f.Stuck = failover(ro.at, ro.url, events, first)
		r.Failovers = append(r.Failovers, f)
	}
	accepted, err := cl.Accepted()
	if err != nil {
		return false, err
	}
	// From the stop to the rolling restart: every reconnect the stop caused
	// (a gateway refused throughout may still be waiting when the rolling
	// restart begins; its session then counts there).
	restartEnd := rolling[0].at
	r.BusiestAcceptAt, r.BusiestAccepted = busiest(accepted, stopped, restartEnd)
	r.BusiestConnAt, r.BusiestConnected = busiest(connected, stopped, restartEnd)
	r.BusiestArrivedAt, r.BusiestArrived = busiest(arrived, stopped, restartEnd)
	for _, evs := range events {
		for _, ev := range evs {
			if ev.Msg == "uplink: connected" && ev.At.After(startAt) {
				r.BackAfter = max(r.BackAfter, ev.At.Sub(r.RestartAt))
				break
			}
		}
	}
	ca.mu.Lock()
	r.ConsumerLost[0], r.BadPayloads = ca.lost, ca.bad
	ca.mu.Unlock()
	cb.mu.Lock()
	r.ConsumerLost[1], r.BadPayloads = cb.lost, r.BadPayloads+cb.bad
	cb.mu.Unlock()

	ok := verdict(&r)
	text := render(&r)
	fmt.Print("\n" + text)
	if o.report != "" {
		if err := os.WriteFile(o.report, []byte(text), 0o644); err != nil {
			return false, err
		}
	}
	if o.doc != "" {
		if err := replaceSection(o.doc, text); err != nil {
			return false, err
		}
	}
	return ok, nil
}

// verdict checks the bounds; every broken one is added to r.Problems.
func verdict(r *results) bool {
	const window, batchMax = 16, 100 // the agent's defaults (README)
	for _, g := range r.GW {
		if !g.OK() {
			r.Problems = append(r.Problems, "LOSS "+describeLoss(g))
		}
		if g.DupsPerReconnect() > window*batchMax {
			r.Problems = append(r.Problems, fmt.Sprintf("%s: %.0f duplicates per reconnect > window × batch_max = %d", g.ID, g.DupsPerReconnect(), window*batchMax))
		}
	}
	if lim := r.Agents / 10; r.BusiestArrived > lim {
		r.Problems = append(r.Problems, fmt.Sprintf("busiest second after the whole-cluster restart: the CONNECTs of %d sessions reached the cluster > 1/10 of the fleet (%d)", r.BusiestArrived, lim))
	}
	for _, f := range r.Failovers {
		if len(f.Stuck) > 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("%s: %d gateways published nothing on a new session: %s", f.What, len(f.Stuck), short(f.Stuck)))
		}
	}
	if !r.TakeoverOK {
		r.Problems = append(r.Problems, "session takeover: a gateway whose client id was taken over delivered nothing afterwards")
	}
	if !r.WillOffline {
		r.Problems = append(r.Problems, "last will: no \"offline\" status within 30 s of killing a gateway")
	}
	if r.BadPayloads > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d readings messages were not SenML with seq", r.BadPayloads))
	}
	return len(r.Problems) == 0
}

func retainedPerNode(urls []string, tc *tls.Config, topics []string, tag string, online *[]int) []int {
	out := make([]int, len(urls))
	if online != nil {
		*online = make([]int, len(urls))
	}
	var wg sync.WaitGroup
	for i, u := range urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seen, err := retainedStatus(u, fmt.Sprintf("fleet-late-%s-%d", tag, i), tc, topics, 3*time.Second)
			if err != nil {
				logf("%v", err)
				out[i] = -1
				return
			}
			out[i] = len(seen)
			if online != nil {
				for _, st := range seen {
					if st == "online" {
						(*online)[i]++
					}
				}
			}
		}()
	}
	wg.Wait()
	return out
}

// firstReceipt returns, per gateway, a lookup of the first time a record
// was received at or after t.
func firstReceipt(recs []record) func(gw string, t time.Time) (time.Time, bool) {
	by := map[string][]time.Time{}
	for _, r := range recs {
		by[r.GW] = append(by[r.GW], r.At)
	}
	for _, ts := range by {
		sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	}
	return func(gw string, t time.Time) (time.Time, bool) {
		ts := by[gw]
		i := sort.Search(len(ts), func(i int) bool { return !ts[i].Before(t) })
		if i == len(ts) {
			return time.Time{}, false
		}
		return ts[i], true
	}
}

// silent lists the gateways with no record received after since.
func silent(ids []string, recs []record, since time.Time) []string {
	got := map[string]bool{}
	for _, r := range recs {
		if r.At.After(since) {
			got[r.GW] = true
		}
	}
	var out []string
	for _, id := range ids {
		if !got[id] {
			out = append(out, id)
		}
	}
	return out
}

func statusTopics(agents []*agent) []string {
	out := make([]string, len(agents))
	for i, a := range agents {
		out[i] = "cityedge/fleet/" + a.id + "/status"
	}
	return out
}

func ids(agents []*agent) []string {
	out := make([]string, len(agents))
	for i, a := range agents {
		out[i] = a.id
	}
	return out
}

func procStats(agents []*agent) []procStat {
	out := make([]procStat, len(agents))
	for i, a := range agents {
		if a.cmd != nil {
			out[i], _ = readProc(a.cmd.Process.Pid)
		}
	}
	return out
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func short(s []string) string {
	if len(s) > 10 {
		return strings.Join(s[:10], ", ") + fmt.Sprintf(" … (%d)", len(s))
	}
	return strings.Join(s, ", ")
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// repoRoot is the module root: the directory above scripts/fleet when run
// with `go run`, else the working directory.
func repoRoot() string {
	dir, _ := os.Getwd()
	for d := dir; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	return dir
}

// machine describes the host for the report.
func machine() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				model = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return fmt.Sprintf("%d cores (%s), Linux %s, %s", runtime.NumCPU(), model, strings.TrimSpace(string(kernel)), runtime.Version())
}

var errNoSection = errors.New("no <!-- fleet:begin --> … <!-- fleet:end --> section")

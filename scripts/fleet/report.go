package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// watcher is a live subscriber to every gateway's status (clean session,
// one node): it sees the last will the broker publishes.
type watcher struct {
	cli mqtt.Client
	mu  sync.Mutex
	got []statusSeen
}

type statusSeen struct {
	GW, State string
	At        time.Time
}

func startWatcher(broker string, tc *tls.Config, topic string) (*watcher, error) {
	w := &watcher{}
	o := mqtt.NewClientOptions().AddBroker(strings.Replace(broker, "mqtts://", "ssl://", 1))
	o.SetClientID("fleet-status-watch").SetCleanSession(true).SetTLSConfig(tc)
	o.SetAutoReconnect(true).SetMaxReconnectInterval(2 * time.Second).SetConnectTimeout(10 * time.Second)
	handle := func(_ mqtt.Client, m mqtt.Message) {
		var st struct {
			State string `json:"state"`
			Agent string `json:"agent"`
		}
		if json.Unmarshal(m.Payload(), &st) != nil {
			return
		}
		w.mu.Lock()
		w.got = append(w.got, statusSeen{st.Agent, st.State, time.Now()})
		w.mu.Unlock()
	}
	o.SetOnConnectHandler(func(c mqtt.Client) { go c.Subscribe(topic, 1, handle) })
	w.cli = mqtt.NewClient(o)
	tok := w.cli.Connect()
	if !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("status watcher: %v", tok.Error())
	}
	return w, nil
}

// waitState waits until gw's status state was seen after since.
func (w *watcher) waitState(ctx context.Context, gw, state string, since time.Time, limit time.Duration) (time.Time, bool) {
	end := time.Now().Add(limit)
	for time.Now().Before(end) && ctx.Err() == nil {
		w.mu.Lock()
		for _, s := range w.got {
			if s.GW == gw && s.State == state && s.At.After(since) {
				w.mu.Unlock()
				return s.At, true
			}
		}
		w.mu.Unlock()
		time.Sleep(100 * time.Millisecond)
	}
	return time.Time{}, false
}

func (w *watcher) close() { w.cli.Disconnect(200) }

// render writes the results as Markdown: a table of the measurements, then
// the problems (every gateway that lost something, by name).
func render(r *results) string {
	var b strings.Builder
	o := r.Options
	fmt.Fprintf(&b, "Measured %s (run took %s) on %s; RabbitMQ %s from Debian, 3 nodes; %d agents.\n",
		r.Started.Format("2006-01-02 15:04 UTC"), r.Ended.Sub(r.Started).Round(time.Second), r.Machine, r.RabbitVersion, r.Agents)
	fmt.Fprintf(&b, "Outages: one node SIGKILLed for %s; the whole cluster stopped for %s; rolling restart of all three. Agents on their defaults (window 16, batch_max 100, reconnect_spread 30 s).\n\n",
		o.killOutage, o.clusterOutage)

	ok, reads, missing := 0, 0, 0
	skippedN, skippedGW := 0, []string(nil)
	var maxDup float64
	dupGW := ""
	totalRec := 0
	var onlyA, onlyB int
	for _, g := range r.GW {
		if g.OK() {
			ok++
		}
		reads += g.Readings
		for _, m := range g.Missing {
			missing += int(m.To - m.From + 1)
		}
		for _, m := range g.Skipped {
			skippedN += int(m.To - m.From + 1)
			skippedGW = append(skippedGW, g.ID)
		}
		if d := g.DupsPerReconnect(); d > maxDup {
			maxDup, dupGW = d, g.ID
		}
		totalRec += g.Reconnect
		onlyA += g.OnlyA
		onlyB += g.OnlyB
	}
	b.WriteString("| what | measured | bound |\n|---|---|---|\n")
	row := func(what, got, bound string) { fmt.Fprintf(&b, "| %s | %s | %s |\n", what, got, bound) }
	row("gateways with one contiguous seq range and zero drops", fmt.Sprintf("%d of %d (%d readings delivered, %d missing)", ok, len(r.GW), reads, missing), "all, 0 missing")
	row("seq numbers a killed run had reserved, skipped by its buffer at restart (logged; not readings)", fmt.Sprintf("%d (%s)", skippedN, orNone(skippedGW)), "a gap counts as skipped only inside the logged range")
	row("reconnects (all gateways, all scenarios)", fmt.Sprint(totalRec), "—")
	dups := "none"
	if dupGW != "" {
		dups = fmt.Sprintf("%.1f readings (%s)", maxDup, dupGW)
	}
	row("duplicates per gateway per reconnect (max)", dups, "≤ window × batch_max = 1600; all removed by (bn, seq, n)")
	row("readings only one consumer got (A / B)", fmt.Sprintf("%d / %d", onlyA, onlyB), "0 (both sessions survive node loss)")
	row("consumer connection losses (A / B)", fmt.Sprintf("%d / %d", r.ConsumerLost[0], r.ConsumerLost[1]), "—")
	for _, f := range r.Failovers {
		row(fmt.Sprintf("%s: node death → first message of the next session, p50 / p99", f.What),
			fmt.Sprintf("%s / %s (%d gateways affected, %d stuck)", percentile(f.Lat, 50).Round(100*time.Millisecond), percentile(f.Lat, 99).Round(100*time.Millisecond), f.Affected, len(f.Stuck)), "every affected gateway back")
	}
	// The bound is judged on when the sessions' CONNECTs reached the
	// cluster, what the fleet's reconnect policy controls. RabbitMQ 3.10
	// holds every CONNECT (5 s, then "server unavailable") until its
	// client-id registry has a leader and answers all it holds in that
	// instant, so the sessions established, and its own "accepting MQTT
	// connection" lines (logged at that answer, without a client id: the
	// test's consumers and watcher are counted too), peak when it is ready
	// whatever the fleet does: both are shown beside the bound.
	row("whole-cluster restart: busiest second, sessions by the moment their CONNECT reached the cluster (agents' logs: connected minus connack_after)", fmt.Sprintf("%d at %s", r.BusiestArrived, r.BusiestArrivedAt.Format("15:04:05")), fmt.Sprintf("≤ %d", r.Agents/10))
	row("whole-cluster restart: busiest second, sessions established (agents' logs; RabbitMQ answers the CONNECTs it held at once when ready)", fmt.Sprintf("%d at %s", r.BusiestConnected, r.BusiestConnAt.Format("15:04:05")), "shown beside the bound")
	row("whole-cluster restart: busiest second, connections accepted (RabbitMQ logs; the test's 2 consumers and its watcher included)", fmt.Sprintf("%d at %s", r.BusiestAccepted, r.BusiestAcceptAt.Format("15:04:05")), "shown beside the bound")
	row("whole-cluster restart: last gateway reconnected after the cluster was back", r.BackAfter.Round(time.Second).String(), "—")
	cpu := 100 * r.SteadyCPU.Seconds() / r.SteadyWin.Seconds()
	row(fmt.Sprintf("steady state CPU of the agents (over %s)", r.SteadyWin.Round(time.Second)), fmt.Sprintf("%.1f %% of one core in all, %.2f %% per agent", cpu, cpu/float64(r.Agents)), "—")
	row("steady state RSS of the agents", fmt.Sprintf("%s in all, %s per agent (max %s)", mib(r.SteadyRSS), mib(r.SteadyRSS/int64(max(r.Agents, 1))), mib(r.MaxRSS)), "—")
	row("MQTT connections the cluster lists (steady state)", fmt.Sprintf("%d (%d agents + 2 consumers + 1 status watcher)", r.Connections, r.Agents), "—")
	row("late subscriber's retained `status`, per node (steady)", fmt.Sprintf("%v of %d gateways", r.RetainedSteady, r.Agents), "all (see the limit below)")
	row("late subscriber's retained `status`, per node (end; of them `online`)", fmt.Sprintf("%v (%v)", r.RetainedEnd, r.RetainedOnline), "all")
	row("session takeover (3 gateways, second connection with their client id on another node)", fmt.Sprintf("ok=%v; every one delivered again, seq contiguous", r.TakeoverOK), "one working session, no lost ack")
	row("last will on SIGKILL of a gateway (live subscriber, other node)", fmt.Sprintf("offline=%v after %s", r.WillOffline, r.WillLatency.Round(10*time.Millisecond)), "offline")
	if len(r.Problems) == 0 {
		b.WriteString("\nResult: PASS — no gateway lost a reading.\n")
	} else {
		b.WriteString("\nResult: FAIL\n\n")
		for _, p := range r.Problems {
			fmt.Fprintf(&b, "- %s\n", p)
		}
	}
	return b.String()
}

// replaceSection puts text between the fleet markers of a Markdown file.
func replaceSection(path, text string) error {
	const begin, end = "<!-- fleet:begin -->", "<!-- fleet:end -->"
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		return fmt.Errorf("%s: %w", path, errNoSection)
	}
	s = s[:i+len(begin)] + "\n" + text + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}

func orNone(ids []string) string {
	if len(ids) == 0 {
		return "none"
	}
	return short(ids)
}

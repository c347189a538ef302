package main

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// gwResult is what the consumers saw of one gateway.
type gwResult struct {
	ID        string
	Readings  int     // distinct seq values delivered
	First     int64   // lowest seq delivered
	Last      int64   // highest seq delivered
	Missing   []span  // seq ranges inside [First, Last] that never arrived
	Skipped   []span  // gaps the buffer logged as skipped after a crash (numbers reserved by a killed run, never used)
	Dropped   float64 // highest value of <id>/cityedge/dropped seen
	DupsA     int     // repeated readings in consumer A's stream
	DupsB     int     // repeated readings in consumer B's stream
	OnlyA     int     // readings only consumer A received
	OnlyB     int     // readings only consumer B received
	Reconnect int     // sessions after the first one, from the agent's log
}

type span struct{ From, To int64 }

func (s span) String() string {
	if s.From == s.To {
		return fmt.Sprint(s.From)
	}
	return fmt.Sprintf("%d-%d (%d)", s.From, s.To, s.To-s.From+1)
}

// OK says whether the gateway lost nothing: one contiguous seq range and
// no drops.
func (g gwResult) OK() bool { return g.Readings > 0 && len(g.Missing) == 0 && g.Dropped == 0 }

// DupsPerReconnect is the agent-caused duplicates per reconnect: the
// smaller of the two consumers' counts (a consumer's own reconnect adds
// redeliveries of its queue that the agent did not cause).
func (g gwResult) DupsPerReconnect() float64 {
	d := min(g.DupsA, g.DupsB)
	if g.Reconnect == 0 {
		return float64(d)
	}
	return float64(d) / float64(g.Reconnect)
}

// recKey identifies a record within one gateway's stream.
type recKey struct {
	seq int64
	n   string
}

// analyze joins both consumers' records per gateway; a reading is
// identified by (bn, seq, n), the rule README gives receivers.
//
// A gap is not a loss only when it lies wholly inside a range the gateway's
// buffer logged as skipped at start ("the last run did not close the file;
// skipping the sequence numbers it had reserved"): a run killed with SIGKILL
// had reserved a block of numbers ahead and used only part of it.
func analyze(ids []string, a, b []record, reconnects map[string]int, skipped map[string][]span) []gwResult {
	type per struct {
		seenA, seenB map[recKey]int
		seqA, seqB   map[int64]bool
		dropped      float64
	}
	gws := map[string]*per{}
	for _, id := range ids {
		gws[id] = &per{seenA: map[recKey]int{}, seenB: map[recKey]int{}, seqA: map[int64]bool{}, seqB: map[int64]bool{}}
	}
	add := func(recs []record, isA bool) {
		for _, r := range recs {
			p := gws[r.GW]
			if p == nil {
				continue
			}
			k := recKey{r.Seq, r.Name}
			if isA {
				p.seenA[k]++
				p.seqA[r.Seq] = true
			} else {
				p.seenB[k]++
				p.seqB[r.Seq] = true
			}
			if r.Name == "cityedge/dropped" && r.V > p.dropped {
				p.dropped = r.V
			}
		}
	}
	add(a, true)
	add(b, false)
	var out []gwResult
	for _, id := range ids {
		p := gws[id]
		g := gwResult{ID: id, Dropped: p.dropped, Reconnect: reconnects[id]}
		all := map[int64]bool{}
		for s := range p.seqA {
			all[s] = true
			if !p.seqB[s] {
				g.OnlyA++
			}
		}
		for s := range p.seqB {
			all[s] = true
			if !p.seqA[s] {
				g.OnlyB++
			}
		}
		g.DupsA, g.DupsB = dupReadings(p.seenA), dupReadings(p.seenB)
		seqs := make([]int64, 0, len(all))
		for s := range all {
			seqs = append(seqs, s)
		}
		sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
		g.Readings = len(seqs)
		if len(seqs) > 0 {
			g.First, g.Last = seqs[0], seqs[len(seqs)-1]
			for _, gap := range gaps(seqs) {
				if within(gap, skipped[id]) {
					g.Skipped = append(g.Skipped, gap)
				} else {
					g.Missing = append(g.Missing, gap)
				}
			}
		}
		out = append(out, g)
	}
	return out
}

// dupReadings counts extra copies of readings: for each seq the largest
// number of repeats of any of its records.
func dupReadings(seen map[recKey]int) int {
	bySeq := map[int64]int{}
	for k, n := range seen {
		if n-1 > bySeq[k.seq] {
			bySeq[k.seq] = n - 1
		}
	}
	d := 0
	for _, n := range bySeq {
		d += n
	}
	return d
}

// within reports whether gap lies wholly inside one of the ranges.
func within(gap span, ranges []span) bool {
	for _, r := range ranges {
		if gap.From >= r.From && gap.To <= r.To {
			return true
		}
	}
	return false
}

// gaps returns the ranges missing between sorted, distinct seqs.
func gaps(seqs []int64) []span {
	var out []span
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			out = append(out, span{seqs[i-1] + 1, seqs[i] - 1})
		}
	}
	return out
}

// percentile returns the p-th percentile (0–100) of ds by the nearest-rank
// method; zero for no values.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	if rank < 1 {
		rank = 1
	}
	return s[rank-1]
}

// busiest returns the second within [from, to) holding most of ts, and
// how many that is.
func busiest(ts []time.Time, from, to time.Time) (time.Time, int) {
	counts := map[int64]int{}
	var best int64
	n := 0
	for _, t := range ts {
		if t.Before(from) || !t.Before(to) {
			continue
		}
		s := t.Unix()
		counts[s]++
		if counts[s] > n || (counts[s] == n && s < best) {
			best, n = s, counts[s]
		}
	}
	if n == 0 {
		return time.Time{}, 0
	}
	return time.Unix(best, 0).UTC(), n
}

// failover measures, for each gateway connected to node url when it died
// at died, the time until the consumers first received a message the
// gateway published on its next session.
func failover(died time.Time, url string, events map[string][]logEvent, firstAfter func(gw string, t time.Time) (time.Time, bool)) (lat []time.Duration, affected int, stuck []string) {
	for gw, evs := range events {
		var cur string
		for _, ev := range evs {
			if ev.At.After(died) {
				break
			}
			if ev.Msg == "uplink: connected" {
				cur = ev.Broker
			}
		}
		if cur != url {
			continue
		}
		affected++
		var recon time.Time
		for _, ev := range evs {
			if ev.At.After(died) && ev.Msg == "uplink: connected" {
				recon = ev.At
				break
			}
		}
		if recon.IsZero() {
			stuck = append(stuck, gw)
			continue
		}
		got, ok := firstAfter(gw, recon)
		if !ok {
			stuck = append(stuck, gw)
			continue
		}
		lat = append(lat, got.Sub(died))
	}
	sort.Strings(stuck)
	return lat, affected, stuck
}

// describeLoss names what a gateway lost, for the failure message.
func describeLoss(g gwResult) string {
	var parts []string
	if g.Readings == 0 {
		parts = append(parts, "nothing delivered")
	}
	if len(g.Missing) > 0 {
		var ms []string
		for i, m := range g.Missing {
			if i == 5 {
				ms = append(ms, fmt.Sprintf("… %d ranges in all", len(g.Missing)))
				break
			}
			ms = append(ms, m.String())
		}
		parts = append(parts, "missing seq "+strings.Join(ms, ", "))
	}
	if g.Dropped > 0 {
		parts = append(parts, fmt.Sprintf("dropped counter %v", g.Dropped))
	}
	return fmt.Sprintf("%s: %s (delivered %d readings, seq %d..%d)", g.ID, strings.Join(parts, "; "), g.Readings, g.First, g.Last)
}

package main

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// result collects the verdicts of one check run.
type result struct {
	passed, failed []string
	zones          []string // zone messages captured, in order
}

func (r *result) expect(ok bool, format string, args ...any) bool {
	msg := fmt.Sprintf(format, args...)
	if ok {
		r.passed = append(r.passed, msg)
	} else {
		r.failed = append(r.failed, msg)
	}
	return ok
}

func (r *result) fail(format string, args ...any) { r.expect(false, format, args...) }

// Tolerances between the agent's integer datasheet formulas and the
// checker's floating-point ones: the resolution of the integer outputs
// (BME280 datasheet section 4.2.3: 0.01 °C, 1/256 Pa, 1/1024 %RH), widened
// to cover the two formulas' differences; the drivers round SHT3x values to
// the nanokelvin and the magnetometer's to the nanotesla.
const (
	tolBMETemp  = 0.01
	tolBMEPress = 1.0
	tolBMEHum   = 0.02
	tolSHT      = 6e-4 // the agent sends Sensirion values at 3 decimals (their 16-bit resolution)
	tolTesla    = 1e-9 // --diagnose shows µT at 2 decimals: checked with diagTesla more
	diagTesla   = 5e-9 // half of 0.01 µT
)

// expected is one quantity's expected value and unit.
type expected struct {
	q, unit string
	v, tol  float64
}

func weatherBME(i int) []expected {
	w := bmePhases[i]
	t, p, h := bmeCompensate(bmeCal, w.T, w.P, w.H)
	return []expected{{"temperature", "Cel", t, tolBMETemp}, {"humidity", "%RH", h, tolBMEHum}, {"pressure", "Pa", p, tolBMEPress}}
}

func weatherSHT(i int) []expected {
	t, h := shtConvert(shtPhases[i].T, shtPhases[i].RH)
	return []expected{{"temperature", "Cel", t, tolSHT}, {"humidity", "%RH", h, tolSHT}}
}

func magField(i int) []expected {
	f := magFields[i]
	return []expected{{"x", "T", qmcTesla(f.X), tolTesla}, {"y", "T", qmcTesla(f.Y), tolTesla}, {"z", "T", qmcTesla(f.Z), tolTesla}}
}

// point is one resolved SenML record.
type point struct {
	sensor, quantity, unit string
	num                    *float64
	flag                   *bool
	time                   time.Time
	seq                    uint64
	tq                     string // time quality: "", "corrected" or "unsynced"
}

// reading is what one sensor reported under one sequence number.
type reading struct {
	seq    uint64
	time   time.Time
	values map[string]point
}

type senmlRecord struct {
	BN  *string  `json:"bn"`
	BT  *float64 `json:"bt"`
	N   string   `json:"n"`
	U   string   `json:"u"`
	V   *float64 `json:"v"`
	VB  *bool    `json:"vb"`
	T   *float64 `json:"t"`
	Seq *uint64  `json:"seq"`
	TQ  *string  `json:"tq"`
}

// parsePack resolves one SenML pack (RFC 8428 section 4.6: base name and
// base time apply to the records after them).
func parsePack(payload string, agentID string) ([]point, error) {
	dec := json.NewDecoder(strings.NewReader(payload))
	dec.DisallowUnknownFields() // the wire contract names every field
	var recs []senmlRecord
	if err := dec.Decode(&recs); err != nil {
		return nil, fmt.Errorf("not a SenML pack: %v", err)
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("empty pack")
	}
	var bn string
	var bt float64
	var out []point
	for i, r := range recs {
		if r.BN != nil {
			bn = *r.BN
		}
		if r.BT != nil {
			bt = *r.BT
		}
		if bn != agentID+"/" {
			return nil, fmt.Errorf("record %d: base name %q, want %q", i, bn, agentID+"/")
		}
		sensor, quantity, ok := strings.Cut(r.N, "/")
		if !ok || sensor == "" || quantity == "" || strings.Contains(quantity, "/") {
			return nil, fmt.Errorf("record %d: name %q is not <sensor>/<quantity>", i, r.N)
		}
		if r.Seq == nil {
			return nil, fmt.Errorf("record %d (%s): no seq", i, r.N)
		}
		if (r.V == nil) == (r.VB == nil) {
			return nil, fmt.Errorf("record %d (%s): want exactly one of v and vb", i, r.N)
		}
		tq := ""
		if r.TQ != nil {
			if *r.TQ != "corrected" && *r.TQ != "unsynced" {
				return nil, fmt.Errorf("record %d (%s): tq %q is neither corrected nor unsynced", i, r.N, *r.TQ)
			}
			tq = *r.TQ
		}
		t := bt
		if r.T != nil {
			t += *r.T
		}
		sec, frac := math.Modf(t)
		out = append(out, point{sensor: sensor, quantity: quantity, unit: r.U, num: r.V, flag: r.VB,
			time: time.Unix(int64(sec), int64(math.Round(frac*1e3))*1e6).UTC(), seq: *r.Seq, tq: tq})
	}
	return out, nil
}

// check verifies one guest run: console is everything the guest printed,
// capture the broker's messages as "mosquitto_sub -v" printed them.
func check(agentID, console, capture string) result {
	var r result
	agentLog := checkConsole(&r, console)
	readings, statuses := parseCapture(&r, agentID, capture)
	checkZones(&r)
	checkReadings(&r, readings)
	checkOutage(&r, agentLog, readings[nameSHT])
	checkStatus(&r, statuses, readings)
	return r
}

func parseCapture(r *result, agentID, capture string) (map[string][]reading, []string) {
	prefix := "cityedge/" + agentID
	bySensor := map[string]map[uint64]*reading{}
	var statuses []string
	now := time.Now()
	bad, marked := 0, 0
	for _, line := range strings.Split(strings.TrimSpace(capture), "\n") {
		if line == "" {
			continue
		}
		topic, payload, _ := strings.Cut(line, " ")
		switch topic {
		case prefix + "/status":
			statuses = append(statuses, payload)
			continue
		case prefix + "/readings":
		case prefix + "/zones/" + zoneName:
			r.zones = append(r.zones, payload)
			continue
		default:
			if strings.HasPrefix(topic, prefix+"/diagnose/") {
				continue // --diagnose's test message to itself through the broker
			}
			r.fail("unexpected topic %q (payload %.80s)", topic, payload)
			continue
		}
		pts, err := parsePack(payload, agentID)
		if err != nil {
			r.fail("readings message %.120s: %v", payload, err)
			continue
		}
		for _, p := range pts {
			if d := p.time.Sub(now); d < -30*time.Minute || d > 5*time.Minute {
				bad++
				if bad == 1 {
					r.fail("%s/%s seq %d has time %s, %v from the host's clock: is the guest's clock set?", p.sensor, p.quantity, p.seq, p.time.Format(time.RFC3339), d.Round(time.Second))
				}
			}
			if p.tq != "" {
				marked++
			}
			m := bySensor[p.sensor]
			if m == nil {
				m = map[uint64]*reading{}
				bySensor[p.sensor] = m
			}
			rd := m[p.seq]
			if rd == nil {
				rd = &reading{seq: p.seq, time: p.time, values: map[string]point{}}
				m[p.seq] = rd
			}
			if old, dup := rd.values[p.quantity]; dup {
				// At-least-once delivery may repeat a reading; a repeat
				// must be identical.
				if !samePoint(old, p) {
					r.fail("%s/%s seq %d arrived twice with different contents", p.sensor, p.quantity, p.seq)
				}
				continue
			}
			rd.values[p.quantity] = p
		}
	}
	r.expect(marked == 0, "no record marked tq: the clock phase synchronised the guest's clock, so the shipped clock rule holds nothing (%d marked)", marked)
	out := map[string][]reading{}
	for s, m := range bySensor {
		for _, rd := range m {
			out[s] = append(out[s], *rd)
		}
		sort.Slice(out[s], func(i, j int) bool { return out[s][i].seq < out[s][j].seq })
	}
	return out, statuses
}

func samePoint(a, b point) bool {
	if a.unit != b.unit || !a.time.Equal(b.time) || (a.num == nil) != (b.num == nil) || (a.flag == nil) != (b.flag == nil) {
		return false
	}
	return (a.num == nil || *a.num == *b.num) && (a.flag == nil || *a.flag == *b.flag)
}

// matchPhase returns which of the phases the reading's values equal, or an
// explanation of why none.
func matchPhase(rd reading, phases [][]expected) (int, string) {
	var why []string
	for i, want := range phases {
		ok := true
		for _, e := range want {
			p, has := rd.values[e.q]
			switch {
			case !has:
				return -1, fmt.Sprintf("no %s", e.q)
			case p.num == nil:
				return -1, fmt.Sprintf("%s is not a number", e.q)
			case p.unit != e.unit:
				return -1, fmt.Sprintf("%s in %q, want %q", e.q, p.unit, e.unit)
			case math.Abs(*p.num-e.v) > e.tol:
				ok = false
				why = append(why, fmt.Sprintf("phase %d %s: got %v want %v ±%g", i, e.q, *p.num, e.v, e.tol))
			}
		}
		if ok {
			return i, ""
		}
	}
	return -1, strings.Join(why, "; ")
}

// runs collapses a sequence into its runs of equal values.
func runs[T comparable](seq []T) []T {
	var out []T
	for i, v := range seq {
		if i == 0 || v != seq[i-1] {
			out = append(out, v)
		}
	}
	return out
}

func checkNumeric(r *result, sensor string, rds []reading, phases [][]expected, story []int) []int {
	if !r.expect(len(rds) > 0, "%s: readings reached the broker", sensor) {
		return nil
	}
	var seq []int
	for _, rd := range rds {
		ph, why := matchPhase(rd, phases)
		if ph < 0 {
			r.fail("%s seq %d: values match no register contents the test set: %s", sensor, rd.seq, why)
			return nil
		}
		seq = append(seq, ph)
	}
	r.expect(slices.Equal(runs(seq), story), "%s: %d readings, every value as the datasheet formulas give for the registers set, in the order set (phases %v, want runs %v)",
		sensor, len(rds), seq, story)
	return seq
}

func checkReadings(r *result, bySensor map[string][]reading) {
	for s := range bySensor {
		if s != nameBay && s != nameBME && s != nameSHT && s != nameMag {
			r.fail("readings from unknown sensor %q", s)
		}
	}
	checkNumeric(r, nameBME, bySensor[nameBME], [][]expected{weatherBME(0), weatherBME(1)}, weatherStory)
	checkNumeric(r, nameSHT, bySensor[nameSHT], [][]expected{weatherSHT(0), weatherSHT(1)}, weatherStory)

	// A change of the magnetometer's occupancy is a reading of its own
	// (it ranks as occupancy, DECISIONS 8), stored just before the field
	// reading of the same sample: the next seq of the sensor.
	mag, changes := fieldReadings(bySensor[nameMag])
	phases := checkNumeric(r, nameMag, mag, [][]expected{magField(0), magField(1)}, magStory)
	if phases != nil {
		phaseOf := func(rd reading) (int, bool) {
			i := sort.Search(len(mag), func(i int) bool { return mag[i].seq >= rd.seq })
			if i == len(mag) {
				return 0, false
			}
			return phases[i], true
		}
		decided, wrong, occupied := 0, 0, 0
		for _, rd := range append(slices.Clone(mag), changes...) {
			p, has := rd.values["occupied"]
			if !has {
				continue
			}
			decided++
			ph, known := phaseOf(rd)
			if !known || p.flag == nil || *p.flag != (ph == 1) {
				wrong++
			} else if *p.flag {
				occupied++
			}
		}
		r.expect(decided > 0 && wrong == 0 && occupied > 0,
			"%s: occupancy decided in %d readings, true exactly while the car's field was set (%d wrong, %d occupied)", nameMag, decided, wrong, occupied)
	}

	bay := bySensor[nameBay]
	var states []bool
	for _, rd := range bay {
		p, has := rd.values["occupied"]
		if !has || p.flag == nil || len(rd.values) != 1 {
			r.fail("%s seq %d: want only a boolean occupied, got %v", nameBay, rd.seq, rd.values)
			return
		}
		states = append(states, *p.flag)
	}
	if !r.expect(slices.Equal(runs(states), bayStory), "%s: occupancy changes %v, want %v", nameBay, runs(states), bayStory) {
		return
	}
	// Repeats of a state are periodic reports, at most one per interval;
	// anything more is a change reported twice (bounce let through).
	span := bay[len(bay)-1].time.Sub(bay[0].time)
	repeats := len(states) - len(runs(states))
	r.expect(repeats <= int(span/bayInterval), "%s: each change reported once, debounced (%d reports, %d repeats over %v, periodic interval %v)",
		nameBay, len(states), repeats, span.Round(time.Millisecond), bayInterval)
}

// fieldReadings splits a magnetometer's readings into those with the field
// and those that only carry an occupancy change.
func fieldReadings(rds []reading) (field, changes []reading) {
	for _, rd := range rds {
		if _, ok := rd.values["occupied"]; ok && len(rd.values) == 1 {
			changes = append(changes, rd)
		} else {
			field = append(field, rd)
		}
	}
	return field, changes
}

// agentStatus is the part of the retained status message the checker reads.
type agentStatus struct {
	State   string `json:"state"`
	Backlog *int   `json:"backlog"`
	Dropped *int   `json:"dropped"`
	Sensors map[string]struct {
		Readings int `json:"readings"`
		Errors   int `json:"errors"`
	} `json:"sensors"`
}

func checkStatus(r *result, statuses []string, readings map[string][]reading) {
	var states []string
	var last agentStatus
	for _, s := range statuses {
		var st agentStatus
		if err := json.Unmarshal([]byte(s), &st); err != nil {
			r.fail("status %.80s: %v", s, err)
			continue
		}
		states = append(states, st.State)
		last = st
	}
	if !r.expect(slices.Contains(states, "online") && len(states) > 0 && states[len(states)-1] == "offline",
		"status: online while running, offline after the agent stopped (got %v)", states) {
		return
	}
	if !r.expect(last.Backlog != nil && last.Dropped != nil && *last.Dropped == 0,
		"status: the final status has a backlog and nothing dropped (backlog %v, dropped %v)", deref(last.Backlog), deref(last.Dropped)) {
		return
	}
	if last.Sensors == nil {
		return // per-sensor counters are optional in the status contract
	}
	// Every reading the agent counted reached the broker, except those it
	// still held (backlog: sent but unacknowledged, or not sent yet, when
	// it stopped); none failed.
	counted, received := 0, 0
	for _, name := range []string{nameBay, nameBME, nameSHT, nameMag} {
		st, ok := last.Sensors[name]
		// Only the unplugged chip may, and must, have failed.
		// A sample is one reading, plus one for an occupancy change it
		// brought (fieldReadings): count the samples.
		got := readings[name]
		if name == nameMag {
			got, _ = fieldReadings(got)
		}
		r.expect(ok && (st.Errors > 0) == (name == nameSHT) && st.Readings >= len(got),
			"status: sensor %s took %d readings with %d errors; %d reached the broker", name, st.Readings, st.Errors, len(got))
		counted += st.Readings
		received += len(got)
	}
	r.expect(counted-received <= *last.Backlog, "status: %d readings taken, %d received, %d still in the agent's buffer", counted, received, *last.Backlog)
}

func deref(p *int) any {
	if p == nil {
		return "none"
	}
	return *p
}

// Console checks. The guest's /init prefixes what each program printed.
var (
	kernelTrouble = regexp.MustCompile(`Oops|BUG:|WARNING: CPU|Unable to handle kernel|Kernel panic|Call trace:|general protection`)
	exitLine      = regexp.MustCompile(`VMTEST: (\w+) exit (\d+)`)
	diagValue     = regexp.MustCompile(`(\w+)=([^ ,]+)(?: (µT)\b)?`)
	hexAddr       = regexp.MustCompile(`\b0x([0-9a-fA-F]{1,2})\b`)
	diagSummary   = regexp.MustCompile(`^\d+ passed, \d+ warnings?, (\d+) failed$`)
	runsAs        = regexp.MustCompile(`VMTEST: agent runs as user (\S*) with groups(.*)`)
)

// simulated are the addresses a scan must find, no more, no less.
var simulated = []int{addrQMC, addrSHT, addrSign, addrBME}

// checkConsole checks what the guest printed and returns the agent's log.
func checkConsole(r *result, console string) []string {
	lines := strings.Split(strings.ReplaceAll(console, "\r", ""), "\n")
	var i2cdetect, diag, agent []string
	exits := map[string]int{}
	done := false
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "i2cdetect| "):
			i2cdetect = append(i2cdetect, strings.TrimPrefix(l, "i2cdetect| "))
		case strings.HasPrefix(l, "diagnose| "):
			diag = append(diag, strings.TrimPrefix(l, "diagnose| "))
		case strings.HasPrefix(l, "agent| "):
			agent = append(agent, strings.TrimPrefix(l, "agent| "))
		case strings.Contains(l, "VMTEST-FAIL:"):
			r.fail("guest: %s", l[strings.Index(l, "VMTEST-FAIL:"):])
		case strings.Contains(l, "VMTEST: done"):
			done = true
		}
		if m := exitLine.FindStringSubmatch(l); m != nil {
			exits[m[1]], _ = strconv.Atoi(m[2])
		}
		if kernelTrouble.MatchString(l) {
			r.fail("kernel: %s", strings.TrimSpace(l))
		}
	}
	r.expect(done, "guest ran the whole scenario and powered off")
	checkSigns(r, lines)

	found := scanGrid(i2cdetect)
	r.expect(slices.Equal(found, simulated), "i2cdetect on bus %d finds exactly the simulated chips: %s (want %s)", i2cBus, addrs(found), addrs(simulated))

	checkDiagnose(r, diag, exits)

	user, groups := "", []string(nil)
	for _, l := range lines {
		if m := runsAs.FindStringSubmatch(l); m != nil {
			user, groups = m[1], strings.Fields(m[2])
		}
	}
	r.expect(user == "cityedge" && slices.Contains(groups, "i2c") && slices.Contains(groups, "gpio"),
		"the agent runs as user cityedge with groups i2c and gpio, as scripts/systemd deploys it (user %q, groups %v)", user, groups)

	code, ran := exits["agent"]
	r.expect(ran && code == 0, "agent stopped by SIGTERM exits 0 (exit %d, ran %t)", code, ran)
	var errs []string
	for _, l := range agent {
		if strings.Contains(l, "level=ERROR") {
			errs = append(errs, l)
		}
	}
	r.expect(len(errs) == 0, "agent logged no errors %v", errs)
	return agent
}

var (
	logTime   = regexp.MustCompile(`^time=(\S+) `)
	logErr    = regexp.MustCompile(` err="([^"]*)"`)
	enxioText = "no such device or address" // strerror(ENXIO): the kernel's "address not acknowledged"
)

// checkOutage checks the agent's handling of the SHT3x that was unplugged
// and plugged back: it logged the kernel's NACK, re-opened the sensor, sent
// no reading while the chip was away, and read again after.
func checkOutage(r *result, agentLog []string, rds []reading) {
	var failed, recovered time.Time
	var why string
	for _, l := range agentLog {
		if !strings.Contains(l, " sensor="+nameSHT+" ") && !strings.HasSuffix(l, " sensor="+nameSHT) {
			continue
		}
		m := logTime.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			continue
		}
		switch {
		case strings.Contains(l, `msg="sensor failed"`) && failed.IsZero():
			failed = t
			if e := logErr.FindStringSubmatch(l); e != nil {
				why = e[1]
			}
		case strings.Contains(l, `msg="sensor recovered"`) && !failed.IsZero() && recovered.IsZero():
			recovered = t
		}
	}
	if !r.expect(!failed.IsZero() && strings.Contains(why, enxioText),
		"%s unplugged: the agent logged the failure with the kernel's NACK (%q)", nameSHT, why) {
		return
	}
	if !r.expect(!recovered.IsZero(), "%s plugged back: the agent logged its recovery", nameSHT) {
		return
	}
	during, after := 0, 0
	for _, rd := range rds {
		switch {
		case rd.time.After(failed) && rd.time.Before(recovered):
			during++
		case !rd.time.Before(recovered):
			after++
		}
	}
	r.expect(during == 0 && after > 0, "%s: no reading while the chip was away (%d from %s to %s), %d after it came back",
		nameSHT, during, failed.Format("15:04:05.000"), recovered.Format("15:04:05.000"), after)
}

func addrs(a []int) string {
	s := make([]string, len(a))
	for i, v := range a {
		s[i] = fmt.Sprintf("0x%02x", v)
	}
	return "[" + strings.Join(s, " ") + "]"
}

// scanGrid reads i2cdetect's table: rows "10: -- -- 12 ...", where a cell
// shows the address when a chip answered and UU when a kernel driver holds
// it.
func scanGrid(rows []string) []int {
	var found []int
	for _, row := range rows {
		head, cells, ok := strings.Cut(row, ":")
		base, err := strconv.ParseUint(strings.TrimSpace(head), 16, 8)
		if !ok || err != nil || len(head) != 2 {
			continue
		}
		for j := 0; 1+3*j+2 <= len(cells) && j < 16; j++ {
			cell := cells[1+3*j : 1+3*j+2]
			if cell == "UU" {
				found = append(found, int(base)+j)
			} else if v, err := strconv.ParseUint(cell, 16, 8); err == nil && int(v) == int(base)+j {
				found = append(found, int(v))
			}
		}
	}
	sort.Ints(found)
	return found
}

// checkDiagnose verifies the report of `cityedge --diagnose`: it passed, and
// each sensor line shows the values of the first phase.
func checkDiagnose(r *result, diag []string, exits map[string]int) {
	code, ran := exits["diagnose"]
	r.expect(ran && code == 0, "cityedge --diagnose exits 0 (exit %d, ran %t)", code, ran)
	want := map[string][]expected{
		nameBME: weatherBME(0),
		nameSHT: weatherSHT(0),
		nameMag: magField(0),
	}
	seen := map[string]bool{}
	var scan []string
	summary := false
	for _, l := range diag {
		if m := diagSummary.FindStringSubmatch(l); m != nil {
			summary = true
			r.expect(m[1] == "0", "diagnose summary: %s", l)
			continue
		}
		f := strings.Fields(l)
		if len(f) < 3 || (f[0] != "PASS" && f[0] != "WARN") {
			// A FAIL, or anything else (a panic, a usage message).
			r.fail("diagnose: %s", l)
			continue
		}
		area, name := f[1], f[2]
		// The I2C scan's line ("i2c bus 1  0x0d could be ..."); "scan" for
		// a wording that names it.
		if area == "i2c" || strings.Contains(strings.ToLower(l), "scan") {
			scan = append(scan, l)
		}
		if area != "sensor" {
			continue
		}
		seen[name] = true
		vals := map[string]string{}
		micro := map[string]bool{} // shown in µT
		for _, m := range diagValue.FindAllStringSubmatch(l, -1) {
			vals[m[1]], micro[m[1]] = m[2], m[3] == "µT"
		}
		if name == nameBay {
			r.expect(vals["occupied"] == "false", "diagnose reads %s: occupied=%s (want false)", name, vals["occupied"])
			continue
		}
		for _, e := range want[name] {
			v, err := strconv.ParseFloat(vals[e.q], 64)
			tol := e.tol
			if micro[e.q] {
				v, tol = v*1e-6, tol+diagTesla
			}
			// The report prints values at the source's precision.
			r.expect(err == nil && math.Abs(v-e.v) <= tol+math.Abs(e.v)*1e-5,
				"diagnose reads %s: %s=%s (want %.6g)", name, e.q, vals[e.q], e.v)
		}
	}
	for _, s := range []string{nameBay, nameBME, nameSHT, nameMag} {
		r.expect(seen[s], "diagnose reports sensor %s", s)
	}
	r.expect(summary, "diagnose prints its summary line")
	if !r.expect(len(scan) > 0, "diagnose scans the I2C bus") {
		return
	}
	var found []int
	for _, l := range scan {
		for _, m := range hexAddr.FindAllStringSubmatch(l, -1) {
			v, _ := strconv.ParseUint(m[1], 16, 8)
			if !slices.Contains(found, int(v)) {
				found = append(found, int(v))
			}
		}
	}
	sort.Ints(found)
	r.expect(slices.Equal(found, simulated), "diagnose's I2C scan finds exactly the simulated chips: %s (want %s)", addrs(found), addrs(simulated))
}

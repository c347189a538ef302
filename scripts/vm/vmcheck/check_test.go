package main

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

// synthRun is a guest run made up from the scenario: what a correct agent
// prints and publishes. Test cases break one thing each and expect the
// checker to say so.
type synthRun struct {
	console  []string
	readings []synthReading
	statuses []map[string]any
	zones    []string
}

type synthVal struct {
	q, u string
	v    float64
	b    *bool
}

type synthReading struct {
	sensor string
	t      time.Time
	seq    uint64
	vals   []synthVal
}

func flag(b bool) *bool { return &b }

func numbers(e []expected) []synthVal {
	out := make([]synthVal, len(e))
	for i, x := range e {
		out[i] = synthVal{q: x.q, u: x.unit, v: x.v}
	}
	return out
}

const testAgent = "gw-test"

var i2cdetectGrid = []string{
	"     0  1  2  3  4  5  6  7  8  9  a  b  c  d  e  f",
	"00:          -- -- -- -- -- -- -- -- -- -- 0d -- -- ",
	"10: -- -- -- -- -- -- -- -- -- -- -- -- -- -- -- -- ",
	"40: -- -- -- -- 44 -- -- -- -- -- -- -- -- -- -- -- ",
	"70: 70 -- -- -- -- -- 76 --                         ",
}

func goodRun() *synthRun {
	r := &synthRun{}
	t := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	seq := uint64(1000)
	add := func(sensor string, vals []synthVal) {
		seq++
		t = t.Add(100 * time.Millisecond)
		r.readings = append(r.readings, synthReading{sensor: sensor, t: t, seq: seq, vals: vals})
	}
	bay := func(b bool) { add(nameBay, []synthVal{{q: "occupied", b: flag(b)}}) }
	mag := func(phase int, occupied *bool) {
		vals := numbers(magField(phase))
		if occupied != nil {
			vals = append(vals, synthVal{q: "occupied", b: occupied})
		}
		add(nameMag, vals)
	}
	bay(false)
	for i := range 4 {
		var occ *bool
		if i >= 2 {
			occ = flag(false)
		}
		mag(0, occ)
		add(nameBME, numbers(weatherBME(0)))
		add(nameSHT, numbers(weatherSHT(0)))
	}
	bay(true)
	mag(1, flag(true))
	add(nameBME, numbers(weatherBME(1)))
	add(nameSHT, numbers(weatherSHT(1)))
	// The SHT3x is unplugged for 3 s.
	failed := t.Add(50 * time.Millisecond)
	t = t.Add(3 * time.Second)
	recovered := t
	for range 2 {
		mag(1, flag(true))
		add(nameBME, numbers(weatherBME(1)))
		add(nameSHT, numbers(weatherSHT(1)))
	}
	bay(false)
	for range 3 {
		mag(0, flag(false))
		add(nameBME, numbers(weatherBME(1)))
	}
	counts := map[string]any{}
	for _, s := range []string{nameBay, nameBME, nameSHT, nameMag} {
		n := 0
		for _, rd := range r.readings {
			if rd.sensor == s {
				n++
			}
		}
		errs := 0
		if s == nameSHT {
			errs = 3
		}
		counts[s] = map[string]any{"readings": n, "errors": errs}
	}
	r.statuses = []map[string]any{
		{"state": "online", "backlog": 0, "dropped": 0},
		{"state": "offline", "backlog": 0, "dropped": 0, "sensors": counts},
	}

	zone := func(free, occ, unk, seq int) string {
		return fmt.Sprintf(`{"zone":"curb","free":%d,"occupied":%d,"unknown":%d,"total":2,"changed":"2026-01-01T00:00:00.000Z","seq":%d}`, free, occ, unk, seq)
	}
	r.zones = []string{zone(0, 0, 2, 1), zone(1, 0, 1, 2), zone(2, 0, 0, 3), zone(1, 1, 0, 4), zone(0, 2, 0, 5),
		zone(0, 1, 1, 6), zone(1, 1, 0, 7), zone(2, 0, 0, 8), zone(0, 0, 2, 9)}
	r.console = append(r.console, "VMTEST: start aarch64 6.1.0-50-arm64, 2026-01-01T00:00:00Z")
	for _, l := range i2cdetectGrid {
		r.console = append(r.console, "i2cdetect| "+l)
	}
	diag := func(name string, e []expected) string {
		parts := make([]string, len(e))
		for i, x := range e {
			parts[i] = fmt.Sprintf("%s=%.6g %s", x.q, x.v, x.unit)
			if x.unit == "T" { // as --diagnose shows tesla
				parts[i] = fmt.Sprintf("%s=%s µT", x.q, strconv.FormatFloat(math.Round(x.v*1e8)/100, 'f', -1, 64))
			}
		}
		return fmt.Sprintf("diagnose| PASS  sensor %s  bus 1 address 0x76 (chip): %s", name, strings.Join(parts, ", "))
	}
	stamp := func(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
	r.console = append(r.console,
		"diagnose| PASS  config /etc/cityedge/cityedge.toml  4 sensors, 1 brokers, agent gw-test",
		"diagnose| PASS  sensor bay-17  pin GPIO17 (gpio-presence(GPIO17, active Low)): occupied=false",
		diag(nameBME, weatherBME(0)), diag(nameSHT, weatherSHT(0)), diag(nameMag, magField(0)),
		"diagnose| PASS  i2c bus 1  0x0d could be qmc5883l (configured: bay-18-mag); 0x44 could be sht3x/sht4x (configured: air-2); 0x70 unknown device (configured: curb-sign); 0x76 could be bme280 (configured: air-1)",
		"diagnose| PASS  zone curb  2 bays (bay-17, bay-18-mag); counted by the running agent",
		"diagnose| PASS  sign curb-sign  bus 1 address 0x70: blanked: shows \"----\" (lamps off), as a stopped agent leaves it",
		"diagnose| WARN  buffer /var/lib/cityedge/buffer.db  no buffer file yet",
		"diagnose| 6 passed, 1 warning, 0 failed",
		"VMTEST: diagnose exit 0",
		"VMTEST: agent runs as user cityedge with groups gpio i2c cityedge",
		"VMSIGN: empty ram=00 00 00 00 00 00 00 00 5b 00 00 00 00 00 00 00 lamp=0",
		"VMSIGN: car ram=71 00 3e 00 00 00 38 00 38 00 00 00 00 00 00 00 lamp=1",
		"VMTEST: agent exit 0",
		"VMSIGN: stopped ram=40 00 40 00 00 00 40 00 40 00 00 00 00 00 00 00 lamp=0",
		`agent| time=`+stamp(r.readings[0].t)+` level=INFO msg="uplink: connected"`,
		`agent| time=`+stamp(failed)+` level=WARN msg="sensor failed" sensor=air-2 stage=read err="sht3x: measure: command 0x2400: sysfs-i2c: no such device or address" failures_in_a_row=1`,
		`agent| time=`+stamp(failed.Add(2*time.Second))+` level=WARN msg="sensor halted, reopening" sensor=air-2 err="sht3x: measure: command 0x2400: sysfs-i2c: no such device or address"`,
		`agent| time=`+stamp(recovered)+` level=INFO msg="sensor recovered" sensor=air-2 after_failures=3`,
		"i2csim| bme280 at 0x76: writes 35 reads 20 nacks 0",
		"VMTEST: done",
		"VMTEST: powering off",
	)
	return r
}

// capture renders the run as mosquitto_sub -v prints it: one pack per
// reading, the time relative to a base time as the agent writes it.
func (r *synthRun) capture() string {
	var b strings.Builder
	status := func(st map[string]any) {
		j, _ := json.Marshal(st)
		fmt.Fprintf(&b, "cityedge/%s/status %s\n", testAgent, j)
	}
	status(r.statuses[0])
	for _, rd := range r.readings {
		var recs []map[string]any
		bt := float64(rd.t.UnixMilli()-50) / 1e3
		for i, v := range rd.vals {
			rec := map[string]any{"n": rd.sensor + "/" + v.q, "t": 0.05, "seq": rd.seq}
			if i == 0 {
				rec["bn"], rec["bt"] = testAgent+"/", bt
			}
			if v.b != nil {
				rec["vb"] = *v.b
			} else {
				rec["v"], rec["u"] = v.v, v.u
			}
			recs = append(recs, rec)
		}
		j, _ := json.Marshal(recs)
		fmt.Fprintf(&b, "cityedge/%s/readings %s\n", testAgent, j)
	}
	for _, z := range r.zones {
		fmt.Fprintf(&b, "cityedge/%s/zones/curb %s\n", testAgent, z)
	}
	for _, st := range r.statuses[1:] {
		status(st)
	}
	return b.String()
}

// find returns the index of the first reading of sensor after index from.
func (r *synthRun) find(sensor string, from int) int {
	for i := from; i < len(r.readings); i++ {
		if r.readings[i].sensor == sensor {
			return i
		}
	}
	panic("no reading of " + sensor)
}

// last returns the index of the last reading of sensor.
func (r *synthRun) last(sensor string) int {
	for i := len(r.readings) - 1; i >= 0; i-- {
		if r.readings[i].sensor == sensor {
			return i
		}
	}
	panic("no reading of " + sensor)
}

func (r *synthRun) replaceConsole(old, new string) {
	for i, l := range r.console {
		if strings.Contains(l, old) {
			r.console[i] = strings.Replace(l, old, new, 1)
			return
		}
	}
	panic("no console line with " + old)
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name     string
		mutate   func(r *synthRun)
		wantFail string // "" means every check passes
	}{
		{"a correct run", func(*synthRun) {}, ""},
		{"a sign left showing a count", func(r *synthRun) {
			r.replaceConsole("VMSIGN: stopped ram=40 00 40 00 00 00 40 00 40", "VMSIGN: stopped ram=00 00 00 00 00 00 00 00 5b")
		}, "stopped: the HT16K33 received RAM"},
		{"the lamp off while the zone is full", func(r *synthRun) {
			r.replaceConsole("38 00 00 00 00 00 00 00 lamp=1", "38 00 00 00 00 00 00 00 lamp=0")
		}, "car: the HT16K33"},
		{"an unknown bay counted as free", func(r *synthRun) {
			r.zones[1] = strings.Replace(r.zones[1], `"free":1,"occupied":0,"unknown":1`, `"free":2,"occupied":0,"unknown":1`, 1)
		}, "counts must add up"},
		{"the zone left full after a clean stop", func(r *synthRun) { r.zones = r.zones[:len(r.zones)-1] }, "clean stop"},
		{"an identical redelivery is accepted", func(r *synthRun) {
			r.readings = append(r.readings, r.readings[3])
		}, ""},
		{"a redelivery with other contents", func(r *synthRun) {
			d := r.readings[r.find(nameBME, 0)]
			d.vals = numbers(weatherBME(1))
			r.readings = append(r.readings, d)
		}, "arrived twice with different contents"},
		{"contact bounce reported as changes", func(r *synthRun) {
			i := r.find(nameBay, 1)
			extra := []synthReading{r.readings[i], r.readings[i]}
			extra[0].seq, extra[0].vals = r.readings[i].seq+1000, []synthVal{{q: "occupied", b: flag(false)}}
			extra[1].seq = r.readings[i].seq + 1001
			r.readings = append(r.readings, extra...)
		}, "bay-17: occupancy changes"},
		{"a change reported twice", func(r *synthRun) {
			d := r.readings[r.find(nameBay, 1)]
			d.seq++ // right after the first report of the change
			d.t = d.t.Add(time.Second)
			r.readings = append(r.readings, d)
		}, "each change reported once"},
		{"a temperature off by 0.05 °C", func(r *synthRun) {
			r.readings[r.find(nameBME, 0)].vals[0].v += 0.05
		}, "air-1 seq"},
		{"a magnetometer axis off by 10 nT", func(r *synthRun) {
			r.readings[r.find(nameMag, 0)].vals[2].v += 10e-9
		}, "bay-18-mag seq"},
		{"pressure in hPa", func(r *synthRun) {
			i := r.find(nameBME, 0)
			r.readings[i].vals[2].u, r.readings[i].vals[2].v = "hPa", r.readings[i].vals[2].v/100
		}, "pressure in \"hPa\""},
		{"weather back to the old registers", func(r *synthRun) {
			i := r.last(nameSHT)
			r.readings[i].vals = numbers(weatherSHT(0))
		}, "air-2: 7 readings"},
		{"the magnetometer never sees the car", func(r *synthRun) {
			for i := range r.readings {
				if r.readings[i].sensor == nameMag {
					r.readings[i].vals = append(numbers(magField(0)), r.readings[i].vals[3:]...)
				}
			}
		}, "bay-18-mag: 10 readings"},
		{"occupancy of the magnetometer wrong", func(r *synthRun) {
			i := r.find(nameMag, r.find(nameBay, 1))
			*r.readings[i].vals[3].b = false
		}, "true exactly while the car's field was set"},
		{"no readings of a sensor", func(r *synthRun) {
			var keep []synthReading
			for _, rd := range r.readings {
				if rd.sensor != nameSHT {
					keep = append(keep, rd)
				}
			}
			r.readings = keep
		}, "air-2: readings reached the broker"},
		{"no offline status", func(r *synthRun) { r.statuses = r.statuses[:1] }, "offline after the agent stopped"},
		{"an error counted on a chip that never failed", func(r *synthRun) {
			r.statuses[1]["sensors"].(map[string]any)[nameBME] = map[string]any{"readings": 10, "errors": 1}
		}, "sensor air-1 took 10 readings with 1 errors"},
		{"no error counted for the unplugged chip", func(r *synthRun) {
			r.statuses[1]["sensors"].(map[string]any)[nameSHT] = map[string]any{"readings": 7, "errors": 0}
		}, "sensor air-2 took 7 readings with 0 errors"},
		{"a reading while the chip was unplugged", func(r *synthRun) {
			i := r.find(nameSHT, r.find(nameBay, 1))
			d := r.readings[i]
			d.seq, d.t = d.seq+1, d.t.Add(time.Second)
			r.readings = append(r.readings, d)
		}, "no reading while the chip was away (1 from"},
		{"the failure is not the kernel's NACK", func(r *synthRun) {
			r.replaceConsole("no such device or address", "CRC mismatch")
		}, "logged the failure with the kernel's NACK"},
		{"no recovery", func(r *synthRun) {
			r.replaceConsole(`msg="sensor recovered"`, `msg="sensor still failing"`)
		}, "logged its recovery"},
		{"readings lost", func(r *synthRun) {
			r.readings = r.readings[:len(r.readings)-1]
		}, "readings taken"},
		{"the guest's clock in 1970", func(r *synthRun) {
			for i := range r.readings {
				r.readings[i].t = time.UnixMilli(r.readings[i].t.UnixMilli() % 1e9)
			}
		}, "is the guest's clock set?"},
		{"a chip too many on the bus", func(r *synthRun) { r.replaceConsole("10: -- --", "10: 10 --") }, "i2cdetect on bus 1"},
		{"a chip missing on the bus", func(r *synthRun) { r.replaceConsole(" 44 ", " -- ") }, "i2cdetect on bus 1"},
		{"diagnose fails a check", func(r *synthRun) { r.replaceConsole("diagnose| WARN  buffer", "diagnose| FAIL  buffer") }, "diagnose: FAIL"},
		{"diagnose exits 1", func(r *synthRun) { r.replaceConsole("diagnose exit 0", "diagnose exit 1") }, "--diagnose exits 0"},
		{"diagnose reads a wrong value", func(r *synthRun) { r.replaceConsole("temperature=25 Cel", "temperature=24.9 Cel") }, "diagnose reads air-2: temperature"},
		{"diagnose scans a chip too many", func(r *synthRun) {
			r.replaceConsole("; 0x76 could be", "; 0x50 (no driver); 0x76 could be")
		}, "diagnose's I2C scan"},
		{"diagnose misses a chip", func(r *synthRun) {
			r.replaceConsole("0x44 could be sht3x/sht4x (configured: air-2); ", "")
		}, "diagnose's I2C scan"},
		{"diagnose does not scan", func(r *synthRun) { r.replaceConsole("PASS  i2c bus 1", "PASS  other bus 1") }, "diagnose scans the I2C bus"},
		{"diagnose counts a failure", func(r *synthRun) { r.replaceConsole("1 warning, 0 failed", "1 warning, 1 failed") }, "diagnose summary"},
		{"diagnose panics", func(r *synthRun) {
			r.console = append(r.console, "diagnose| panic: runtime error: invalid memory address or nil pointer dereference")
		}, "diagnose: panic"},
		{"the agent logs an error", func(r *synthRun) {
			r.console = append(r.console, `agent| time=2026-01-01T00:00:02Z level=ERROR msg="sensor failed" sensor=air-1`)
		}, "agent logged no errors"},
		{"the agent runs as root", func(r *synthRun) { r.replaceConsole("as user cityedge", "as user root") }, "runs as user cityedge"},
		{"the agent lacks the gpio group", func(r *synthRun) { r.replaceConsole("groups gpio i2c", "groups i2c") }, "runs as user cityedge"},
		{"the agent exits 1 on SIGTERM", func(r *synthRun) { r.replaceConsole("agent exit 0", "agent exit 1") }, "agent stopped by SIGTERM"},
		{"the guest stops early", func(r *synthRun) { r.replaceConsole("VMTEST: done", "VMTEST: stopping") }, "guest ran the whole scenario"},
		{"a kernel oops", func(r *synthRun) {
			r.console = append(r.console, "dmesg| [   3.1] Unable to handle kernel NULL pointer dereference at virtual address 0")
		}, "kernel: "},
		{"the guest's own failure", func(r *synthRun) {
			r.console = append(r.console, "VMTEST-FAIL: insmod gpio-sim")
		}, "guest: VMTEST-FAIL: insmod gpio-sim"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			run := goodRun()
			tc.mutate(run)
			res := check(testAgent, strings.Join(run.console, "\r\n"), run.capture())
			if tc.wantFail == "" {
				if len(res.failed) > 0 {
					t.Fatalf("want every check to pass, failed:\n%s", strings.Join(res.failed, "\n"))
				}
				if len(res.passed) < 25 {
					t.Fatalf("only %d checks ran:\n%s", len(res.passed), strings.Join(res.passed, "\n"))
				}
				return
			}
			for _, f := range res.failed {
				if strings.Contains(f, tc.wantFail) {
					return
				}
			}
			t.Fatalf("want a failure containing %q, failed:\n%s", tc.wantFail, strings.Join(res.failed, "\n"))
		})
	}
}

func TestParsePackRejects(t *testing.T) {
	tests := []struct{ name, payload, want string }{
		{"not JSON", `{"bn":`, "not a SenML pack"},
		{"empty", `[]`, "empty pack"},
		{"other agent", `[{"bn":"gw-other/","bt":1,"n":"a/b","v":1,"seq":1}]`, "base name"},
		{"no quantity", `[{"bn":"gw-test/","bt":1,"n":"air-1","v":1,"seq":1}]`, "not <sensor>/<quantity>"},
		{"no seq", `[{"bn":"gw-test/","bt":1,"n":"a/b","v":1}]`, "no seq"},
		{"v and vb", `[{"bn":"gw-test/","bt":1,"n":"a/b","v":1,"vb":true,"seq":1}]`, "exactly one of v and vb"},
		{"unknown field", `[{"bn":"gw-test/","bt":1,"n":"a/b","v":1,"seq":1,"ut":5}]`, "unknown field"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parsePack(tc.payload, testAgent)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("parsePack(%s) = %v, want an error containing %q", tc.payload, err, tc.want)
			}
		})
	}
}

func TestParsePackResolvesBaseValues(t *testing.T) {
	pts, err := parsePack(`[{"bn":"gw-test/","bt":1700000000.5,"n":"bay/occupied","vb":true,"seq":7},{"n":"air/temperature","u":"Cel","v":21.5,"t":0.25,"seq":8}]`, testAgent)
	if err != nil {
		t.Fatal(err)
	}
	if len(pts) != 2 || pts[1].sensor != "air" || pts[1].quantity != "temperature" || *pts[1].num != 21.5 || pts[1].seq != 8 {
		t.Fatalf("got %+v", pts)
	}
	if want := time.UnixMilli(1700000000750).UTC(); !pts[1].time.Equal(want) {
		t.Fatalf("time %v, want %v", pts[1].time, want)
	}
}

func TestScanGrid(t *testing.T) {
	got := scanGrid(append(i2cdetectGrid, "50: UU -- -- -- -- -- -- -- -- -- -- -- -- -- -- -- "))
	want := []int{0x0d, 0x44, 0x50, 0x70, 0x76}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("scanGrid = %s, want %s", addrs(got), addrs(want))
	}
}

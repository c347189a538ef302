// Package diagnose is `cityedge --diagnose`: one Pass of checks over the
// configuration, sensors and buses, buffer, disk, clock, certificates and
// brokers, each with a verdict (PASS, WARN, FAIL), printed as text or JSON.
// While the agent runs, its live state comes over the control socket
// (agent.Query) and the hardware and buffer are left to it.
package diagnose

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cityedge/cityedge/buffer"
	"github.com/cityedge/cityedge/certs"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/agent"
	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/catalog"
	"github.com/cityedge/cityedge/uplink"
	"golang.org/x/sys/unix"
	"periph.io/x/conn/v3/gpio"
)

// Verdicts of a diagnostic Check.
const (
	Pass = "PASS"
	Warn = "WARN"
	Fail = "FAIL"
)

// Check is one line of the report.
type Check struct {
	Area    string `json:"area"`
	Name    string `json:"name"`
	Verdict string `json:"verdict"`
	Detail  string `json:"detail"`
}

// Each check has its own deadline, so one hung bus or broker never hangs the
// report; checks run side by side so the whole report stays well under 15 s.
const (
	checkTimeout  = 4 * time.Second
	sensorTimeout = 8 * time.Second // an SCD4x needs 5 s for its first value
)

// report collects checks from concurrent goroutines in a stable order.
type report struct {
	mu     sync.Mutex
	checks []Check
	wg     sync.WaitGroup
}

// slot reserves a line now and lets a goroutine fill it later.
func (r *report) slot(area, name string) func(verdict, format string, args ...any) {
	r.mu.Lock()
	i := len(r.checks)
	r.checks = append(r.checks, Check{Area: area, Name: name, Verdict: Fail, Detail: "not checked"})
	r.mu.Unlock()
	return func(verdict, format string, args ...any) {
		r.mu.Lock()
		r.checks[i].Verdict, r.checks[i].Detail = verdict, fmt.Sprintf(format, args...)
		r.mu.Unlock()
	}
}

func (r *report) add(area, name, verdict, format string, args ...any) {
	r.slot(area, name)(verdict, format, args...)
}

// async runs f in the background with its own timeout, filling a slot; wg
// counts it.
func (r *report) async(ctx context.Context, wg *sync.WaitGroup, area, name string, timeout time.Duration, f func(ctx context.Context) (string, string)) {
	set := r.slot(area, name)
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		done := make(chan [2]string, 1)
		go func() {
			v, d := f(ctx)
			done <- [2]string{v, d}
		}()
		select {
		case res := <-done:
			set(res[0], "%s", res[1])
		case <-ctx.Done():
			set(Fail, "no answer within %v", timeout)
		}
	}()
}

// Options are the command line's choices for a report.
type Options struct {
	Simulate bool // check simulated hardware (--simulate)
	JSON     bool // print JSON (--json)
	// Live is the running agent's own state (the remote diagnose command):
	// the report is made from it, the hardware and the buffer are left alone.
	Live     *agent.LiveState
	SignTest bool // light every sign in full (--sign-test)
}

// Run checks everything once, prints the report to stdout and reports
// whether every check passed or only warned.
func Run(ctx context.Context, cfg *config.Config, o Options, stdout io.Writer) (ok bool) {
	r := &report{}
	quiet := slog.New(slog.DiscardHandler)
	r.add("config", cfg.Path(), Pass, "valid: agent %s, %s, %s%s", cfg.Agent.ID, plural(len(cfg.Sensors), "sensor"), outputsNote(cfg), configNote(cfg))

	live, sock := o.Live, "in-process"
	if live == nil {
		live, sock = agent.Query(ctx, cfg, quiet)
	}
	if live != nil {
		r.add("agent", sock, Pass, "running (pid %d, version %s, up %v): reporting its live state; hardware and buffer are left to it",
			live.PID, live.Version, (time.Duration(live.Uptime) * time.Second).Round(time.Second))
		diagnoseLive(cfg, live, r)
		diagnoseAgentClock(live, r)
	} else {
		r.add("agent", "service", Pass, "not running: checking hardware and buffer directly")
		diagnoseStateDir(cfg, r)
		diagnoseHardware(ctx, cfg, o.Simulate, r)
		diagnoseBuffer(cfg, r)
	}
	diagnoseGuidance(ctx, cfg, live, o, r)
	diagnoseDisk(cfg, r)
	diagnoseClock(r)

	diagnoseCerts(ctx, cfg, r)
	r.wg.Wait()
	diagnoseSentilo(ctx, cfg, live, r)

	failed := slices.ContainsFunc(r.checks, func(c Check) bool { return c.Verdict == Fail })
	if o.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(map[string]any{"ok": !failed, "config": cfg.Path(), "time": time.Now().UTC(), "checks": r.checks})
	} else {
		printReport(stdout, r.checks, isTerminal(stdout))
	}
	return !failed
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func printReport(w io.Writer, checks []Check, colour bool) {
	width := 0
	for _, c := range checks {
		width = max(width, len(c.Area)+1+len(c.Name))
	}
	paint := map[string]string{Pass: "\x1b[32m", Warn: "\x1b[33m", Fail: "\x1b[1;31m"}
	for _, c := range checks {
		v := c.Verdict
		if colour {
			v = paint[v] + v + "\x1b[0m"
		}
		fmt.Fprintf(w, "%s  %-*s  %s\n", v, width, c.Area+" "+c.Name, c.Detail)
	}
	counts := map[string]int{}
	for _, c := range checks {
		counts[c.Verdict]++
	}
	fmt.Fprintf(w, "%d passed, %s, %d failed\n", counts[Pass], plural(counts[Warn], "warning"), counts[Fail])
}

// diagnoseLive reports a running agent's own view of sensors, buffer and
// uplink.
func diagnoseLive(cfg *config.Config, live *agent.LiveState, r *report) {
	for _, s := range cfg.Sensors {
		st, ok := live.Sensors[s.Name]
		st.Where = withLocation(s, st.Where)
		switch {
		case !ok:
			r.add("sensor", s.Name, Fail, "the running agent does not know this sensor: restart it to load the configuration")
		case !st.Open || st.LastOK.IsZero():
			v, d := liveSensorWithoutReading(s, st, time.Duration(live.Uptime)*time.Second)
			r.add("sensor", s.Name, v, "%s", d)
		case time.Since(st.LastOK) > 3*s.Interval+10*time.Second:
			r.add("sensor", s.Name, Fail, "%s %s: last reading %v ago (interval %v)%s", s.Driver, location(s, st.Where),
				time.Since(st.LastOK).Round(time.Second), s.Interval, suffix("; last error: ", st.LastError))
		case st.Errors > 0:
			r.add("sensor", s.Name, Warn, "%s %s: %s, %s (last: %s)", s.Driver, location(s, st.Where), plural(int(st.Readings), "reading"), plural(int(st.Errors), "error"), st.LastError)
		case st.MissedTicks > 0:
			r.add("sensor", s.Name, Warn, "%s %s: %s, %s missed: reads take longer than the interval %v",
				s.Driver, location(s, st.Where), plural(int(st.Readings), "reading"), plural(int(st.MissedTicks), "sampling instant"), s.Interval)
		default:
			r.add("sensor", s.Name, Pass, "%s %s: %s, last %v ago", s.Driver, location(s, st.Where), plural(int(st.Readings), "reading"), time.Since(st.LastOK).Round(time.Second))
		}
	}
	v := Pass
	if live.Dropped > 0 || live.Status.Buffer != "" || live.Buffer.Salvage != nil {
		v = Warn
	}
	r.add("buffer", live.BufferFile, v, "file %s, backlog %s (%s), oldest %s, dropped %d%s%s",
		bytesIEC(live.Buffer.FileBytes), plural(int(live.Backlog), "reading"), bytesIEC(live.Bytes), age(live.Buffer.OldestTime), live.Dropped,
		suffix("; disk: ", live.Status.Buffer), salvageNote(live.Buffer.Salvage))
	u := live.Uplink
	switch {
	case u.NotConfigured: // said by diagnoseCerts
	case u.Connected:
		r.add("uplink", "session", Pass, "connected to %s since %s; last upload %s; %d in flight",
			u.Broker, u.Since.Format(time.RFC3339), ago(u.LastUpload), u.InFlight)
	default:
		r.add("uplink", "session", Fail, "not connected (last tried %s); last error: %s; last upload %s%s", u.Broker, u.LastError, ago(u.LastUpload), nextAttempt(u))
	}
}

func salvageNote(s *buffer.SalvageReport) string {
	if s == nil {
		return ""
	}
	return fmt.Sprintf("; a damaged buffer was salvaged at %s (%s kept, evidence at %s)", s.Time.Format(time.RFC3339), plural(int(s.Recovered), "reading"), s.MovedTo)
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}

func age(t time.Time) string {
	if t.IsZero() {
		return "none"
	}
	return time.Since(t).Round(time.Second).String() + " old"
}

func bytesIEC(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// diagnoseHardware opens every sensor and reads it once, scans each
// configured I2C bus, and reads each GPIO pin's level.
func diagnoseHardware(ctx context.Context, cfg *config.Config, simulate bool, r *report) {
	hw, err := agent.OpenHardware(ctx, cfg, simulate)
	if err != nil {
		r.add("sensors", "hardware", Fail, "%v; this host has: %s", err, agent.Inventory())
		return
	}
	if !simulate {
		r.add("hardware", "host", Pass, "%s", agent.Inventory())
	}
	var sensors sync.WaitGroup
	for _, s := range cfg.Sensors {
		r.async(ctx, &sensors, "sensor", s.Name, sensorTimeout, func(ctx context.Context) (string, string) { return diagnoseSensor(ctx, hw, s) })
	}
	// The scan waits for the sensor checks: probing a bus while a driver
	// waits for a conversion could take its answer away.
	buses := map[string][]config.SensorConfig{}
	var names []string
	for _, s := range cfg.Sensors {
		if d, _ := catalog.Lookup(s.Driver); d.Kind == catalog.I2C {
			if _, ok := buses[s.Bus]; !ok {
				names = append(names, s.Bus)
			}
			buses[s.Bus] = append(buses[s.Bus], s)
		}
	}
	// Signs on a scanned bus answer there too: they are configured, not
	// strangers.
	for _, sg := range cfg.Signs {
		if _, ok := buses[sg.Bus]; ok && sg.Driver == config.SignHT16K33 {
			buses[sg.Bus] = append(buses[sg.Bus], config.SensorConfig{Name: sg.Name, Driver: "sign " + sg.Driver, Bus: sg.Bus, Address: sg.Address})
		}
	}
	slots := make([]func(string, string, ...any), len(names))
	for i, b := range names {
		slots[i] = r.slot("i2c", "bus "+busLabel(b))
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer hw.Close()
		sensors.Wait()
		for i, b := range names {
			t, err := hw.Target(buses[b][0])
			if err != nil {
				slots[i](Fail, "%s", withoutInventory(err))
				continue
			}
			v, d := scanVerdict(catalog.Scan(t.Bus), buses[b])
			slots[i](v, "%s", d)
		}
	}()
}

func busLabel(b string) string {
	if b == "" {
		return "(first)"
	}
	return b
}

// scanVerdict compares what answered on a bus with what is configured there.
func scanVerdict(found []catalog.Found, configured []config.SensorConfig) (verdict, detail string) {
	want := map[uint16]string{}
	for _, s := range configured {
		want[s.Address] = s.Name
	}
	verdict = Pass
	var parts []string
	seen := map[uint16]bool{}
	for _, f := range found {
		seen[f.Addr] = true
		could := "unknown device"
		if len(f.Drivers) > 0 {
			could = "could be " + strings.Join(f.Drivers, "/")
		}
		if name, ok := want[f.Addr]; ok {
			parts = append(parts, fmt.Sprintf("%#02x %s (configured: %s)", f.Addr, could, name))
		} else {
			parts = append(parts, fmt.Sprintf("%#02x %s (present but not configured)", f.Addr, could))
			if verdict == Pass {
				verdict = Warn
			}
		}
	}
	for _, s := range configured {
		if !seen[s.Address] {
			parts = append(parts, fmt.Sprintf("%#02x SILENT (configured: %s, %s)", s.Address, s.Name, s.Driver))
			verdict = Fail
		}
	}
	if len(parts) == 0 {
		parts = append(parts, "no device answers")
	}
	return verdict, strings.Join(parts, "; ")
}

func diagnoseSensor(ctx context.Context, hw agent.Hardware, s config.SensorConfig) (string, string) {
	drv, _ := catalog.Lookup(s.Driver)
	t, err := hw.Target(s)
	if err != nil {
		return Fail, withoutInventory(err) + " (see hardware host)"
	}
	dev, err := drv.Open(t, s.Options)
	if err != nil {
		return Fail, fmt.Sprintf("%s: open: %v", t.Where(), err)
	}
	defer dev.Halt()
	level := ""
	if t.Pin != nil {
		level = fmt.Sprintf(", line level %s", map[gpio.Level]string{gpio.High: "high", gpio.Low: "low"}[t.Pin.Read()])
	}
	vals, err := dev.Read(ctx)
	if err != nil {
		return Fail, fmt.Sprintf("%s (%s): read: %v", t.Where(), dev, err)
	}
	parts := make([]string, len(vals))
	verdict := Pass
	for i, v := range vals {
		if v.IsBool {
			parts[i] = formatValue(v)
			continue
		}
		parts[i] = formatValue(v)
		if why := implausible(v); why != "" {
			parts[i] += " (" + why + ")"
			verdict = Warn
		}
	}
	if len(parts) == 0 {
		parts = append(parts, "read without error, no value in this read")
	}
	return verdict, fmt.Sprintf("%s (%s)%s: %s", location(s, t.Where()), dev, level, strings.Join(parts, ", "))
}

// implausible flags values a street sensor should not report although they
// are within the chip's range: a sensor in the sun, a wet or blocked one.
func implausible(v drivers.Value) string {
	limits := map[string][2]float64{
		drivers.Temperature: {-40, 60}, drivers.Humidity: {1, 100}, drivers.Pressure: {80000, 110000},
		drivers.CO2: {350, 5000}, drivers.PM2_5: {0, 500}, drivers.PM10: {0, 600},
	}
	l, ok := limits[v.Quantity]
	if !ok || (v.Num >= l[0] && v.Num <= l[1]) {
		return ""
	}
	return fmt.Sprintf("implausible outdoors: expected %g to %g", l[0], l[1])
}

func diagnoseDisk(cfg *config.Config, r *report) {
	var fs unix.Statfs_t
	at := nearestExisting(cfg.Agent.StateDir) // before the first start: its parent's file system
	if err := unix.Statfs(at, &fs); err != nil {
		r.add("disk", cfg.Agent.StateDir, Warn, "cannot read free space of %s: %v", at, err)
		return
	}
	free := int64(fs.Bavail) * int64(fs.Bsize)
	v := Pass
	if free < int64(cfg.Buffer.MaxBytes) {
		v = Warn
	}
	on := ""
	if at != filepath.Clean(cfg.Agent.StateDir) {
		on = " on " + at + " (state_dir not created yet)"
	}
	r.add("disk", cfg.Agent.StateDir, v, "%s free%s (buffer bound %s)", bytesIEC(free), on, bytesIEC(int64(cfg.Buffer.MaxBytes)))
}

// Kernel clock state (adjtimex(2)).
const (
	timeError = 5    // TIME_ERROR: the clock is not synchronised
	staUnsync = 0x40 // STA_UNSYNC
)

// diagnoseClock asks the kernel whether the clock is synchronised (NTP,
// chrony, systemd-timesyncd): readings carry absolute times, and a gateway
// without a real-time clock starts in the past until it is.
func diagnoseClock(r *report) {
	var tx unix.Timex
	state, err := unix.Adjtimex(&tx)
	now := time.Now().UTC().Format(time.RFC3339)
	switch {
	case err != nil:
		r.add("clock", "sync", Warn, "cannot ask the kernel: %v; local time %s", err, now)
	case state == timeError || tx.Status&staUnsync != 0:
		r.add("clock", "sync", Warn, "NOT synchronised (is NTP running?); local time %s; readings will carry this clock's time", now)
	default:
		r.add("clock", "sync", Pass, "synchronised, estimated error %d µs; local time %s", tx.Esterror, now)
	}
}

func suffix(sep, s string) string {
	if s == "" {
		return ""
	}
	return sep + s
}

// diagnoseBroker checks one broker through the uplink's own path (DNS, TCP,
// the TLS handshake with the client certificate, an MQTT CONNACK), under its
// own client id so that it never disconnects a running agent.
func diagnoseBroker(ctx context.Context, cfg *config.Config, store *certs.Store, raw string) (string, string) {
	// One test message, published and read back on a topic of its own, shows
	// that the broker's ACL lets the gateway's messages through.
	topic := uplink.EchoTopic(cfg.Uplink.TopicPrefix)
	started := time.Now()
	// The round trip ends before the check's own deadline, so that a message
	// that never comes back is reported as such.
	ectx, cancel := context.WithTimeout(ctx, checkTimeout*3/4)
	defer cancel()
	res, err := uplink.Echo(ectx, raw, cfg.Agent.ID+"-diagnose", topic, store.TLSConfig, checkTimeout)
	echo := ""
	ev := Pass
	if res.Peer != nil && (err == nil || errors.Is(err, uplink.ErrNotDelivered) || errors.Is(err, uplink.ErrSubscribeRefused)) {
		ev, echo = echoVerdict(topic, err, time.Since(started).Round(100*time.Millisecond))
		err = nil
	}
	if err != nil {
		if len(res.Addrs) > 0 {
			return Fail, fmt.Sprintf("%v (%s)", err, strings.Join(res.Addrs, ","))
		}
		return Fail, err.Error()
	}
	v := Pass
	left, name := 0, "?"
	if res.Peer != nil {
		left, name = int(time.Until(res.Peer.NotAfter).Hours()/24), res.Peer.Subject.CommonName
	}
	if left < cfg.Uplink.ExpiryWarningDays {
		v = Warn
	}
	if ev != Pass {
		v = ev
	}
	return v, fmt.Sprintf("%s; %s in %v; broker certificate %q verified against ca_file (%s left); CONNACK ok in %v%s",
		strings.Join(res.Addrs, ","), tls.VersionName(res.TLSVersion), res.Handshake.Round(time.Millisecond), name, plural(left, "day"), res.ConnackAfter.Round(time.Millisecond), echo)
}

// nextAttempt says when a disconnected agent tries again and how many
// attempts it made since the session was lost.
func nextAttempt(u agent.UplinkState) string {
	if u.NextAttempt.IsZero() {
		return fmt.Sprintf("; %d attempts since the session was lost, one under way", u.Attempts)
	}
	return fmt.Sprintf("; next attempt %s (in %v), %d attempts since the session was lost",
		u.NextAttempt.Format(time.RFC3339), max(time.Until(u.NextAttempt), 0).Round(100*time.Millisecond), u.Attempts)
}

package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cityedge/cityedge/buffer"
	"github.com/cityedge/cityedge/certs"
	"github.com/cityedge/cityedge/drivers/catalog"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Verdicts of a diagnostic check.
const (
	pass = "PASS"
	warn = "WARN"
	fail = "FAIL"
)

type check struct {
	Area    string `json:"area"`
	Name    string `json:"name"`
	Verdict string `json:"verdict"`
	Detail  string `json:"detail"`
}

// checkTimeout bounds each check, so one hung bus or broker never hangs the
// report.
const checkTimeout = 4 * time.Second

type report struct {
	checks []check
}

func (r *report) add(area, name, verdict, format string, args ...any) {
	r.checks = append(r.checks, check{Area: area, Name: name, Verdict: verdict, Detail: fmt.Sprintf(format, args...)})
}

// timed runs f with its own deadline; a check that overruns is a FAIL and
// its goroutine is left to finish on its own.
func timed(ctx context.Context, f func(ctx context.Context) (string, string)) (verdict, detail string) {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	type res struct{ v, d string }
	ch := make(chan res, 1)
	go func() {
		v, d := f(ctx)
		ch <- res{v, d}
	}()
	select {
	case r := <-ch:
		return r.v, r.d
	case <-ctx.Done():
		return fail, fmt.Sprintf("no answer within %v", checkTimeout)
	}
}

func runDiagnose(ctx context.Context, cfg *Config, o options, stdout io.Writer) int {
	var r report
	r.add("config", cfg.path, pass, "%d sensors, %d brokers, agent %s", len(cfg.Sensors), len(cfg.Uplink.Brokers), cfg.Agent.ID)

	hw, err := newDiagnoseHardware(ctx, cfg, o.simulate)
	if err != nil {
		r.add("sensors", "hardware", fail, "%v", err)
	}
	for _, s := range cfg.Sensors {
		if hw == nil {
			break
		}
		v, d := timed(ctx, func(ctx context.Context) (string, string) { return diagnoseSensor(ctx, hw, s) })
		r.add("sensor", s.Name, v, "%s", d)
	}
	if hw != nil {
		hw.close()
	}

	diagnoseBuffer(cfg, &r)

	store, err := certs.Load(certOptions(cfg, nil))
	if err != nil {
		r.add("certs", "load", fail, "%v", err)
	} else {
		st := store.Status()
		v := pass
		if st.Warning != "" {
			v = warn
		}
		if st.Expired {
			v = fail
		}
		detail := fmt.Sprintf("client %s expires in %d days, CA in %d days", st.ClientSubject, st.ClientDaysLeft, st.CADaysLeft)
		if st.Warning != "" {
			detail += "; " + st.Warning
		}
		r.add("certs", "client", v, "%s", detail)
		for _, b := range cfg.Uplink.Brokers {
			v, d := timed(ctx, func(ctx context.Context) (string, string) { return diagnoseBroker(ctx, cfg, store, b) })
			r.add("uplink", b, v, "%s", d)
		}
	}

	failed := false
	for _, c := range r.checks {
		failed = failed || c.Verdict == fail
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(map[string]any{"ok": !failed, "checks": r.checks})
	} else {
		printReport(stdout, r.checks)
	}
	if failed {
		return exitRuntime
	}
	return exitOK
}

func printReport(w io.Writer, checks []check) {
	width := 0
	for _, c := range checks {
		width = max(width, len(c.Area)+1+len(c.Name))
	}
	for _, c := range checks {
		fmt.Fprintf(w, "%-4s  %-*s  %s\n", c.Verdict, width, c.Area+" "+c.Name, c.Detail)
	}
}

func newDiagnoseHardware(ctx context.Context, cfg *Config, simulate bool) (hardware, error) {
	if simulate {
		return newSimHardware(ctx, cfg)
	}
	return newHostHardware()
}

func diagnoseSensor(ctx context.Context, hw hardware, s SensorConfig) (string, string) {
	drv, _ := catalog.Lookup(s.Driver)
	t, err := hw.target(s)
	if err != nil {
		return fail, err.Error()
	}
	dev, err := drv.Open(t, s.Options)
	if err != nil {
		return fail, fmt.Sprintf("%s: open: %v", t.Where(), err)
	}
	defer dev.Halt()
	vals, err := dev.Read(ctx)
	if err != nil {
		return fail, fmt.Sprintf("%s (%s): read: %v", t.Where(), dev, err)
	}
	parts := make([]string, len(vals))
	for i, v := range vals {
		if v.IsBool {
			parts[i] = fmt.Sprintf("%s=%t", v.Quantity, v.Bool)
		} else {
			parts[i] = fmt.Sprintf("%s=%.6g %s", v.Quantity, v.Num, v.Unit)
		}
	}
	return pass, fmt.Sprintf("%s (%s): %s", t.Where(), dev, strings.Join(parts, ", "))
}

func diagnoseBuffer(cfg *Config, r *report) {
	path := filepath.Join(cfg.Agent.StateDir, bufferFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		r.add("buffer", path, warn, "no buffer file yet (created at the agent's first start)")
		return
	}
	q, err := buffer.Open(path, buffer.Options{MaxBytes: int64(cfg.Buffer.MaxBytes), LockTimeout: 500 * time.Millisecond})
	if errors.Is(err, buffer.ErrLocked) {
		r.add("buffer", path, pass, "in use by the running agent")
		return
	}
	if err != nil {
		r.add("buffer", path, fail, "%v", err)
		return
	}
	defer q.Close()
	st := q.Stats()
	v := pass
	if st.DroppedTotal > 0 || st.DiskError != "" {
		v = warn
	}
	age := "none"
	if !st.OldestTime.IsZero() {
		age = time.Since(st.OldestTime).Round(time.Second).String()
	}
	r.add("buffer", path, v, "file %d B, backlog %d readings (%d B), oldest %s, dropped %d%s",
		st.FileBytes, st.Count, st.Bytes, age, st.DroppedTotal, suffix("; ", st.DiskError))
}

func suffix(sep, s string) string {
	if s == "" {
		return ""
	}
	return sep + s
}

// diagnoseBroker checks one broker: DNS, TCP, the TLS handshake with the
// client certificate, and an MQTT CONNACK, under its own client id so that
// it never disconnects a running agent.
func diagnoseBroker(ctx context.Context, cfg *Config, store *certs.Store, raw string) (string, string) {
	u, err := url.Parse(raw)
	if err != nil {
		return fail, err.Error()
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "8883"
	}
	addrs, err := net.DefaultResolver.LookupHost(ctx, host)
	if err != nil {
		return fail, fmt.Sprintf("DNS: %v", err)
	}
	tc, err := store.TLSConfig()
	if err != nil {
		return fail, fmt.Sprintf("TLS material: %v", err)
	}
	d := tls.Dialer{Config: tc}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, port))
	if err != nil {
		return fail, fmt.Sprintf("TCP/TLS to %s (%s): %v", net.JoinHostPort(host, port), strings.Join(addrs, ","), err)
	}
	cs := conn.(*tls.Conn).ConnectionState()
	conn.Close()
	opts := mqtt.NewClientOptions().AddBroker("ssl://" + net.JoinHostPort(host, port)).SetClientID(cfg.Agent.ID + "-diagnose").
		SetTLSConfig(tc).SetAutoReconnect(false).SetConnectRetry(false).SetCleanSession(true).SetConnectTimeout(checkTimeout)
	c := mqtt.NewClient(opts)
	tok := c.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return fail, "MQTT CONNECT: no CONNACK in time"
	}
	if err := tok.Error(); err != nil {
		return fail, fmt.Sprintf("MQTT CONNECT: %v", err)
	}
	c.Disconnect(100)
	return pass, fmt.Sprintf("%s, %s, server %s verified, CONNACK ok", strings.Join(addrs, ","), tls.VersionName(cs.Version), cs.PeerCertificates[0].Subject.CommonName)
}

func runEnroll(cfg *Config, csrPath string, stdout, stderr io.Writer) int {
	if err := certs.Enroll(cfg.Uplink.KeyFile, csrPath, cfg.Agent.ID); err != nil {
		fmt.Fprintf(stderr, "cityedge: enroll: %v\n", err)
		return exitRuntime
	}
	fmt.Fprintf(stderr, "cityedge: new private key at %s (mode 0600, never leaves this device); CSR for CN=%s written to %s\n",
		cfg.Uplink.KeyFile, cfg.Agent.ID, map[bool]string{true: "standard output", false: csrPath}[csrPath == "-"])
	_ = stdout
	return exitOK
}

package sentilo

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/scripts/testlog"
	"github.com/cityedge/cityedge/uplink/sentilo/sentilotest"
)

var ctx = context.Background()

func TestPublishStoresWithSentiloForms(t *testing.T) {
	r := newRig(t, "gw-bay-occupied", "gw-env-pm2_5")
	loc := [2]float64{2.17, 41.38}
	cest := time.FixedZone("CEST", 2*3600)
	out := r.c.Publish(ctx, []Reading{
		{ID: "gw-bay-occupied", Value: drivers.Flag("occupied", true), Time: t0.Add(1500 * time.Millisecond), Location: &loc, Key: 1},
		{ID: "gw-bay-occupied", Value: drivers.Flag("occupied", false), Time: t0.In(cest).Add(3 * time.Second), Location: &loc, Key: 2},
		{ID: "gw-env-pm2_5", Value: drivers.Number("pm2_5", drivers.UnitUgM3, float64(float32(12.3))), Float32: true, Time: t0, Key: 3},
	})
	if got := statuses(out); got != "acked acked acked" {
		t.Fatalf("outcomes %s", got)
	}
	obs := r.srv.Observations()
	want := []struct{ sensor, value, ts, loc string }{
		{"gw-bay-occupied", "true", "12/06/2026T10:00:01+0000", "41.38 2.17"},
		{"gw-bay-occupied", "false", "12/06/2026T10:00:03+0000", "41.38 2.17"},
		{"gw-env-pm2_5", "12.3", "12/06/2026T10:00:00+0000", ""},
	}
	if len(obs) != len(want) {
		t.Fatalf("stored %d, want %d", len(obs), len(want))
	}
	for i, w := range want {
		o := obs[i]
		if o.Sensor != w.sensor || o.Value != w.value || o.Timestamp != w.ts || o.Location != w.loc {
			t.Errorf("stored[%d] = %+v, want %+v", i, o, w)
		}
	}
	if r.srv.Puts() != 1 {
		t.Errorf("%d requests, want 1", r.srv.Puts())
	}
	if s := r.c.Stats(); s.Acked != 3 || s.Requests != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestPublishBoundsRequests(t *testing.T) {
	r := newRig(t, "a", "b")
	rs := make([]Reading, 250)
	for i := range rs {
		rs[i] = num([]string{"a", "b"}[i%2], float64(i), t0.Add(time.Duration(i)*time.Second), uint64(i))
	}
	out := r.c.Publish(ctx, rs)
	for i, o := range out {
		if o.Status != Acked {
			t.Fatalf("reading %d: %v", i, o)
		}
	}
	if r.srv.Puts() != 3 {
		t.Errorf("%d requests for 250 readings, want 3 (batch_max 100)", r.srv.Puts())
	}
	// The byte bound: long ids make requests smaller than batch_max.
	long := strings.Repeat("x", 400)
	r2 := newRig(t, long)
	rs = rs[:100]
	for i := range rs {
		rs[i].ID = long
	}
	_ = r2.c.Publish(ctx, rs)
	if r2.srv.Puts() < 2 {
		t.Errorf("%d requests of 100 readings with 400-byte ids, want the byte bound to split them", r2.srv.Puts())
	}
}

// 404 is a partial accept: the online sensor's observations are stored and
// acked; the others are held per sensor, 10 s doubling to 10 min, and
// delivered once registered — the accepted part never again.
func TestPartialAcceptHoldsRejectedSensors(t *testing.T) {
	r := newRig(t, "a", "c")
	r.srv.SetOffline("c")
	batch := func(at time.Time, key uint64) []Reading {
		return []Reading{num("a", 1, at, key), num("b", 2, at, key), num("c", 3, at, key)}
	}
	out := r.c.Publish(ctx, batch(t0, 1))
	if got := statuses(out); got != "acked held held" {
		t.Fatalf("outcomes %s", got)
	}
	if out[1].Reason != "404.1" || out[2].Reason != "404.2" {
		t.Errorf("reasons %q %q, want 404.1 404.2", out[1].Reason, out[2].Reason)
	}
	if !out[1].RetryAt.Equal(t0.Add(10 * time.Second)) {
		t.Errorf("RetryAt %v, want +10s", out[1].RetryAt)
	}
	held := r.c.Held()
	if len(held) != 2 || held[0].ID != "b" || held[0].Reason != "404.1" || held[0].Readings != 1 || held[1].Reason != "404.2" {
		t.Errorf("Held() = %+v", held)
	}
	if r.logs.Count("sentilo: sensor rejected") != 2 {
		t.Errorf("log:\n%s", r.logs)
	}

	// Before they are due, held readings come back without a request; the
	// new reading of a goes out.
	r.clock.Advance(9 * time.Second)
	puts := r.srv.Puts()
	out = r.c.Publish(ctx, []Reading{num("b", 2, t0, 1), num("c", 3, t0, 1), num("a", 4, t0.Add(9*time.Second), 2)})
	if got := statuses(out); got != "held held acked" || r.srv.Puts() != puts+1 {
		t.Fatalf("outcomes %s, %d requests", got, r.srv.Puts()-puts)
	}

	// Due and still rejected: 20 s, then 40 s ...
	var delays []time.Duration
	for range 8 {
		at := r.c.Held()[0].NextTry
		r.clock.Advance(at.Sub(r.clock.Now()))
		out = r.c.Publish(ctx, []Reading{num("b", 2, t0, 1)})
		delays = append(delays, out[0].RetryAt.Sub(r.clock.Now()))
	}
	want := []time.Duration{20, 40, 80, 160, 320, 600, 600, 600}
	for i := range want {
		if delays[i] != want[i]*time.Second {
			t.Errorf("held retry delays %v, want %v s", delays, want)
			break
		}
	}
	if r.logs.Count("sentilo: sensor rejected") != 2 {
		t.Errorf("one log line per sensor and reason; log:\n%s", r.logs)
	}

	// The city registers b and re-enables c: delivered at their next try.
	r.srv.Register("b")
	r.srv.Register("c")
	r.clock.Advance(10 * time.Minute)
	out = r.c.Publish(ctx, []Reading{num("b", 2, t0, 1), num("c", 3, t0, 1)})
	if got := statuses(out); got != "acked acked" || len(r.c.Held()) != 0 {
		t.Fatalf("after registration: %s, held %v", got, r.c.Held())
	}
	count := map[string]int{}
	for _, o := range r.srv.Observations() {
		count[o.Sensor]++
	}
	if count["a"] != 2 || count["b"] != 1 || count["c"] != 1 {
		t.Errorf("stored per sensor %v, want a:2 b:1 c:1 (the accepted part never resent)", count)
	}
}

func TestBadRequestBisectsToTheRefusedObservations(t *testing.T) {
	r := newRig(t, "a")
	r.srv.RefuseValue("13", "Wrong value value: 13")
	r.srv.RefuseValue("42", "Wrong value value: 42")
	var rs []Reading
	for i := range 16 {
		rs = append(rs, num("a", float64(i+10), t0.Add(time.Duration(i)*time.Second), uint64(i)))
	}
	rs = append(rs, num("a", 42, t0, 99))
	out := r.c.Publish(ctx, rs)
	for i, o := range out {
		want := Acked
		if rs[i].Value.Num == 13 || rs[i].Value.Num == 42 {
			want = SetAside
		}
		if o.Status != want {
			t.Errorf("reading %v: %v, want %v", rs[i].Value.Num, o.Status, want)
		}
	}
	if n := len(r.srv.Observations()); n != 15 {
		t.Errorf("stored %d, want 15", n)
	}
	if s := r.c.Stats(); s.SetAside != 2 || s.Acked != 15 {
		t.Errorf("stats %+v", s)
	}
	// Logged once per distinct detail.
	_ = r.c.Publish(ctx, []Reading{num("a", 13, t0, 100)})
	if n := r.logs.Count("set aside"); n != 2 {
		t.Errorf("%d set-aside log lines, want 2; log:\n%s", n, r.logs)
	}
	if !strings.Contains(r.logs.String(), "Wrong value value: 13") {
		t.Errorf("the server's detail is not logged:\n%s", r.logs)
	}
	if r.c.Gate().Cause != "" {
		t.Errorf("a 400 closed the gate: %+v", r.c.Gate())
	}
}

func TestUnauthorizedBacksOffAndNeverLogsTheToken(t *testing.T) {
	r := newRig(t, "a")
	// A client with the wrong token: 401 "Invalid credential <token>".
	bad := newClient(t, r.srv.URL, r.c.cfg.TLS, r.clock, r.logs)
	bad.cfg.Token = "wrong-token-ffff"
	var delays []time.Duration
	for range 7 {
		out := bad.Publish(ctx, []Reading{num("a", 1, t0, 1)})
		if out[0].Status != Retry || out[0].Reason != "401" {
			t.Fatalf("outcome %+v", out[0])
		}
		delays = append(delays, out[0].RetryAt.Sub(r.clock.Now()))
		puts := r.srv.Puts()
		r.clock.Advance(out[0].RetryAt.Sub(r.clock.Now()) - time.Nanosecond)
		if o := bad.Publish(ctx, []Reading{num("a", 1, t0, 1)}); o[0].Status != Retry || r.srv.Puts() != puts {
			t.Fatal("a request went out before the backoff ended")
		}
		r.clock.Advance(time.Nanosecond)
	}
	want := []time.Duration{30, 60, 120, 240, 480, 600, 600}
	for i := range want {
		if delays[i] != want[i]*time.Second {
			t.Fatalf("401 delays %v, want %v s", delays, want)
		}
	}
	logs := r.logs.String()
	if strings.Contains(logs, "wrong-token-ffff") || strings.Contains(logs, testToken) {
		t.Errorf("the token is in the log:\n%s", logs)
	}
	if n := r.logs.Count("sentilo: not delivering"); n != 1 {
		t.Errorf("%d log lines for one cause, want 1:\n%s", n, logs)
	}
	if !strings.Contains(logs, "Invalid credential [token]") {
		t.Errorf("log lacks the redacted server message:\n%s", logs)
	}
}

func TestCredentialNullNamesTheProxy(t *testing.T) {
	c, _, logs := handlerRig(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(401)
		fmt.Fprint(w, `{"code":401,"message":"Invalid credential null"}`)
	}))
	out := c.Publish(ctx, []Reading{num("a", 1, t0, 1)})
	if out[0].Status != Retry || !out[0].RetryAt.Equal(t0.Add(30*time.Second)) {
		t.Fatalf("outcome %+v", out[0])
	}
	if l := logs.String(); !strings.Contains(l, "underscores_in_headers on;") || !strings.Contains(l, "IDENTITY_KEY") {
		t.Errorf("log does not name the likely cause:\n%s", l)
	}
}

func TestThrottledWaitsForTheReset(t *testing.T) {
	for _, tc := range []struct {
		reset  string
		global bool
		want   time.Duration
	}{
		{"2", false, 2 * time.Minute},
		{"7", true, 7 * time.Minute},
		{"0", false, 60 * time.Second},
		{"", false, 60 * time.Second},
	} {
		r := newRig(t, "a")
		r.srv.Throttle(1, tc.reset, tc.global)
		out := r.c.Publish(ctx, []Reading{num("a", 1, t0, 1), num("a", 2, t0, 2)})
		if out[0].Status != Retry || out[0].Reason != "429" || !out[0].RetryAt.Equal(t0.Add(tc.want)) || out[0].Unknown {
			t.Errorf("reset %q: outcome %+v, want retry at +%v", tc.reset, out[0], tc.want)
		}
		r.clock.Advance(tc.want - time.Second)
		_ = r.c.Publish(ctx, []Reading{num("a", 1, t0, 1)})
		if r.srv.Puts() != 1 {
			t.Errorf("reset %q: a request went out before the reset", tc.reset)
		}
		r.clock.Advance(time.Second)
		if out := r.c.Publish(ctx, []Reading{num("a", 1, t0, 1)}); out[0].Status != Acked {
			t.Errorf("reset %q: after the reset %+v", tc.reset, out[0])
		}
	}
}

func TestServerErrorsBackOffWithJitter(t *testing.T) {
	r := newRig(t, "a")
	r.srv.Fail(503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503)
	ceil := time.Second
	for i := range 11 {
		out := r.c.Publish(ctx, []Reading{num("a", 1, t0, 1)})
		d := out[0].RetryAt.Sub(r.clock.Now())
		if out[0].Status != Retry || out[0].Unknown || d < ceil/2 || d > ceil {
			t.Fatalf("attempt %d: %+v, wait %v, want in [%v, %v], known outcome", i, out[0], d, ceil/2, ceil)
		}
		if err := waitWithClock(r, d); err != nil {
			t.Fatal(err)
		}
		ceil = min(2*ceil, 5*time.Minute)
	}
	if out := r.c.Publish(ctx, []Reading{num("a", 1, t0, 1)}); out[0].Status != Acked {
		t.Fatalf("after the failures: %+v", out[0])
	}
	if s := r.c.Stats(); s.Failed != 11 || s.Resent != 0 || s.Unknown != 0 {
		t.Errorf("stats %+v (503 stores nothing: no resent)", s)
	}
	if !strings.Contains(r.logs.String(), "sentilo: delivering again") {
		t.Errorf("no recovery line:\n%s", r.logs)
	}
}

// waitWithClock checks that Wait blocks until exactly d has passed.
func waitWithClock(r *rig, d time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- r.c.Wait(ctx) }()
	if err := r.clock.BlockUntilContext(ctx, 1); err != nil {
		return err
	}
	r.clock.Advance(d - time.Nanosecond)
	select {
	case <-done:
		return fmt.Errorf("Wait returned %v early", time.Nanosecond)
	case <-time.After(10 * time.Millisecond):
	}
	r.clock.Advance(time.Nanosecond)
	return <-done
}

// An answer lost after the store: the readings are resent (duplicates the
// receiver sees) and counted.
func TestUnknownOutcomeIsResentAndCounted(t *testing.T) {
	r := newRig(t, "a")
	r.srv.LoseResponses(1)
	rs := []Reading{num("a", 1, t0, 1), num("a", 2, t0.Add(time.Second), 2)}
	out := r.c.Publish(ctx, rs)
	if out[0].Status != Retry || !out[0].Unknown || !out[1].Unknown {
		t.Fatalf("outcome %+v", out)
	}
	_ = r.c.Wait(ctxAdvance(r))
	if out := r.c.Publish(ctx, rs); statuses(out) != "acked acked" {
		t.Fatalf("resend: %s", statuses(out))
	}
	if s := r.c.Stats(); s.Unknown != 2 || s.Resent != 2 {
		t.Errorf("stats %+v, want unknown 2 resent 2", s)
	}
	if n := len(r.srv.Observations()); n != 4 {
		t.Errorf("stored %d, want 4 (2 duplicates, counted)", n)
	}
	// A 500 may come after part of a request was stored: unknown too.
	r.srv.Fail(500)
	r.clock.Advance(time.Hour)
	if out := r.c.Publish(ctx, rs[:1]); !out[0].Unknown {
		t.Errorf("500: %+v, want unknown", out[0])
	}
}

func ctxAdvance(r *rig) context.Context {
	r.clock.Advance(r.c.Gate().Until.Sub(r.clock.Now()))
	return ctx
}

func TestTimeoutIsUnknown(t *testing.T) {
	got := make(chan struct{}, 1)
	release := make(chan struct{})
	c, clock, _ := handlerRig(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- struct{}{}
		<-release
	}))
	t.Cleanup(func() { close(release) }) // before the server's Close (cleanups run last-first)
	done := make(chan []Outcome, 1)
	go func() { done <- c.Publish(ctx, []Reading{num("a", 1, t0, 1)}) }()
	<-got // the request is with the server
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(DefaultTimeout)
	out := <-done
	if out[0].Status != Retry || !out[0].Unknown || out[0].Reason != "timeout" {
		t.Fatalf("outcome %+v, want retry, unknown, timeout", out[0])
	}
}

func TestProxy404IsNoPartialAccept(t *testing.T) {
	c, _, logs := handlerRig(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.NotFound(w, r)
	}))
	out := c.Publish(ctx, []Reading{num("a", 1, t0, 1)})
	if out[0].Status != Retry || out[0].Unknown {
		t.Fatalf("outcome %+v", out[0])
	}
	if !strings.Contains(logs.String(), "check sentilo.url") {
		t.Errorf("log:\n%s", logs)
	}
}

func TestCheckCatalog(t *testing.T) {
	r := newRig(t, "a", "b", "c")
	r.srv.SetOffline("c")
	rep, err := r.c.CheckCatalog(ctx, []string{"a", "b"})
	if err != nil || rep.Level != "PASS" {
		t.Fatalf("%+v, %v", rep, err)
	}
	rep, err = r.c.CheckCatalog(ctx, []string{"a", "c", "zz"})
	if err != nil || rep.Level != "WARN" || strings.Join(rep.Missing, ",") != "c,zz" || !strings.Contains(rep.Detail, "c, zz") {
		t.Fatalf("%+v, %v", rep, err)
	}
	r.c.cfg.Provider = "other"
	if rep, _ = r.c.CheckCatalog(ctx, nil); rep.Level != "FAIL" {
		t.Errorf("%+v", rep)
	}
	r.c.cfg.Token = "nope-1234"
	if _, err = r.c.CheckCatalog(ctx, nil); err == nil || strings.Contains(err.Error(), "nope-1234") || !strings.Contains(err.Error(), "401") {
		t.Errorf("err = %v", err)
	}
}

func TestCatalogBody(t *testing.T) {
	loc := [2]float64{2.17, 41.38}
	b, err := CatalogBody([]CatalogSensor{
		{ID: "gw-bay1-occupied", Type: "occupied", Boolean: true, Component: "gw-bay1", Parking: true, Location: &loc},
		{ID: "gw-env-temperature", Type: "temperature", Unit: "Cel", Component: "gw-env"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"dataType": "BOOLEAN"`, `"componentType": "parking"`, `"location": "41.38 2.17"`,
		`"dataType": "NUMBER"`, `"unit": "Cel"`, `"componentType": "generic"`, `"sensor": "gw-env-temperature"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("body lacks %s:\n%s", want, b)
		}
	}
	if _, err := CatalogBody([]CatalogSensor{{ID: "bad id", Type: "x", Component: "c"}}); err == nil {
		t.Error("bad id accepted")
	}
}

// TestGetTLSPerConnection: with Config.GetTLS the TLS material is asked for
// at each new connection. Unusable at first (a bad certificate at start),
// a request fails like a network error (backed off, nothing acked, nothing
// stored); once the material is fixed the next connection uses it; and a
// reload that changes it reaches the proxy after the idle connections are
// closed (Close), with no restart of the client.
func TestGetTLSPerConnection(t *testing.T) {
	p := newPKI(t)
	srv := sentilotest.Start(t, sentilotest.Options{Provider: testProvider, Token: testToken, Sensors: []string{"a"}, TLS: p.server})
	clock := clockwork.NewFakeClockAt(t0)
	logs := &testlog.Buffer{}
	src := &tlsSource{why: "certs: no usable set: client.key is mode 0644"}
	c, err := New(Config{URL: srv.URL, Provider: testProvider, Token: testToken, Clock: clock,
		Logger: slog.New(slog.NewTextHandler(logs, nil)), Rand: rand.New(rand.NewPCG(1, 2)), GetTLS: src.get})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	out := c.Publish(ctx, []Reading{num("a", 1, t0, 1)})
	if out[0].Status != Retry || out[0].RetryAt.IsZero() {
		t.Fatalf("unusable TLS material: %+v, want a retry later", out[0])
	}
	if n := len(srv.Observations()); n != 0 {
		t.Fatalf("stored %d observations without TLS", n)
	}
	if !strings.Contains(logs.String(), "client.key is mode 0644") {
		t.Errorf("the log does not say why:\n%s", logs)
	}

	src.set(p.client)
	clock.Advance(out[0].RetryAt.Sub(clock.Now()))
	if out := c.Publish(ctx, []Reading{num("a", 2, t0, 2)}); out[0].Status != Acked {
		t.Fatalf("material fixed: %+v", out[0])
	}
	before := src.count()

	// A client that trusts another CA: after Close the next connection
	// asks again, and the proxy's certificate is refused.
	other := newPKI(t)
	src.set(other.client)
	c.Close()
	out = c.Publish(ctx, []Reading{num("a", 3, t0, 3)})
	if asked := src.count(); asked == before || out[0].Status == Acked {
		t.Fatalf("after a reload to another CA: asked %d times (was %d), outcome %+v", asked, before, out[0])
	}
	if n := len(srv.Observations()); n != 1 {
		t.Errorf("stored %d observations, want the one sent with usable material", n)
	}
}

// TestReconnectEndsTheErrorBackoff: after TLS material that failed is
// fixed and reloaded, Reconnect ends the backoff of failed exchanges at
// once (it had minutes to run) and wakes Wait; a 429's reset stands.
func TestReconnectEndsTheErrorBackoff(t *testing.T) {
	p := newPKI(t)
	srv := sentilotest.Start(t, sentilotest.Options{Provider: testProvider, Token: testToken, Sensors: []string{"a"}, TLS: p.server})
	clock := clockwork.NewFakeClockAt(t0)
	src := &tlsSource{why: "certs: no usable set"}
	c, err := New(Config{URL: srv.URL, Provider: testProvider, Token: testToken, Clock: clock,
		Logger: slog.New(slog.DiscardHandler), Rand: rand.New(rand.NewPCG(1, 2)), GetTLS: src.get})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Eight failures: the backoff has grown to minutes.
	for range 8 {
		out := c.Publish(ctx, []Reading{num("a", 1, t0, 1)})
		if out[0].Status != Retry {
			t.Fatalf("unusable TLS: %+v", out[0])
		}
		clock.Advance(out[0].RetryAt.Sub(clock.Now()))
	}
	out := c.Publish(ctx, []Reading{num("a", 1, t0, 1)})
	if d := out[0].RetryAt.Sub(clock.Now()); d < time.Minute {
		t.Fatalf("after 9 failures the backoff is %v; the test wants minutes", d)
	}
	waited := make(chan error, 1)
	go func() { waited <- c.Wait(ctx) }()
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	src.set(p.client)
	c.Reconnect()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Reconnect did not wake Wait")
	}
	if g := c.Gate(); !g.Until.IsZero() {
		t.Fatalf("gate after Reconnect: %+v", g)
	}
	if out := c.Publish(ctx, []Reading{num("a", 2, t0, 2)}); out[0].Status != Acked {
		t.Fatalf("after Reconnect, on the clock's same instant: %+v", out[0])
	}

	srv.Throttle(1, "5", false)
	if out := c.Publish(ctx, []Reading{num("a", 3, t0, 3)}); out[0].Reason != "429" {
		t.Fatalf("throttled: %+v", out[0])
	}
	c.Reconnect()
	if g := c.Gate(); g.Until.IsZero() || !strings.HasPrefix(g.Cause, "429") {
		t.Fatalf("Reconnect opened a 429's gate: %+v", g)
	}
}

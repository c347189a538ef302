package sentilo

import (
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/cityedge/cityedge/scripts/nginxtest"
	"github.com/cityedge/cityedge/scripts/testlog"
	"github.com/cityedge/cityedge/uplink/sentilo/sentilotest"
)

// End to end through real nginx (mutual TLS) to the stand-in, with a
// minimal forwarder: it offers every reading not yet acked or set aside
// whose RetryAt has come, and moves the fake clock to the next RetryAt when
// nothing is due. nginx is SIGKILLed and restarted, a sensor registered
// late, one offline until the end, a 429 with a reset, an answer lost
// after the store.
func TestEndToEndThroughNginx(t *testing.T) {
	p := newPKI(t)
	srv := sentilotest.Start(t, sentilotest.Options{Provider: testProvider, Token: testToken, RequireHTTPS: true,
		Sensors: []string{"gw-env-temperature", "gw-bay1-occupied"}})
	px := nginxtest.Start(t, nginxtest.Options{PKI: p.set, Upstream: srv.Addr})
	clock := clockwork.NewFakeClockAt(t0)
	logs := &testlog.Buffer{}
	c := newClient(t, px.URL, p.client, clock, logs)

	ids := []string{"gw-env-temperature", "gw-bay1-occupied", "gw-bay2-occupied", "gw-env-pm2_5"}
	srv.SetOffline("gw-env-pm2_5")
	type state struct {
		r       Reading
		done    bool
		retryAt time.Time
		unknown bool
	}
	var pending []*state
	key := uint64(0)
	produce := func(rounds int) {
		for range rounds {
			key++
			at := t0.Add(time.Duration(key)*time.Second + 750*time.Millisecond)
			for _, id := range ids {
				pending = append(pending, &state{r: num(id, float64(key)+0.25, at, key)})
			}
		}
	}
	for iter := 0; iter < 400; iter++ {
		if iter < 30 {
			produce(5)
		}
		switch iter {
		case 4:
			px.Kill()
		case 6:
			px.Restart()
		case 9:
			srv.Throttle(1, "1", false)
		case 12:
			srv.LoseResponses(1)
		case 15:
			srv.Register("gw-bay2-occupied")
		case 30:
			srv.Register("gw-env-pm2_5")
		}
		now := clock.Now()
		var batch []*state
		for _, s := range pending {
			if !s.done && !now.Before(s.retryAt) && len(batch) < 100 {
				batch = append(batch, s)
			}
		}
		if len(batch) == 0 {
			next := time.Time{}
			for _, s := range pending {
				if !s.done && (next.IsZero() || s.retryAt.Before(next)) {
					next = s.retryAt
				}
			}
			if next.IsZero() && iter >= 30 {
				break
			}
			if next.After(now) {
				clock.Advance(next.Sub(now))
			}
			continue
		}
		rs := make([]Reading, len(batch))
		for i, s := range batch {
			rs[i] = s.r
		}
		for i, o := range c.Publish(ctx, rs) {
			s := batch[i]
			switch o.Status {
			case Acked:
				s.done = true
			case SetAside:
				t.Errorf("reading %s/%d set aside: %s", s.r.ID, s.r.Key, o.Reason)
				s.done = true
			default:
				s.retryAt = o.RetryAt
				s.unknown = s.unknown || o.Unknown
			}
		}
		clock.Advance(time.Second)
	}

	// Every reading delivered; duplicates only where the outcome was unknown.
	type rk struct {
		id  string
		key uint64
	}
	stored := map[rk]int{}
	for _, o := range srv.Observations() {
		k := uint64(0)
		for _, s := range pending {
			if s.r.ID == o.Sensor && FormatNumber(s.r.Value.Num, false) == o.Value {
				k = s.r.Key
				if !o.Time.Equal(s.r.Time.UTC().Truncate(time.Second)) {
					t.Errorf("%s/%d stored at %v, want its own time %v", o.Sensor, k, o.Time, s.r.Time.UTC().Truncate(time.Second))
				}
				break
			}
		}
		stored[rk{o.Sensor, k}]++
	}
	dups := 0
	for _, s := range pending {
		n := stored[rk{s.r.ID, s.r.Key}]
		if !s.done || n == 0 {
			t.Fatalf("%s/%d not delivered (done %v)", s.r.ID, s.r.Key, s.done)
		}
		if n > 1 {
			dups += n - 1
			if !s.unknown {
				t.Errorf("%s/%d stored %d times without an unknown outcome", s.r.ID, s.r.Key, n)
			}
		}
	}
	st := c.Stats()
	if dups == 0 || uint64(dups) > st.Resent {
		t.Errorf("%d duplicates, %d resent counted (want 0 < duplicates <= resent)", dups, st.Resent)
	}
	ans := srv.Answers()
	if ans[404] == 0 || ans[429] != 1 {
		t.Errorf("answers %v: the scenario did not happen", ans)
	}
	if st.Failed == 0 {
		t.Errorf("stats %+v: nginx's death went unnoticed", st)
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, testToken) {
			t.Errorf("token in log line %q", line)
		}
	}
	t.Logf("%d readings, %d requests, answers %v, stats %+v, %d duplicates", len(pending), st.Requests, ans, st, dups)
}

package sentilo

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/cityedge/cityedge/scripts/testlog"
	"github.com/cityedge/cityedge/uplink/sentilo/sentilotest"
)

// BenchmarkSentiloDrain drains a 100k backlog to the in-process stand-in
// over mutual TLS (keep-alive), batch_max 100, and reports readings/s for
// docs/BENCHMARKS.md (beside the MQTT drain).
func BenchmarkSentiloDrain(b *testing.B) {
	const backlog = 100_000
	p := newPKI(b)
	ids := []string{"gw-env-temperature", "gw-env-humidity", "gw-bay1-occupied", "gw-env-pm2_5"}
	rs := make([]Reading, backlog)
	for i := range rs {
		rs[i] = num(ids[i%len(ids)], 20+float64(i%100)/10, t0.Add(time.Duration(i)*100*time.Millisecond), uint64(i))
	}
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		srv := sentilotest.Start(b, sentilotest.Options{Provider: testProvider, Token: testToken, Sensors: ids, TLS: p.server})
		c := newClient(b, srv.URL, p.client, clockwork.NewRealClock(), &testlog.Buffer{})
		b.StartTimer()
		for start := 0; start < backlog; start += 1000 {
			for _, o := range c.Publish(ctx, rs[start:start+1000]) {
				if o.Status != Acked {
					b.Fatalf("outcome %+v", o)
				}
			}
		}
		b.StopTimer()
		if n := len(srv.Observations()); n != backlog {
			b.Fatalf("stored %d", n)
		}
		srv.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(backlog*b.N)/b.Elapsed().Seconds(), "readings/s")
}

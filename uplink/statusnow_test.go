package uplink

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/cityedge/cityedge/scripts/testbroker"
	"github.com/jonboulle/clockwork"
	"sync/atomic"
)

// TestPublishStatusNow: PublishStatus publishes a fresh status at once,
// without the clock reaching StatusEvery.
func TestPublishStatusNow(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	status := b.Subscribe(t, testPrefix+"/status")
	var n atomic.Int64
	cfg := testConfig(t, b)
	cfg.Status = statusLog(&n)
	cfg.clock = clockwork.NewFakeClock() // never advanced: no ticker fires
	cfg.AckTimeout = time.Hour
	c := start(t, cfg, newMemSource(0))
	first, _ := nextStatus(t, status, "on connect")
	for i := range 3 {
		// A request while the previous status awaits its PUBACK is folded
		// into it: ask until a fresh one comes.
		deadline := time.After(10 * time.Second)
		tick := time.NewTicker(20 * time.Millisecond)
	wait:
		for {
			c.PublishStatus()
			select {
			case m := <-status:
				var s statusMsg
				if err := json.Unmarshal(m.Payload, &s); err != nil {
					t.Fatal(err)
				}
				if s.State != "online" || s.N <= first.N {
					t.Fatalf("request %d: status %+v, want a fresh online status after %+v", i, s, first)
				}
				first = s
				break wait
			case <-tick.C:
			case <-deadline:
				t.Fatalf("request %d: no status published", i)
			}
		}
		tick.Stop()
	}
}

package agent

import (
	"fmt"
	"time"

	"github.com/cityedge/cityedge/buffer"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/uplink"
	"github.com/cityedge/cityedge/uplink/senml"
)

// phases spreads the first sample of sensors that share an I2C bus across
// their interval: the i-th of k sensors on a bus (in configuration order)
// starts i/k of its interval after opening, so one slow chip does not delay
// the others' timestamps and the bus is not asked for everything at once.
// GPIO sensors and a bus's only sensor start at once.
func phases(sensors []config.SensorConfig) []time.Duration {
	out := make([]time.Duration, len(sensors))
	onBus := map[string][]int{}
	for i, s := range sensors {
		if s.Pin == "" {
			onBus[s.Bus] = append(onBus[s.Bus], i)
		}
	}
	for _, idx := range onBus {
		for j, i := range idx {
			out[i] = sensors[i].Interval * time.Duration(j) / time.Duration(len(idx))
		}
	}
	return out
}

// startHandoff starts the hand-off between the samplers and the buffer and
// returns the function that drains it into the buffer and waits for it.
func (a *agent) startHandoff() (drain func()) {
	a.hand = newHandoff(a.q, a.clock, a.log, handoffBytes)
	a.hand.committed = a.committed
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.hand.feed()
	}()
	return func() {
		a.hand.close()
		<-done
	}
}

// committed is told what each append stored: the clock rule counts what it
// holds, and an occupancy change hurries the forwarder (it does not wait for
// batch_wait).
func (a *agent) committed(recs []buffer.Record, first uint64) {
	if a.clk != nil {
		a.clk.committed(recs, first)
	}
	for _, r := range recs {
		if r.Priority == buffer.ClassOccupancy {
			a.hurryMQTT()
			return
		}
	}
}

// handOff is the samplers' sink: it encodes a reading and hands it to the
// buffer without waiting for the disk.
func (a *agent) handOff(r drivers.Reading, class buffer.Class) {
	if a.guide != nil && !a.guide.reading(r) {
		return // [guidance] publish_bays = false: bay readings stay on the gateway
	}
	if rec, ok := a.record(r, class); ok {
		a.hand.put(rec)
	}
}

// record is a reading as the buffer keeps it: stamped for the clock rule
// (clock.go) and encoded once.
func (a *agent) record(r drivers.Reading, class buffer.Class) (buffer.Record, bool) {
	boot := a.stampReading(&r)
	data, err := senml.AppendReading(nil, r)
	if err != nil {
		// A reading that cannot even be encoded is a driver bug.
		a.log.Error("reading not buffered", "sensor", r.Sensor, "err", err)
		return buffer.Record{}, false
	}
	return buffer.Record{Key: r.Sensor, Priority: class, Data: data, Boot: boot}, true
}

// uplinkNote says what the uplink is doing, for systemd's STATUS= line:
// the broker it is connected to, or when its next attempt is due and how
// many it made since the session was lost.
func uplinkNote(st uplink.State, now time.Time) string {
	switch {
	case st.Connected:
		return "connected to " + st.Broker
	case !st.NextAttempt.IsZero():
		return fmt.Sprintf("offline, next attempt in %s (at %s), %d attempts so far",
			max(st.NextAttempt.Sub(now), 0).Round(100*time.Millisecond), st.NextAttempt.UTC().Format(time.RFC3339), st.Attempts)
	case st.Attempts > 0:
		return fmt.Sprintf("offline, attempt %d under way", st.Attempts+1)
	default:
		return "offline"
	}
}

// handBusySince is when the append under way began (UnixNano), 0 when none:
// a commit stuck for stallLimit (a hung disk) is a stall.
func (a *agent) handBusySince() int64 {
	if a.hand == nil {
		return 0
	}
	return a.hand.busySince.Load()
}

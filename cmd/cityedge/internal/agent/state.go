package agent

import (
	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/catalog"
)

// stateStore is where the agent keeps what sensors learned (a parking
// detector's empty-bay baseline and decision), so that a restart with a car
// parked does not take the car for the empty bay: the buffer file's
// metadata (buffer.Queue.SetState), durable with the next commit.
type stateStore interface {
	State(key string) []byte
	SetState(key string, val []byte) error
}

// stateKey is the key of a sensor's kept state.
func stateKey(sensor string) string { return "sensor/" + sensor }

// restore hands a freshly opened sensor the state it kept, if it keeps any.
// A state it refuses (damaged, another detector's) is logged; the sensor
// then learns afresh.
func (r *sensorRunner) restore(s drivers.Sensor) {
	k, ok := s.(catalog.StateKeeper)
	if !ok || r.keep == nil {
		return
	}
	saved := r.keep.State(stateKey(r.cfg.Name))
	if saved == nil {
		return
	}
	if err := k.Restore(saved); err != nil {
		r.log.Warn("sensor state not restored; the sensor learns afresh", "sensor", r.cfg.Name, "err", err)
		return
	}
	r.log.Info("sensor state restored", "sensor", r.cfg.Name)
}

// save keeps the sensor's state, if it keeps any and has learned it.
func (r *sensorRunner) save(s drivers.Sensor) {
	k, ok := s.(catalog.StateKeeper)
	if !ok || r.keep == nil {
		return
	}
	st, err := k.State()
	if err != nil {
		r.log.Debug("sensor state not saved", "sensor", r.cfg.Name, "err", err)
		return
	}
	if err := r.keep.SetState(stateKey(r.cfg.Name), st); err != nil {
		r.log.Error("sensor state not saved", "sensor", r.cfg.Name, "err", err)
	}
}

// occupancyChanged reports whether vals carry an occupancy decision other
// than the last one this runner saw (the first one counts as a change).
func (r *sensorRunner) occupancyChanged(vals []drivers.Value) bool {
	for _, v := range vals {
		if v.Quantity != drivers.Occupied || !v.IsBool {
			continue
		}
		now := int8(1)
		if !v.Bool {
			now = 2
		}
		r.mu.Lock()
		changed := r.lastOcc != now
		r.lastOcc = now
		r.mu.Unlock()
		return changed
	}
	return false
}

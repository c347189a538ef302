package agent

import (
	"sync"

	"github.com/cityedge/cityedge/drivers"
)

// occupancyRank decides which of a sensor's values rank as occupancy
// (DECISIONS 8, buffer.ClassOccupancy: sent without batch_wait, dropped
// last): a bay's state change, and its first state after the sensor was
// opened (start, re-open) or after a failed read. A periodic re-report of an
// unchanged state, magnetometer x/y/z, distances and every other value are
// ordinary readings (buffer.ClassEnvironmental).
type occupancyRank struct {
	mu   sync.Mutex
	last map[string]bool // quantity → last state reported; absent: none since the last fault
}

// reset forgets the states: the next one of each quantity ranks as a change.
func (o *occupancyRank) reset() {
	o.mu.Lock()
	o.last = nil
	o.mu.Unlock()
}

// split returns the values that rank as occupancy and the rest, each in
// their original order. Either may be empty.
func (o *occupancyRank) split(vals []drivers.Value) (change, rest []drivers.Value) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, v := range vals {
		if v.Quantity != drivers.Occupied || !v.IsBool {
			rest = append(rest, v)
			continue
		}
		if last, ok := o.last[v.Quantity]; ok && last == v.Bool {
			rest = append(rest, v)
			continue
		}
		if o.last == nil {
			o.last = map[string]bool{}
		}
		o.last[v.Quantity] = v.Bool
		change = append(change, v)
	}
	return change, rest
}

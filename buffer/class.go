package buffer

import "slices"

// Class says what a record is, for the bound: when records must be dropped,
// the class decides which go first. Record.Priority and Entry.Priority hold
// it. It is stored in every record (one byte), so its values never change.
type Class = uint8

const (
	// ClassEnvironmental is an ordinary reading (temperature, noise, a
	// periodic state report): dropped first, oldest first.
	ClassEnvironmental Class = 0
	// ClassOccupancy is an occupancy change (and a bay's first state after a
	// start or a fault): dropped last, and only once nothing of a lower rank
	// is left. Which readings rank so is the agent's decision.
	ClassOccupancy Class = 1
	// ClassReport is the agent's report of the drop counters. The queue keeps
	// at most one unsent: storing one (PutReport) replaces any older one not
	// yet acknowledged, and it ranks with environmental readings, so it can
	// never push out an occupancy change.
	ClassReport Class = 2
	// ClassZone is a zone's counts (free, occupied, unknown, total) after a
	// change, for an output that publishes them as readings (Sentilo). The
	// bound ranks it with occupancy: dropped last.
	ClassZone Class = 3
)

// dropOrder is the drop policy. Given the classes present, it returns them
// in the order the bound drops them, as groups of equal rank: all records
// of the first group go, oldest first whatever their class, before any of
// the next. Occupancy and zone counts rank last; every other class,
// including the report and any class this version does not know, ranks
// with environmental readings.
func dropOrder(classes []Class) [][]Class {
	var first, last []Class
	for _, c := range classes {
		if c == ClassOccupancy || c == ClassZone {
			last = append(last, c)
		} else {
			first = append(first, c)
		}
	}
	var out [][]Class
	for _, g := range [][]Class{first, last} {
		if len(g) > 0 {
			g = slices.Clone(g)
			slices.Sort(g)
			out = append(out, slices.Compact(g))
		}
	}
	return out
}

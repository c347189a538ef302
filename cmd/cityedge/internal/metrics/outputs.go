package metrics

import "sort"

// Output is one configured output's progress (MQTT, Sentilo): filled in
// Snapshot.Outputs when more than one output is configured, or for
// Sentilo alone.
type Output struct {
	Name     string // "mqtt", "sentilo"
	Progress uint64 // every buffered reading below this sequence number has reached the output
	Dropped  uint64 // readings the buffer's bound dropped before this output had them
	// Sentilo's answers (zero for MQTT).
	Acked    uint64
	SetAside uint64 // observations Sentilo refused on their own (400)
	Resent   uint64 // readings sent again after an unknown outcome
	Unknown  uint64 // readings in requests whose outcome was unknown
	// Held is the held sensors (404): id → reason ("404.1" not registered,
	// "404.2" not online) and the readings held.
	Held []Held
	// Gate is why nothing is sent now ("" when open): "429 ...", "401 ...",
	// "timeout", ...
	Gate string
}

// Held is one sensor whose readings Sentilo rejected.
type Held struct {
	ID, Reason string
	Readings   int
}

// outputFamilies renders Snapshot.Outputs.
func outputFamilies(s Snapshot) []*Family {
	const counter, gauge = "counter", "gauge"
	prog := &Family{Name: "cityedge_output_progress_seq", Help: "Sequence number below which every buffered reading has reached the output.", Type: gauge}
	drop := &Family{Name: "cityedge_output_dropped_readings_total", Help: "Readings the buffer dropped at its bound before the output had them.", Type: counter}
	acked := &Family{Name: "cityedge_output_acked_readings_total", Help: "Readings the output acknowledged since the agent started (Sentilo).", Type: counter}
	aside := &Family{Name: "cityedge_output_set_aside_readings_total", Help: "Readings the server refused on their own and were set aside (Sentilo 400).", Type: counter}
	resent := &Family{Name: "cityedge_output_resent_readings_total", Help: "Readings sent again after a request whose outcome was unknown.", Type: counter}
	unknown := &Family{Name: "cityedge_output_unknown_readings_total", Help: "Readings in requests whose outcome was unknown (they may be duplicated).", Type: counter}
	held := &Family{Name: "cityedge_output_held_readings", Help: "Readings held for a sensor Sentilo rejected (404.1 not registered, 404.2 not online).", Type: gauge}
	gate := &Family{Name: "cityedge_output_gate_closed", Help: "1 while the output sends nothing (throttled, refused, backing off), with the cause.", Type: gauge}
	outs := append([]Output(nil), s.Outputs...)
	sort.SliceStable(outs, func(i, j int) bool { return outs[i].Name < outs[j].Name })
	for _, o := range outs {
		prog.add(float64(o.Progress), "output", o.Name)
		drop.add(float64(o.Dropped), "output", o.Name)
		if o.Name == "mqtt" {
			continue
		}
		acked.add(float64(o.Acked), "output", o.Name)
		aside.add(float64(o.SetAside), "output", o.Name)
		resent.add(float64(o.Resent), "output", o.Name)
		unknown.add(float64(o.Unknown), "output", o.Name)
		for _, h := range o.Held {
			held.add(float64(h.Readings), "output", o.Name, "id", h.ID, "reason", h.Reason)
		}
		if o.Gate != "" {
			gate.add(1, "output", o.Name, "cause", o.Gate)
		} else {
			gate.add(0, "output", o.Name, "cause", "")
		}
	}
	return []*Family{prog, drop, acked, aside, resent, unknown, held, gate}
}

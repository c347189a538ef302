package guidance_test

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/guidance"
	"github.com/jonboulle/clockwork"
)

// How the agent drives the model: sensor events in, changed zones out (to
// MQTT and to the zone's signs), and a timer on Deadline for bays that go
// quiet.
func Example() {
	clock := clockwork.NewFakeClockAt(time.Date(2026, 12, 3, 10, 0, 0, 123e6, time.UTC))
	cfg := guidance.Config{
		AgentID: "gw-7",
		Zones:   []guidance.Zone{{Name: "z1", Bays: []string{"bay-1", "bay-2"}}},
		Sensors: map[string]guidance.Sensor{
			"bay-1": {Driver: "gpio-presence", Parking: true, Interval: 10 * time.Second},
			"bay-2": {Driver: "mb1242", Parking: true, Interval: 10 * time.Second},
		},
	}
	m, err := guidance.New(cfg, clock, map[string]uint64{"z1": 41}) // seqs kept from the last run
	if err != nil {
		fmt.Println(err)
		return
	}
	publish := func(u guidance.Update) {
		for _, z := range u.Zones {
			msg, _ := json.Marshal(z)
			fmt.Println(guidance.ZoneTopic("cityedge/gw-7", z.Zone), string(msg))
			fmt.Printf("sign %q lamp %v\n", z.Sign(), z.Lamp())
		}
	}
	publish(guidance.Update{Zones: m.Zones()}) // at start and on every (re)connect

	m.Opened("bay-1")
	m.Opened("bay-2")
	publish(m.Reading("bay-1", true, clock.Now()))
	publish(m.Reading("bay-2", false, clock.Now()))

	// bay-2's sensor goes quiet: the agent's timer fires at the deadline.
	clock.Advance(20 * time.Second)
	publish(m.Reading("bay-1", true, clock.Now())) // no change: nothing to publish
	deadline, _ := m.Deadline()                    // bay-2's last reading + 3 × 10 s
	clock.Advance(deadline.Sub(clock.Now()))
	publish(m.Tick())
	// Output:
	// cityedge/gw-7/zones/z1 {"zone":"z1","free":0,"occupied":0,"unknown":2,"total":2,"changed":"2026-12-03T10:00:00.123Z","seq":42}
	// sign "----" lamp false
	// cityedge/gw-7/zones/z1 {"zone":"z1","free":0,"occupied":1,"unknown":1,"total":2,"changed":"2026-12-03T10:00:00.123Z","seq":43}
	// sign "FULL" lamp true
	// cityedge/gw-7/zones/z1 {"zone":"z1","free":1,"occupied":1,"unknown":0,"total":2,"changed":"2026-12-03T10:00:00.123Z","seq":44}
	// sign "   1" lamp false
	// cityedge/gw-7/zones/z1 {"zone":"z1","free":0,"occupied":1,"unknown":1,"total":2,"changed":"2026-12-03T10:00:30.123Z","seq":45}
	// sign "FULL" lamp true
}

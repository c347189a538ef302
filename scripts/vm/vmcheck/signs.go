package main

import (
	"encoding/json"
	"regexp"
	"strings"
)

// Parking guidance on the emulated gateway: the zone "curb" of the loop
// detector's bay and the magnetometer's, its HT16K33 display and its FULL
// lamp. The expected display RAM follows the 4-digit backpack's wiring
// (digits at RAM 0x00, 0x02, 0x06, 0x08; segments a to g in bits 0 to 6),
// written out here by hand, apart from the driver's encoder.

var segments = map[rune]byte{
	' ': 0x00,
	'-': 0x40,                             // g
	'2': 0x01 | 0x02 | 0x08 | 0x10 | 0x40, // a b d e g
	'F': 0x01 | 0x10 | 0x20 | 0x40,        // a e f g
	'U': 0x02 | 0x04 | 0x08 | 0x10 | 0x20, // b c d e f
	'L': 0x08 | 0x10 | 0x20,               // d e f
}

// ramFor is the 16 bytes of display RAM that show text (4 characters).
func ramFor(text string) string {
	var ram [16]byte
	for i, c := range text {
		ram[[]int{0, 2, 6, 8}[i]] = segments[c]
	}
	return hexBytes(ram[:])
}

var signLine = regexp.MustCompile(`VMSIGN: (\w+) ram=([0-9a-f ]+?) lamp=(\d)`)

// checkSigns: with the bay empty the display shows the free count "   2"
// and the lamp is off; with the car over both sensors "FULL" and the lamp
// on; after the agent stopped "----" and the lamp off.
func checkSigns(r *result, lines []string) {
	want := []struct {
		label, text, lamp string
	}{{"empty", "   2", "0"}, {"car", "FULL", "1"}, {"stopped", "----", "0"}}
	got := map[string][2]string{}
	for _, l := range lines {
		if m := signLine.FindStringSubmatch(l); m != nil {
			got[m[1]] = [2]string{strings.TrimSpace(m[2]), m[3]}
		}
	}
	for _, w := range want {
		g, ok := got[w.label]
		r.expect(ok && g[0] == ramFor(w.text) && g[1] == w.lamp,
			"%s: the HT16K33 received RAM %q (want %q, %q) and the lamp line is %s (want %s)", w.label, g[0], ramFor(w.text), w.text, g[1], w.lamp)
	}
}

// checkZones: every zone message of the captured run adds up, seq grows,
// the car made the zone full, and the clean stop left every bay unknown.
func checkZones(r *result) {
	if !r.expect(len(r.zones) > 0, "zone messages reach the broker") {
		return
	}
	var last uint64
	full := false
	var z struct {
		Zone                           string
		Free, Occupied, Unknown, Total int
		Seq                            uint64
	}
	for _, p := range r.zones {
		if err := json.Unmarshal([]byte(p), &z); err != nil {
			r.fail("zone message %.80s: %v", p, err)
			return
		}
		if z.Free+z.Occupied+z.Unknown != z.Total || z.Total != 2 || z.Zone != zoneName || z.Seq <= last {
			r.fail("zone message %s: counts must add up to the 2 bays of %q and seq grow (after %d)", p, zoneName, last)
			return
		}
		last = z.Seq
		full = full || z.Occupied == 2
	}
	r.expect(full, "a zone message says both bays occupied while the car stood")
	r.expect(z.Unknown == 2, "the last zone message (clean stop) says every bay unknown: %s", r.zones[len(r.zones)-1])
}

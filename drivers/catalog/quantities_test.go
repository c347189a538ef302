package catalog

import "testing"

// TestQuantitiesEveryDriver: every driver in the catalog lists what it
// reports with its default options, each quantity with a unit or a flag.
func TestQuantitiesEveryDriver(t *testing.T) {
	for _, d := range all {
		var opts any
		if d.Options != nil {
			opts = d.Options()
		}
		if d.Name == "ads1115" {
			opts = &adcOpts{Channels: []adcChannel{{Quantity: "noise", Unit: "dB"}}}
		}
		qs := Quantities(d.Name, opts)
		if len(qs) == 0 {
			t.Errorf("%s: no quantities", d.Name)
		}
		for _, q := range qs {
			if q.Name == "" || (q.Unit == "") != q.Bool {
				t.Errorf("%s: quantity %+v: want a name and a unit, or a flag without one", d.Name, q)
			}
		}
	}
	if Quantities("nope", nil) != nil {
		t.Error("an unknown driver has quantities")
	}
}

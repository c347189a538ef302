package catalog

import (
	"slices"
	"testing"
)

// Every entry of the list is complete and found by its name: a new chip's
// entry that lacks a part fails here before any config uses it.
func TestCatalogEntries(t *testing.T) {
	seen := map[string]bool{}
	for _, d := range all {
		if d.Name == "" || seen[d.Name] {
			t.Errorf("entry %q: empty or duplicate name", d.Name)
		}
		seen[d.Name] = true
		if got, ok := Lookup(d.Name); !ok || got.Name != d.Name {
			t.Errorf("Lookup(%q) = %q, %v", d.Name, got.Name, ok)
		}
		if d.Chips == "" || d.Open == nil || d.Options == nil {
			t.Errorf("%s: Chips, Open and Options are required", d.Name)
		}
		switch d.Kind {
		case I2C:
			if len(d.Addrs) == 0 || d.SimChip == nil || d.SimPin != nil {
				t.Errorf("%s: an I2C entry needs addresses and SimChip, and no SimPin", d.Name)
			}
		case GPIO:
			if len(d.Addrs) != 0 || d.SimPin == nil || d.SimChip != nil {
				t.Errorf("%s: a GPIO entry needs SimPin, and no addresses or SimChip", d.Name)
			}
		default:
			t.Errorf("%s: kind %v", d.Name, d.Kind)
		}
	}
	if names := Names(); !slices.IsSorted(names) || len(names) != len(all) {
		t.Errorf("Names() = %v", names)
	}
	if _, ok := Lookup("no-such-chip"); ok {
		t.Error("Lookup found an unknown name")
	}
}

package config

import (
	"sort"

	"github.com/cityedge/cityedge/drivers/catalog"
)

// Keys lists every key of the configuration file outside [[sensors]], as
// "table.key", sorted: read from Config's own tags, so that a key added to
// a table is listed without a second list to keep (the man page is made
// from it).
func Keys() []string {
	var out []string
	for table, t := range tables() {
		if t == nil {
			continue
		}
		for _, k := range tagsOf(t) {
			out = append(out, table+"."+k)
		}
	}
	sort.Strings(out)
	return out
}

// SensorKeys are the keys every [[sensors]] table may have; the others
// belong to the driver (DriverKeys).
func SensorKeys() []string {
	return []string{"name", "driver", "bus", "address", "pin", "interval", "location"}
}

// DriverKeys lists each driver's own option keys, by driver name.
func DriverKeys() map[string][]string {
	out := map[string][]string{}
	for _, name := range catalog.Names() {
		d, _ := catalog.Lookup(name)
		var keys []string
		if d.Options != nil {
			if opts := d.Options(); opts != nil {
				keys = optionKeys(opts)
			}
		}
		out[name] = keys
	}
	return out
}

package sentilo

import (
	"fmt"
	"sort"
	"strings"
)

// validID reports whether s is a Sentilo identifier: [0-9A-Za-z_-]+
// ("The identifier must have only alphanumeric (i.e. letters and numbers),
// undescores and hyphens characters", docs/api_docs/services/catalog/create_sensors.rst).
func validID(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !idChar(s[i]) {
			return false
		}
	}
	return true
}

func idChar(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '-'
}

// DefaultID is the Sentilo sensor id of one quantity of one sensor (or of a
// zone's count, quantity "free", "occupied", "unknown" or "total"):
// <agent id>-<sensor>-<quantity>, every byte outside [0-9A-Za-z_-] replaced
// by '_'.
func DefaultID(agentID, sensor, quantity string) string {
	s := agentID + "-" + sensor + "-" + quantity
	b := []byte(s)
	for i := range b {
		if !idChar(b[i]) {
			b[i] = '_'
		}
	}
	return string(b)
}

// Quantity names one published series: a sensor (or zone) and a quantity.
type Quantity struct{ Sensor, Quantity string }

// String is the form of the sentilo.ids keys: "sensor/quantity".
func (q Quantity) String() string { return q.Sensor + "/" + q.Quantity }

// MapIDs gives every quantity its Sentilo id: the override from sentilo.ids
// (keys "sensor/quantity") or DefaultID. It refuses an override key that
// names no quantity in qs, an override that is no valid Sentilo id, and two
// quantities mapping to one id (the error names both).
func MapIDs(agentID string, qs []Quantity, overrides map[string]string) (map[Quantity]string, error) {
	known := make(map[string]Quantity, len(qs))
	for _, q := range qs {
		known[q.String()] = q
	}
	keys := make([]string, 0, len(overrides))
	for k := range overrides {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, ok := known[k]; !ok {
			if !strings.Contains(k, "/") {
				return nil, fmt.Errorf("sentilo.ids: key %q: expected \"sensor/quantity\"", k)
			}
			return nil, fmt.Errorf("sentilo.ids: key %q names no configured sensor quantity", k)
		}
		if v := overrides[k]; !validID(v) {
			return nil, fmt.Errorf("sentilo.ids: %q = %q: a Sentilo id has only letters, digits, '_' and '-'", k, v)
		}
	}
	ids := make(map[Quantity]string, len(qs))
	owner := make(map[string]Quantity, len(qs))
	for _, q := range qs {
		id, ok := overrides[q.String()]
		if !ok {
			id = DefaultID(agentID, q.Sensor, q.Quantity)
		}
		if prev, dup := owner[id]; dup && prev != q {
			return nil, fmt.Errorf("sentilo.ids: %q and %q both map to Sentilo id %q; set a distinct id for one of them in [sentilo.ids]", prev.String(), q.String(), id)
		}
		owner[id] = q
		ids[q] = id
	}
	return ids, nil
}

// ComponentID is the Sentilo component of a sensor or zone's series:
// <agent id>-<name>, every byte outside [0-9A-Za-z_-] replaced by '_'.
func ComponentID(agentID, name string) string {
	b := []byte(agentID + "-" + name)
	for i := range b {
		if !idChar(b[i]) {
			b[i] = '_'
		}
	}
	return string(b)
}

package config

import (
	"fmt"
	"strconv"
	"strings"
)

// Rate is uplink.max_rate: readings or bytes per second, for metered
// cellular links. The zero Rate means unlimited.
type Rate struct {
	PerSec float64
	Bytes  bool // the rate counts bytes of payload, not readings
}

// Unlimited reports whether r sets no limit.
func (r Rate) Unlimited() bool { return r.PerSec == 0 }

// ParseRate reads "500/s" (readings per second) or "20KiB/s" (bytes per
// second); "" means unlimited.
func ParseRate(s string) (Rate, error) {
	if s == "" {
		return Rate{}, nil
	}
	bad := fmt.Errorf("%q: write readings per second as \"500/s\" or bytes per second as \"20KiB/s\"", s)
	num, ok := strings.CutSuffix(strings.TrimSpace(s), "/s")
	if !ok {
		return Rate{}, bad
	}
	var r Rate
	if n, err := strconv.ParseFloat(num, 64); err == nil {
		r.PerSec = n
	} else if b, err := ParseSize(num); err == nil && strings.ContainsAny(num, "B") {
		r.PerSec, r.Bytes = float64(b), true
	} else {
		return Rate{}, bad
	}
	if r.PerSec < 1 || r.PerSec > 1e9 {
		return Rate{}, fmt.Errorf("%q is out of range: at least 1 reading or byte per second", s)
	}
	return r, nil
}

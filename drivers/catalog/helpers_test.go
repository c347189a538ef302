package catalog

import (
	"bytes"
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/sim"
	"github.com/pelletier/go-toml/v2"
)

func lookup(t *testing.T, name string) Driver {
	t.Helper()
	d, ok := Lookup(name)
	if !ok {
		t.Fatalf("driver %q is not registered", name)
	}
	return d
}

var errNoOptions = errors.New("driver takes no options")

// decodeOpts fills d's options from a TOML snippet the way the agent's
// config decoder does (strictly), then validates them. A driver without
// options takes only an empty snippet.
func decodeOpts(t *testing.T, d Driver, src string) (any, error) {
	t.Helper()
	opts := d.Options()
	if opts == nil {
		if strings.TrimSpace(src) != "" {
			return nil, errNoOptions
		}
		return nil, nil
	}
	if err := toml.NewDecoder(bytes.NewReader([]byte(src))).DisallowUnknownFields().Decode(opts); err != nil {
		return nil, err
	}
	if v, ok := opts.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			return nil, err
		}
	}
	return opts, nil
}

// optsErr checks the error of decoding src against want: "" for success,
// "*" for any error (unknown keys and wrong types are the config decoder's to
// report with file and line; here it is enough that they fail), otherwise a
// part of the message. It reports whether the case ends here.
func optsErr(t *testing.T, src string, err error, want string) bool {
	t.Helper()
	switch {
	case want == "":
		if err != nil {
			t.Errorf("%q: %v", src, err)
		}
		return err != nil
	case err == nil || want != "*" && !strings.Contains(err.Error(), want):
		t.Errorf("%q: error %v, want %q", src, err, want)
	}
	return true
}

// envOpenRead opens driver name at addr on a simulated bus holding chip (none
// when nil) with opts, reads it once and halts it.
func envOpenRead(t *testing.T, name string, chip sim.Chip, addr uint16, opts any) ([]drivers.Value, error) {
	t.Helper()
	d := lookup(t, name)
	bus := sim.NewBus("sim-i2c1")
	if chip != nil {
		bus.Attach(addr, chip)
	}
	s, err := d.Open(Target{Sensor: "env-1", Bus: bus, BusName: "1", Addr: addr}, opts)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := s.Halt(); err != nil {
			t.Errorf("Halt: %v", err)
		}
	}()
	if s.String() == "" {
		t.Error("empty String()")
	}
	return s.Read(context.Background())
}

// envWant is a quantity a reading must carry, in its unit and range.
type envWant struct {
	quantity, unit string
	lo, hi         float64
}

func envCheckValues(t *testing.T, vals []drivers.Value, want []envWant) {
	t.Helper()
	if len(vals) != len(want) {
		t.Fatalf("values %+v, want %d", vals, len(want))
	}
	for i, w := range want {
		v := vals[i]
		if v.Quantity != w.quantity || v.Unit != w.unit || v.IsBool || math.IsNaN(v.Num) || v.Num < w.lo || v.Num > w.hi {
			t.Errorf("value %d: %+v, want %s in %s within %v..%v", i, v, w.quantity, w.unit, w.lo, w.hi)
		}
	}
}

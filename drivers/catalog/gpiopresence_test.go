package catalog

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/gpiopresence"
	"github.com/cityedge/cityedge/drivers/internal/drivertest"
	"github.com/cityedge/cityedge/drivers/sim"
	"periph.io/x/conn/v3/gpio"
)

func TestGPIOPresenceOptions(t *testing.T) {
	d := lookup(t, "gpio-presence")
	if d.Kind != GPIO || d.SimPin == nil || d.SimChip != nil {
		t.Fatalf("gpio-presence registered as %v with SimPin %v, SimChip %v", d.Kind, d.SimPin != nil, d.SimChip != nil)
	}
	cases := []struct {
		src     string
		want    gpiopresence.Opts
		wantErr string
	}{
		{"", gpiopresence.Opts{Active: gpio.Low, Pull: gpio.PullUp, Debounce: 200 * time.Millisecond}, ""},
		{`active = "high"`, gpiopresence.Opts{Active: gpio.High, Pull: gpio.PullDown, Debounce: 200 * time.Millisecond}, ""},
		{`active = "high"` + "\n" + `pull = "up"`, gpiopresence.Opts{Active: gpio.High, Pull: gpio.PullUp, Debounce: 200 * time.Millisecond}, ""},
		{`pull = "none"` + "\n" + `debounce = "1s"`, gpiopresence.Opts{Active: gpio.Low, Pull: gpio.Float, Debounce: time.Second}, ""},
		{`pull = "down"` + "\n" + `debounce = "0s"`, gpiopresence.Opts{Active: gpio.Low, Pull: gpio.PullDown}, ""},
		{`active = "medium"`, gpiopresence.Opts{}, `active = "medium"`},
		{`active = "LOW"`, gpiopresence.Opts{}, `active = "LOW"`},
		{`pull = "sideways"`, gpiopresence.Opts{}, `pull = "sideways"`},
		{`debounce = "-5ms"`, gpiopresence.Opts{}, `debounce = "-5ms"`},
		{`debounce = "2m"`, gpiopresence.Opts{}, `debounce = "2m0s"`},
		{`debounce = "fast"`, gpiopresence.Opts{}, `"fast" is not a duration`},
		{`debounce = 200`, gpiopresence.Opts{}, `debounce = "200ns"`},
		{`debounce = "500us"`, gpiopresence.Opts{}, `debounce = "500µs"`},
		{`interval_ms = 5`, gpiopresence.Opts{}, "strict mode"},
	}
	for _, tc := range cases {
		t.Run(tc.src, func(t *testing.T) {
			opts, err := decodeOpts(t, d, tc.src)
			if drivertest.WantErr(t, "decode", err, tc.wantErr) {
				return
			}
			if got := opts.(*presenceOpts).dev(); got != tc.want {
				t.Errorf("options %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestGPIOPresenceOpenRead(t *testing.T) {
	d := lookup(t, "gpio-presence")
	pin := sim.NewPin("GPIO17", gpio.Low)
	s, err := d.Open(Target{Sensor: "bay-17", Pin: pin}, d.Options())
	if err != nil {
		t.Fatal(err)
	}
	vals, err := s.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := []drivers.Value{drivers.Flag(drivers.Occupied, true)}; len(vals) != 1 || vals[0] != want[0] {
		t.Errorf("Read() = %+v, want %+v (active low line held low)", vals, want)
	}
	if _, ok := s.(drivers.Watcher); !ok {
		t.Error("gpio-presence sensor is not a drivers.Watcher")
	}
	if err := s.Halt(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read(context.Background()); err == nil {
		t.Error("Read after Halt succeeded")
	}
	if _, err := d.Open(Target{Sensor: "bay-17"}, d.Options()); err == nil || !strings.Contains(err.Error(), "no pin") {
		t.Errorf("Open without a pin: %v", err)
	}
	bad := d.Options().(*presenceOpts)
	bad.Active = "sideways"
	if _, err := d.Open(Target{Sensor: "bay-17", Pin: pin}, bad); err == nil || !strings.Contains(err.Error(), "active") {
		t.Errorf("Open with bad options: %v", err)
	}
}

// The simulated detector follows its bay through the real driver: the
// state at start, then the bay's first change, debounced past the contact
// bounce the simulation adds.
func TestGPIOPresenceSimulated(t *testing.T) {
	for _, active := range []string{"low", "high"} {
		t.Run(active, func(t *testing.T) {
			d := lookup(t, "gpio-presence")
			opts, err := decodeOpts(t, d, `active = "`+active+`"`+"\n"+`debounce = "50ms"`)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			bay := sim.NewBay(6, time.Second) // seed 6: the first change comes after 1 s
			pin := d.SimPin(ctx, SimSpec{Sensor: "bay-1", Bay: bay, Seed: 6}, opts)
			s, err := d.Open(Target{Sensor: "bay-1", Pin: pin}, opts)
			if err != nil {
				t.Fatal(err)
			}
			emits := make(chan bool, 16)
			done := make(chan error, 1)
			go func() {
				done <- s.(drivers.Watcher).Watch(ctx, func(v []drivers.Value) {
					if len(v) != 1 || v[0].Quantity != drivers.Occupied || !v[0].IsBool {
						t.Errorf("emitted %+v, want one occupied flag", v)
					}
					emits <- v[0].Bool
				})
			}()
			for i, want := range []bool{false, true} {
				select {
				case got := <-emits:
					if got != want {
						t.Fatalf("emit %d: occupied %v, want %v", i, got, want)
					}
					if got != bay.Occupied(time.Now()) {
						t.Fatalf("emit %d: occupied %v, but the bay says %v", i, got, !got)
					}
				case <-time.After(20 * time.Second): // hang guard
					t.Fatalf("emit %d: nothing within 20s", i)
				}
			}
			select {
			case extra := <-emits:
				t.Fatalf("a bounce was reported as a change: extra emit %v", extra)
			default:
			}
			cancel()
			if err := <-done; err != context.Canceled {
				t.Errorf("Watch returned %v after cancel", err)
			}
		})
	}
}

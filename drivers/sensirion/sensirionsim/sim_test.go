package sensirionsim

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/cityedge/cityedge/drivers/sensirion"
	"github.com/cityedge/cityedge/drivers/sim"
	"github.com/jonboulle/clockwork"
)

func TestChip(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Unix(0, 0))
	chip := &Chip{Name: "test sim", CmdLen: 2, Clock: clock,
		Handle: func(cmd uint16, args []uint16, _ time.Time) ([]uint16, time.Duration, error) {
			switch cmd {
			case 0x3682:
				return []uint16{0xBEEF, 0x1234, 0x5678}, time.Millisecond, nil
			case 0x2427:
				if len(args) != 1 {
					return nil, 0, errors.New("wants one argument")
				}
				return nil, time.Millisecond, nil
			}
			return nil, 0, errors.New("unknown command")
		}}
	read := func(n int) ([]byte, error) {
		r := make([]byte, n)
		return r, chip.Tx(nil, r)
	}
	if err := chip.Tx(nil, nil); err != nil {
		t.Errorf("address probe: %v", err)
	}
	if _, err := read(3); !errors.Is(err, sim.ErrNACK) {
		t.Errorf("read with nothing pending: %v, want NACK", err)
	}
	if err := chip.Tx(sensirion.Cmd16(0x3682), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := read(9); !errors.Is(err, sim.ErrNACK) {
		t.Errorf("read before the execution time: %v, want NACK", err)
	}
	if err := chip.Tx(sensirion.Cmd16(0x3682), nil); !errors.Is(err, sim.ErrNACK) {
		t.Errorf("command while busy: %v, want NACK", err)
	}
	clock.Advance(time.Millisecond)
	r, err := read(3) // the master may stop after the first word
	if err != nil || !bytes.Equal(r, []byte{0xBE, 0xEF, 0x92}) {
		t.Errorf("partial read %#v, %v", r, err)
	}
	if _, err := read(3); !errors.Is(err, sim.ErrNACK) {
		t.Errorf("second read of one response: %v, want NACK", err)
	}
	for _, w := range [][]byte{
		{0x24, 0x27, 0x00, 0x00, 0x00}, // argument CRC wrong
		{0x24, 0x27, 0x00},             // torn argument
		{0x12, 0x34},                   // unknown command
		{0x24, 0x27},                   // missing argument
	} {
		if err := chip.Tx(w, nil); !errors.Is(err, sim.ErrNACK) {
			t.Errorf("write %#v: %v, want NACK", w, err)
		}
	}
	if err := chip.Tx([]byte{0x24, 0x27, 0x00, 0x00, 0x81}, make([]byte, 3)); !errors.Is(err, sim.ErrNACK) {
		t.Errorf("write+read in one transaction: %v, want NACK", err)
	}
	if err := chip.Tx([]byte{0x24, 0x27, 0x00, 0x00, 0x81}, nil); err != nil {
		t.Errorf("valid write: %v", err)
	}
}

// A periodic schedule makes one measurement per interval, keeps only the
// latest, hands it out once, and forgets it when stopped.
func TestPeriodic(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var encoded []time.Time
	p := Periodic{Every: 5 * time.Second, Encode: func(at time.Time) []uint16 {
		encoded = append(encoded, at)
		return []uint16{uint16(at.Unix())}
	}}
	p.Advance(t0.Add(time.Hour))
	if p.Running() || p.Ready() || len(encoded) != 0 {
		t.Fatal("measured before Start")
	}
	p.Start(t0)
	p.Advance(t0.Add(4999 * time.Millisecond))
	if p.Ready() {
		t.Fatal("ready before the first interval ended")
	}
	if _, ok := p.Take(); ok {
		t.Fatal("took a measurement that is not there")
	}
	p.Advance(t0.Add(17 * time.Second)) // due at 5, 10 and 15 s: the latest is kept
	if got, ok := p.Take(); !ok || got[0] != 1015 || len(encoded) != 1 || !encoded[0].Equal(t0.Add(15*time.Second)) {
		t.Fatalf("Take = %v, %v after encoding %v; want the measurement of 15 s, once", got, ok, encoded)
	}
	if _, ok := p.Take(); ok || p.Ready() {
		t.Fatal("a measurement was handed out twice")
	}
	p.Advance(t0.Add(20 * time.Second))
	p.Stop()
	if _, ok := p.Take(); ok || p.Running() {
		t.Fatal("a measurement survived Stop")
	}
}

func TestSensorSamples(t *testing.T) {
	w := sim.NewWorld(1)
	at := time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)
	s := NewSensor("test sim", 1, w, func(uint16, []uint16, time.Time) ([]uint16, time.Duration, error) { return nil, 0, nil })
	if s.Measured() != (sim.Weather{}) {
		t.Fatal("Measured before any measurement")
	}
	// The world adds fresh noise at each look, so only the street's slow
	// parts compare with a second look.
	if got, again := s.Sample(at), w.At(at); s.Measured() != got || got.Lux < again.Lux-100 || got.Lux > again.Lux+100 {
		t.Fatalf("Sample = %+v, Measured = %+v, world %+v", got, s.Measured(), again)
	}
	for frac, want := range map[float64]uint16{-1: 0, 0: 0, 0.5: 32768, 1: 65535, 2: 65535} {
		if got := Ticks(frac); got != want {
			t.Errorf("Ticks(%v) = %d, want %d", frac, got, want)
		}
	}
}

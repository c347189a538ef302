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

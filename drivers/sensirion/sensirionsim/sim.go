// Package sensirionsim simulates the I2C side shared by Sensirion's sensors
// (SHT3x, SHT4x, SCD4x, SPS30): command framing, CRC-checked argument words,
// execution times and the NACKed read while a command executes. Each chip's
// simulator (sht3xsim, sht4xsim, scd4xsim, sps30sim) only answers its
// commands. It is for tests and `cityedge --simulate`; no driver imports it.
package sensirionsim

import (
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/cityedge/cityedge/drivers/sensirion"
	"github.com/cityedge/cityedge/drivers/sim"
	"github.com/jonboulle/clockwork"
)

// Chip is the I2C side of a simulated Sensirion chip: it frames commands
// and responses the way the chips do and hands each command to Handle.
//
// A write is the command followed by argument words whose CRCs are checked.
// The response becomes readable once the command's execution time has passed;
// until then, and when there is nothing to read, the chip does not acknowledge
// its read header, as the real ones do. A read may stop early (the master
// NACKs), and takes the response away. A write during execution is not
// acknowledged either.
type Chip struct {
	Name   string // "sht3x sim", for errors
	CmdLen int    // command length in bytes: 1 (SHT4x) or 2
	// Clock gives the chip's time; nil is the real clock. Tests share a
	// fake clock with the driver, so the chip sees exactly its waits.
	Clock clockwork.Clock

	// Handle runs cmd with its arguments at now. It returns the response
	// words (nil for none) and the execution time, or an error for a command
	// the chip refuses in its current state (it is not acknowledged).
	Handle func(cmd uint16, args []uint16, now time.Time) (resp []uint16, exec time.Duration, err error)

	mu      sync.Mutex
	pending []byte
	readyAt time.Time
}

var _ sim.Chip = (*Chip)(nil)

// Tx implements sim.Chip.
func (s *Chip) Tx(w, r []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.Clock != nil {
		now = s.Clock.Now()
	}
	switch {
	case len(w) > 0 && len(r) > 0:
		return fmt.Errorf("%s: write and read in one transaction: the chip needs a stop and its execution time in between: %w", s.Name, sim.ErrNACK)
	case len(w) > 0:
		return s.command(w, now)
	case len(r) > 0:
		if now.Before(s.readyAt) {
			return fmt.Errorf("%s: busy for another %v: %w", s.Name, s.readyAt.Sub(now), sim.ErrNACK)
		}
		if s.pending == nil {
			return fmt.Errorf("%s: nothing to read: %w", s.Name, sim.ErrNACK)
		}
		if len(r) > len(s.pending) {
			return fmt.Errorf("%s: read of %d bytes, the response has %d", s.Name, len(r), len(s.pending))
		}
		copy(r, s.pending)
		s.pending = nil
	}
	return nil // an empty transaction is an address probe: acknowledged
}

func (s *Chip) command(w []byte, now time.Time) error {
	if now.Before(s.readyAt) {
		return fmt.Errorf("%s: command while busy: %w", s.Name, sim.ErrNACK)
	}
	if len(w) < s.CmdLen || (len(w)-s.CmdLen)%3 != 0 {
		return fmt.Errorf("%s: write of %d bytes is not a command and words: %w", s.Name, len(w), sim.ErrNACK)
	}
	var cmd uint16
	if s.CmdLen == 1 {
		cmd = uint16(w[0])
	} else {
		cmd = binary.BigEndian.Uint16(w)
	}
	args, err := sensirion.Words(w[s.CmdLen:])
	if err != nil {
		return fmt.Errorf("%s: command %#x: argument %w: %w", s.Name, cmd, err, sim.ErrNACK)
	}
	resp, exec, err := s.Handle(cmd, args, now)
	if err != nil {
		return fmt.Errorf("%s: command %#x: %w: %w", s.Name, cmd, err, sim.ErrNACK)
	}
	s.pending = nil
	if resp != nil {
		s.pending = make([]byte, 0, 3*len(resp))
		for _, v := range resp {
			s.pending = sensirion.AppendWord(s.pending, v)
		}
	}
	s.readyAt = now.Add(exec)
	return nil
}

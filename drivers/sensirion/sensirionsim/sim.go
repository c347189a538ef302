// Package sensirionsim simulates the I2C side shared by Sensirion's sensors
// (SHT3x, SHT4x, SCD4x, SPS30): command framing, CRC-checked argument words,
// execution times and the NACKed read while a command executes. Each chip's
// simulator (sht3xsim, sht4xsim, scd4xsim, sps30sim) only answers its
// commands. It is for tests and `cityedge --simulate`; no driver imports it.
package sensirionsim

import (
	"encoding/binary"
	"fmt"
	"math"
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

// Sensor is what every simulated Sensirion chip shares: its I2C side (a
// Chip) and the World it measures, with the weather its last measurement
// encoded. A chip's simulator embeds it and only answers its commands in
// its handle function.
type Sensor struct {
	chip  Chip
	world *sim.World

	mu       sync.Mutex
	measured sim.Weather
}

// NewSensor returns the shared part of a simulated chip called name with
// commands of cmdLen bytes, measuring world and answering through handle
// (see Chip.Handle).
func NewSensor(name string, cmdLen int, world *sim.World, handle func(cmd uint16, args []uint16, now time.Time) ([]uint16, time.Duration, error)) *Sensor {
	return &Sensor{chip: Chip{Name: name, CmdLen: cmdLen, Handle: handle}, world: world}
}

// SetClock makes the simulation read its time from c, such as a test's fake
// clock shared with the driver; the default is the real clock. Call it
// before the first transaction.
func (s *Sensor) SetClock(c clockwork.Clock) { s.chip.Clock = c }

// Tx implements sim.Chip.
func (s *Sensor) Tx(w, r []byte) error { return s.chip.Tx(w, r) }

// Measured returns the weather the last measurement encoded.
func (s *Sensor) Measured() sim.Weather {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.measured
}

// Sample measures the World at t and keeps it as the last measurement.
func (s *Sensor) Sample(t time.Time) sim.Weather {
	wx := s.world.At(t)
	s.mu.Lock()
	s.measured = wx
	s.mu.Unlock()
	return wx
}

// Ticks is the inverse of the datasheets' linear conversions: the 16-bit
// signal for a fraction of full scale, clamped to 0..1.
func Ticks(fraction float64) uint16 {
	return uint16(math.Round(math.Max(0, math.Min(1, fraction)) * 65535))
}

// Periodic is the measurement schedule of a chip that measures on its own
// (the SCD4x's periodic measurement, the SPS30's measurement mode): once
// started, a measurement falls due every Every; the chip keeps only the
// latest, flags it ready until it is read, and forgets it when stopped.
type Periodic struct {
	Every time.Duration
	// Encode returns the response words of the measurement due at t.
	Encode func(t time.Time) []uint16

	on, ready bool
	next      time.Time
	data      []uint16
}

// Start starts measuring at now; the first measurement is due Every later.
func (p *Periodic) Start(now time.Time) {
	p.on, p.ready = true, false
	p.next = now.Add(p.Every)
}

// Stop stops measuring and drops an unread measurement.
func (p *Periodic) Stop() { p.on, p.ready = false, false }

// Running reports whether the chip is measuring.
func (p *Periodic) Running() bool { return p.on }

// Advance makes the measurements due by now; only the latest is kept.
func (p *Periodic) Advance(now time.Time) {
	if !p.on || now.Before(p.next) {
		return
	}
	at := p.next
	for !now.Before(p.next) {
		at = p.next
		p.next = p.next.Add(p.Every)
	}
	p.data = p.Encode(at)
	p.ready = true
}

// Ready reports whether a new measurement waits to be read.
func (p *Periodic) Ready() bool { return p.ready }

// Take returns the new measurement once, and false when there is none.
func (p *Periodic) Take() ([]uint16, bool) {
	if !p.on || !p.ready {
		return nil, false
	}
	p.ready = false
	return p.data, true
}

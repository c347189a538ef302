package gpiopresence

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/drivers/sim"
	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
)

// scriptPin is a gpiotest.Pin whose waits run on a fake clock and which
// reports each WaitForEdge call, so a test can step the driver in lock-step:
// every edge and every timeout happens at a fake instant the test chose,
// whatever the scheduler does.
type scriptPin struct {
	*gpiotest.Pin
	clock   *clockwork.FakeClock
	entered chan time.Duration
	halt    chan struct{}
}

func newScriptPin(clock *clockwork.FakeClock) *scriptPin {
	return &scriptPin{
		Pin:     &gpiotest.Pin{N: "GPIO17", Num: 17, EdgesChan: make(chan gpio.Level)},
		clock:   clock,
		entered: make(chan time.Duration),
		halt:    make(chan struct{}, 1),
	}
}

func (p *scriptPin) WaitForEdge(timeout time.Duration) bool {
	// The timer exists before the test hears of the wait, so an Advance the
	// test makes afterwards always reaches it.
	after := p.clock.After(timeout)
	p.entered <- timeout
	select {
	case l := <-p.EdgesChan:
		_ = p.Out(l)
		return true
	case <-after:
		return false
	case <-p.halt:
		return false
	}
}

func (p *scriptPin) Halt() error {
	select {
	case p.halt <- struct{}{}:
	default:
	}
	return nil
}

// event is a line change at a fake instant after Watch started. A silent one
// moves the level without delivering an edge (a lost edge).
type event struct {
	at     time.Duration
	level  gpio.Level
	silent bool
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second): // a hang guard, not a timing assertion
		t.Fatalf("no %s within 10s: the driver is stuck", what)
	}
	var zero T
	return zero
}

// runScript runs Watch over events on a fake clock until end and returns the
// states it emitted.
func runScript(t *testing.T, opts Opts, initial gpio.Level, events []event, end time.Duration) []bool {
	t.Helper()
	clock := clockwork.NewFakeClock()
	pin := newScriptPin(clock)
	opts.Clock = clock
	dev, err := New(pin, &opts)
	if err != nil {
		t.Fatal(err)
	}
	_ = pin.Out(initial)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	emits := make(chan bool, 64)
	done := make(chan error, 1)
	go func() { done <- dev.Watch(ctx, func(occ bool) { emits <- occ }) }()

	// Every wait must be bounded so that a cancelled context is noticed,
	// and never 0, which periph's Linux driver takes as "wait forever".
	nextWait := func(what string) time.Time {
		w := recv(t, pin.entered, what)
		if w <= 0 || w > waitSlice {
			t.Errorf("WaitForEdge(%s): want 0 < timeout <= %s", w, waitSlice)
		}
		return clock.Now().Add(w)
	}
	start := clock.Now()
	deadline := nextWait("first wait")
	advanceTo := func(at time.Time) {
		for !deadline.After(at) {
			clock.Advance(deadline.Sub(clock.Now()))
			deadline = nextWait("wait after timeout")
		}
		clock.Advance(at.Sub(clock.Now()))
	}
	for _, e := range events {
		advanceTo(start.Add(e.at))
		if e.silent {
			_ = pin.Out(e.level)
			continue
		}
		pin.EdgesChan <- e.level
		deadline = nextWait("wait after edge")
	}
	advanceTo(start.Add(end))

	cancel()
	clock.Advance(deadline.Sub(clock.Now())) // end the pending wait
	if err := recv(t, done, "Watch return"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Watch returned %v, want context.Canceled", err)
	}
	close(emits)
	var got []bool
	for occ := range emits {
		got = append(got, occ)
	}
	return got
}

func TestWatchDebounce(t *testing.T) {
	ms := time.Millisecond
	low := Opts{Active: gpio.Low, Pull: gpio.PullUp, Debounce: 200 * ms}
	high := Opts{Active: gpio.High, Pull: gpio.PullDown, Debounce: 200 * ms}
	bounce := func(at time.Duration, to gpio.Level) []event {
		// A relay closing: the contact chatters for 10 ms before it settles.
		return []event{{at, to, false}, {at + 2*ms, !to, false}, {at + 5*ms, to, false}, {at + 8*ms, !to, false}, {at + 10*ms, to, false}}
	}
	cases := []struct {
		name    string
		opts    Opts
		initial gpio.Level
		events  []event
		end     time.Duration
		want    []bool
	}{
		{"active low idle", low, gpio.High, nil, 2 * time.Second, []bool{false}},
		{"active low starts occupied", low, gpio.Low, nil, time.Second, []bool{true}},
		{"active high starts occupied", high, gpio.High, nil, time.Second, []bool{true}},
		{"active low arrival", low, gpio.High, []event{{time.Second, gpio.Low, false}}, 2 * time.Second, []bool{false, true}},
		{"active low bounce counts once", low, gpio.High, bounce(time.Second, gpio.Low), 3 * time.Second, []bool{false, true}},
		{"active high bounce counts once", high, gpio.Low, bounce(time.Second, gpio.High), 3 * time.Second, []bool{false, true}},
		{
			"active high arrival and departure", high, gpio.Low,
			append(bounce(time.Second, gpio.High), bounce(5*time.Second, gpio.Low)...),
			7 * time.Second, []bool{false, true, false},
		},
		{
			"glitch shorter than debounce is ignored", low, gpio.High,
			[]event{{time.Second, gpio.Low, false}, {time.Second + 150*ms, gpio.High, false}},
			3 * time.Second, []bool{false},
		},
		{
			"change just before debounce ends restarts it", low, gpio.High,
			[]event{{time.Second, gpio.Low, false}, {time.Second + 199*ms, gpio.High, false}, {time.Second + 398*ms, gpio.Low, false}},
			3 * time.Second, []bool{false, true},
		},
		{
			"pulse longer than debounce counts twice", low, gpio.High,
			[]event{{time.Second, gpio.Low, false}, {time.Second + 300*ms, gpio.High, false}},
			3 * time.Second, []bool{false, true, false},
		},
		{
			"zero debounce reports every edge", Opts{Active: gpio.Low, Pull: gpio.PullUp}, gpio.High,
			[]event{{time.Second, gpio.Low, false}, {time.Second + 5*ms, gpio.High, false}},
			2 * time.Second, []bool{false, true, false},
		},
		{
			"lost edge is caught by the level check", low, gpio.High,
			[]event{{time.Second, gpio.Low, true}},
			3 * time.Second, []bool{false, true},
		},
		{
			"long debounce", Opts{Active: gpio.Low, Pull: gpio.PullUp, Debounce: 2 * time.Second}, gpio.High,
			[]event{{time.Second, gpio.Low, false}, {2 * time.Second, gpio.High, false}, {2*time.Second + 100*ms, gpio.Low, false}},
			3 * time.Second, []bool{false}, // still inside the debounce at the end
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := runScript(t, tc.opts, tc.initial, tc.events, tc.end)
			if !slices.Equal(got, tc.want) {
				t.Errorf("emitted %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSenseFollowsWatch(t *testing.T) {
	clock := clockwork.NewFakeClock()
	pin := newScriptPin(clock)
	dev, err := New(pin, &Opts{Active: gpio.Low, Pull: gpio.PullUp, Debounce: 200 * time.Millisecond, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	if occ, err := dev.Sense(); err != nil || occ {
		t.Fatalf("Sense() = %v, %v before any change; want false (pulled up, active low)", occ, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	emits := make(chan bool, 8)
	done := make(chan error, 1)
	go func() { done <- dev.Watch(ctx, func(b bool) { emits <- b }) }()
	recv(t, emits, "initial state")
	recv(t, pin.entered, "wait")
	pin.EdgesChan <- gpio.Low
	recv(t, pin.entered, "wait")
	// Undebounced: Sense still reports the debounced (old) state while the
	// line is low.
	if occ, _ := dev.Sense(); occ {
		t.Error("Sense() = true while the change is still being debounced")
	}
	clock.Advance(200 * time.Millisecond)
	if !recv(t, emits, "change") {
		t.Fatal("emitted false, want true")
	}
	recv(t, pin.entered, "wait")
	if occ, _ := dev.Sense(); !occ {
		t.Error("Sense() = false after the debounced change to occupied")
	}
	if err := dev.Watch(ctx, func(bool) {}); err == nil || !strings.Contains(err.Error(), "already watched") {
		t.Errorf("second Watch: %v, want an 'already watched' error", err)
	}
	if err := dev.Halt(); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, done, "Watch return"); !errors.Is(err, ErrHalted) {
		t.Errorf("Watch after Halt returned %v, want ErrHalted", err)
	}
	if _, err := dev.Sense(); !errors.Is(err, ErrHalted) {
		t.Errorf("Sense after Halt: %v, want ErrHalted", err)
	}
}

// On the simulated pin (real time): a cancelled context ends Watch within a
// wait slice, and Halt interrupts a wait at once.
func TestWatchEndsOnSimPin(t *testing.T) {
	for _, how := range []string{"cancel", "halt"} {
		t.Run(how, func(t *testing.T) {
			pin := sim.NewPin("GPIO17", gpio.High)
			dev, err := New(pin, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			emits := make(chan bool, 8)
			done := make(chan error, 1)
			go func() { done <- dev.Watch(ctx, func(b bool) { emits <- b }) }()
			if recv(t, emits, "initial state") {
				t.Fatal("initial state occupied on a high (pulled-up, active-low) line")
			}
			pin.Set(gpio.Low)
			if !recv(t, emits, "change") {
				t.Fatal("change emitted as false")
			}
			want := context.Canceled
			if how == "halt" {
				want = ErrHalted
				if err := dev.Halt(); err != nil {
					t.Fatal(err)
				}
			} else {
				cancel()
			}
			if err := recv(t, done, "Watch return"); !errors.Is(err, want) {
				t.Errorf("Watch returned %v, want %v", err, want)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	cases := []struct {
		name string
		pin  gpio.PinIn
		opts *Opts
		want string
	}{
		{"nil pin", nil, nil, "no pin"},
		// gpiotest refuses edge detection without an edge channel, as a
		// line the kernel will not give edges for would.
		{"pin refuses edges", &gpiotest.Pin{N: "GPIO4"}, nil, "GPIO4: configure input"},
		{"negative debounce", sim.NewPin("GPIO5", gpio.High), &Opts{Pull: gpio.PullUp, Debounce: -time.Millisecond}, "debounce -1ms"},
		{"huge debounce", sim.NewPin("GPIO5", gpio.High), &Opts{Pull: gpio.PullUp, Debounce: time.Hour}, "debounce 1h0m0s"},
		{"bad pull", sim.NewPin("GPIO5", gpio.High), &Opts{Pull: gpio.Pull(42)}, "unknown pull"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.pin, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestNewConfiguresPin(t *testing.T) {
	pin := sim.NewPin("GPIO27", gpio.Low)
	if _, err := New(pin, &Opts{Active: gpio.High, Pull: gpio.PullDown}); err != nil {
		t.Fatal(err)
	}
	if got := pin.Pull(); got != gpio.PullDown {
		t.Errorf("pin pull %s after New, want %s", got, gpio.PullDown)
	}
}

// FuzzWatch checks Watch against a reference model of the debounce rule on
// arbitrary edge sequences: a change counts when the line has kept a level
// for the debounce time and that level differs from the state.
func FuzzWatch(f *testing.F) {
	f.Add([]byte{0x80, 0x03, 0x04, 0x05, 0x06}, uint16(200), false, true)
	f.Add([]byte{0xff, 0x01, 0xfe}, uint16(0), true, false)
	f.Add([]byte{0x31, 0x30, 0x31, 0x30}, uint16(50), true, true)
	f.Fuzz(func(t *testing.T, data []byte, debounceMs uint16, activeHigh, initialHigh bool) {
		if len(data) > 48 {
			data = data[:48]
		}
		opts := Opts{Active: gpio.Level(activeHigh), Pull: gpio.Float, Debounce: time.Duration(debounceMs%1000) * time.Millisecond}
		initial := gpio.Level(initialHigh)
		var events []event
		var at time.Duration
		for _, b := range data {
			at += time.Duration(b>>1) * 4 * time.Millisecond
			events = append(events, event{at: at, level: gpio.Level(b&1 == 1)})
		}
		end := at + time.Second

		state, level := initial == opts.Active, initial
		want := []bool{state}
		pending, lastEdge := false, time.Duration(0)
		judge := func(now time.Duration) {
			if pending && lastEdge+opts.Debounce <= now {
				pending = false
				if occ := level == opts.Active; occ != state {
					state = occ
					want = append(want, occ)
				}
			}
		}
		for _, e := range events {
			judge(e.at)
			level, pending, lastEdge = e.level, true, e.at
		}
		judge(end)

		got := runScript(t, opts, initial, events, end)
		if !slices.Equal(got, want) {
			t.Errorf("events %v debounce %s: emitted %v, model says %v", events, opts.Debounce, got, want)
		}
	})
}

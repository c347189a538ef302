package drivertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/drivers/internal/wait"
	"github.com/cityedge/cityedge/drivers/sim"
	"periph.io/x/conn/v3/i2c/i2ctest"
)

// recorder stands in for a test so the helpers' failures can be seen: it
// records what they report instead of failing, and runs cleanups on demand.
type recorder struct {
	testing.TB
	fails    []string
	cleanups []func()
}

func (r *recorder) Helper()                   {}
func (r *recorder) Cleanup(f func())          { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Error(a ...any)            { r.fails = append(r.fails, fmt.Sprint(a...)) }
func (r *recorder) Errorf(f string, a ...any) { r.fails = append(r.fails, fmt.Sprintf(f, a...)) }
func (r *recorder) Fatalf(f string, a ...any) { r.fails = append(r.fails, fmt.Sprintf(f, a...)) }

func (r *recorder) cleanup() {
	for _, f := range slices.Backward(r.cleanups) {
		f()
	}
}

func TestClock(t *testing.T) {
	start := time.Date(2024, 1, 15, 8, 0, 0, 0, time.UTC)
	c := NewClock(start)
	if err := wait.Sleep(context.Background(), c, 15*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Hour)
	c.Sleep(time.Second)
	<-c.After(time.Millisecond)
	if want := start.Add(time.Hour + time.Second + 16*time.Millisecond); !c.Now().Equal(want) {
		t.Errorf("Now() = %v, want %v", c.Now(), want)
	}
	if want := []time.Duration{15 * time.Millisecond, time.Second, time.Millisecond}; !slices.Equal(c.Sleeps, want) {
		t.Errorf("Sleeps = %v, want %v (Advance is not a sleep)", c.Sleeps, want)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	before := c.Now()
	if err := wait.Sleep(ctx, c, time.Minute); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep with a cancelled context: %v", err)
	}
	if len(c.Sleeps) != 3 || !c.Now().Equal(before) {
		t.Errorf("a refused sleep was recorded: %v, time moved to %v", c.Sleeps, c.Now())
	}
}

func TestWantNACK(t *testing.T) {
	nacked := fmt.Errorf("read status: %w", sim.ErrNACK)
	other := errors.New("playback: unexpected Tx")
	for _, tc := range []struct {
		name   string
		err    error
		nack   int
		nacked bool
		fails  int
	}{
		{"NACK injected and reported", nacked, 2, true, 0},
		{"no NACK, other error", other, -1, false, 0},
		{"NACK injected, another error came", other, 2, true, 1},
		{"case expects a NACK it does not inject", nacked, -1, true, 1},
		{"case injects a NACK it does not expect", other, 0, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{}
			WantNACK(r, "New", tc.err, tc.nack, tc.nacked)
			if len(r.fails) != tc.fails {
				t.Errorf("reported %q, want %d failures", r.fails, tc.fails)
			}
		})
	}
}

func TestPlayback(t *testing.T) {
	ops := []i2ctest.IO{{Addr: 0x44, W: []byte{0x01}}, {Addr: 0x44, R: []byte{0xAB}}}
	for _, tc := range []struct {
		name      string
		ops       []i2ctest.IO
		nack      int
		txs       int
		nacked    int // the transaction that must fail; -1 for none
		wantFails int // at cleanup
	}{
		{name: "played to the end", ops: ops, nack: -1, txs: 2, nacked: -1},
		{name: "first transaction refused", ops: ops[1:], nack: 0, txs: 2, nacked: 0},
		{name: "second transaction refused", ops: ops[:1], nack: 1, txs: 2, nacked: 1},
		{name: "script left over", ops: ops, nack: -1, txs: 1, nacked: -1, wantFails: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{}
			bus := Playback(r, tc.ops, tc.nack)
			if s := bus.String(); s != "playback" {
				t.Errorf("String() = %q, want the playback's name", s)
			}
			writes := [][]byte{{0x01}, nil}
			for i := 0; i < tc.txs; i++ {
				rd := make([]byte, 1-len(writes[i]))
				err := bus.Tx(0x44, writes[i], rd)
				if i == tc.nacked {
					if !errors.Is(err, sim.ErrNACK) || !strings.Contains(err.Error(), "0x44") {
						t.Errorf("transaction %d: %v, want a NACK naming the address", i, err)
					}
					continue
				}
				if err != nil {
					t.Errorf("transaction %d: %v", i, err)
				}
				if len(rd) == 1 && rd[0] != 0xAB {
					t.Errorf("transaction %d read %#x, want the script's 0xab", i, rd[0])
				}
			}
			if len(r.fails) != 0 {
				t.Fatalf("failed before cleanup: %v", r.fails)
			}
			r.cleanup()
			if len(r.fails) != tc.wantFails {
				t.Errorf("cleanup reported %q, want %d failures", r.fails, tc.wantFails)
			}
		})
	}
}

func TestWords(t *testing.T) {
	// Sensirion's CRC example (SHT3x datasheet table 20): 0xBEEF has CRC 0x92.
	if got, want := Words(0xBEEF, 0x0000), []byte{0xBE, 0xEF, 0x92, 0x00, 0x00, 0x81}; !bytes.Equal(got, want) {
		t.Errorf("Words = % x, want % x", got, want)
	}
	if got := Words(); len(got) != 0 {
		t.Errorf("Words() = % x", got)
	}
}

func TestWantErr(t *testing.T) {
	for _, tc := range []struct {
		name     string
		err      error
		want     string
		ends     bool
		wantFail string
	}{
		{name: "success wanted and got", err: nil, want: "", ends: false},
		{name: "error wanted and got", err: errors.New("sht3x: read status: NACK"), want: "read status", ends: true},
		{name: "unexpected error", err: errors.New("boom"), want: "", wantFail: "New: boom"},
		{name: "error wanted, none came", err: nil, want: "read status", ends: true, wantFail: `New: error <nil>, want one containing "read status"`},
		{name: "another error came", err: errors.New("sht3x: measure"), want: "read status", ends: true,
			wantFail: `New: error sht3x: measure, want one containing "read status"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{}
			ends := WantErr(r, "New", tc.err, tc.want)
			if tc.wantFail == "" && len(r.fails) != 0 || tc.wantFail != "" && !slices.Equal(r.fails, []string{tc.wantFail}) {
				t.Errorf("reported %q, want %q", r.fails, tc.wantFail)
			}
			if tc.wantFail == "" && ends != tc.ends {
				t.Errorf("WantErr = %v, want %v", ends, tc.ends)
			}
		})
	}
}

// TestImportedOnlyByTests keeps this package out of every driver: only
// test files import it.
func TestImportedOnlyByTests(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH")
	}
	const self = "github.com/cityedge/cityedge/drivers/internal/drivertest"
	out, err := exec.Command(goTool, "list", "-f",
		`{{.ImportPath}} {{join .Imports ","}} {{join .TestImports ","}},{{join .XTestImports ","}}`,
		"github.com/cityedge/cityedge/drivers/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	usedByTests := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, " ")
		if len(f) != 3 {
			t.Fatalf("go list line %q", line)
		}
		if slices.Contains(strings.Split(f[1], ","), self) {
			t.Errorf("%s imports %s outside its tests", f[0], self)
		}
		if slices.Contains(strings.Split(f[2], ","), self) {
			usedByTests++
		}
	}
	if usedByTests == 0 {
		t.Error("no package's tests import drivertest: the check above saw nothing")
	}
}

func TestInRange(t *testing.T) {
	for _, tc := range []struct {
		v, lo, hi float64
		fail      bool
	}{
		{5, 0, 10, false}, {0, 0, 10, false}, {10, 0, 10, false},
		{-0.1, 0, 10, true}, {10.1, 0, 10, true}, {math.NaN(), 0, 10, true},
	} {
		r := &recorder{}
		InRange(r, "x", tc.v, tc.lo, tc.hi)
		if failed := len(r.fails) > 0; failed != tc.fail {
			t.Errorf("InRange(%v, %v..%v): failed %v, want %v", tc.v, tc.lo, tc.hi, failed, tc.fail)
		}
	}
}

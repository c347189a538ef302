package testproc

import (
	"fmt"
	"net"
	"os"
	"testing"
	"time"
)

func TestFreePorts(t *testing.T) {
	ps, err := FreePorts(5)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ps {
		if seen[p] {
			t.Fatalf("port %d twice in %v", p, ps)
		}
		seen[p] = true
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("port %d is not free: %v", p, err)
		}
		l.Close()
	}
}

func TestTail(t *testing.T) {
	w := &Tail{Max: 5}
	fmt.Fprint(w, "abc")
	fmt.Fprint(w, "defg")
	if got := w.String(); got != "cdefg" {
		t.Errorf("tail %q, want %q", got, "cdefg")
	}
}

func TestCPU(t *testing.T) {
	// Burn a known amount of CPU in this process, then read it back.
	before, err := CPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); time.Since(start) < 300*time.Millisecond; {
	}
	after, err := CPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// A busy loop of 300 ms of wall time gets at least 100 ms of CPU even
	// on a loaded machine; /proc counts in 10 ms ticks.
	if got := after - before; got < 100*time.Millisecond || got > 10*time.Second {
		t.Fatalf("CPU grew by %v over a 300 ms busy loop", got)
	}
	if _, err := CPU(1 << 30); err == nil {
		t.Fatal("CPU of a process that does not exist: no error")
	}
}

func TestStatCPU(t *testing.T) {
	cases := []struct {
		stat string
		want time.Duration
		err  bool
	}{
		// utime 250 and stime 50 ticks (fields 14 and 15); the command
		// name holds a space and a parenthesis.
		{"42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 5 1000 10", 3 * time.Second, false},
		{"42 (mosquitto) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0", 100 * time.Millisecond, false},
		{"42 (short) S 1 2 3", 0, true},
		{"42 no name", 0, true},
		{"42 (bad) S 1 42 42 0 -1 4194560 100 0 0 0 x 3 0 0 20 0", 0, true},
	}
	for _, c := range cases {
		got, err := statCPU(42, []byte(c.stat))
		if (err != nil) != c.err || got != c.want {
			t.Errorf("statCPU(%q) = %v, %v; want %v, error %v", c.stat, got, err, c.want, c.err)
		}
	}
}

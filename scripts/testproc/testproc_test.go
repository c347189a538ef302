package testproc

import (
	"fmt"
	"net"
	"testing"
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

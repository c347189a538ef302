//go:build linux

package clocksync

import "testing"

// TestSystem reads the real machine: boot time advances, the boot id is
// stable, and the kernel answers a read-only adjtimex.
func TestSystem(t *testing.T) {
	s, err := NewSystem()
	if err != nil {
		t.Fatal(err)
	}
	b1 := s.Boot()
	if b1 <= 0 {
		t.Fatalf("boot time %v", b1)
	}
	if s2, _ := NewSystem(); s2.BootID() != s.BootID() {
		t.Error("boot id changed within one boot")
	}
	if _, err := s.Sync(); err != nil {
		t.Errorf("adjtimex: %v", err)
	}
	if b2 := s.Boot(); b2 < b1 {
		t.Errorf("boot time went backwards: %v then %v", b1, b2)
	}
}

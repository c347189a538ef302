package wait

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// Sleep ends when the clock has moved on by d, not before, and ends at once
// when the context is cancelled while it waits or before it starts.
func TestSleep(t *testing.T) {
	clock := clockwork.NewFakeClock()
	ctx := context.Background()
	done := make(chan error, 1)
	go func() { done <- Sleep(ctx, clock, time.Second) }()
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(999 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("returned %v before its time", err)
	default:
	}
	clock.Advance(time.Millisecond)
	if err := <-done; err != nil {
		t.Fatalf("Sleep: %v", err)
	}

	cctx, cancel := context.WithCancel(ctx)
	go func() { done <- Sleep(cctx, clock, time.Hour) }()
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled while waiting: %v, want context.Canceled", err)
	}
	if err := Sleep(cctx, clock, time.Nanosecond); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled before: %v, want context.Canceled", err)
	}
}

func TestClockDefault(t *testing.T) {
	if Clock(nil) == nil {
		t.Fatal("nil clock not replaced by the real one")
	}
	fake := clockwork.NewFakeClock()
	if Clock(fake) != fake {
		t.Fatal("injected clock replaced")
	}
}

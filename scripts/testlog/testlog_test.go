package testlog

import (
	"fmt"
	"reflect"
	"sync"
	"testing"
)

func TestBuffer(t *testing.T) {
	var l Buffer
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fmt.Fprintf(&l, "level=INFO msg=%d connected\n", i)
		}()
	}
	fmt.Fprintln(&l, "  level=WARN msg=other  ")
	wg.Wait()
	if got := len(l.Lines("connected")); got != 4 {
		t.Errorf("Lines(connected) = %d lines, want 4", got)
	}
	if got, want := l.Lines("WARN"), []string{"level=WARN msg=other"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Lines(WARN) = %q, want %q", got, want)
	}
	if got := l.Count("level="); got != 5 {
		t.Errorf("Count(level=) = %d, want 5", got)
	}
}

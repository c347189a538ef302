package uplink

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cityedge/cityedge/scripts/testbroker"
)

// memSource is the test's Source: batches in memory, with the bookkeeping
// the tests assert on. Batch i carries Seqs {i}.
type memSource struct {
	mu             sync.Mutex
	batches        []Batch
	acked          []bool
	ackedAt        []time.Time
	offers         []int
	inSession      map[int]bool
	cursor         int
	rewinds        int
	nexts          int
	outstanding    int
	maxOutstanding int
	ackDelay       time.Duration
	pad            int // extra payload bytes per batch
	violations     []string
	wake           chan struct{}
}

func newMemSource(n int) *memSource {
	s := &memSource{inSession: map[int]bool{}, wake: make(chan struct{})}
	s.Add(n)
	return s
}

func payloadFor(id int) []byte {
	return fmt.Appendf(nil, `{"batch":%d,"pad":"%s"}`, id, strings.Repeat("x", 120))
}

// Add appends n new batches.
func (s *memSource) Add(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		id := len(s.batches)
		p := payloadFor(id)
		if s.pad > 0 {
			p = append(p[:len(p):len(p)], make([]byte, s.pad)...)
		}
		s.batches = append(s.batches, Batch{Payload: p, Seqs: []uint64{uint64(id)}})
		s.acked = append(s.acked, false)
		s.ackedAt = append(s.ackedAt, time.Time{})
		s.offers = append(s.offers, 0)
	}
	close(s.wake)
	s.wake = make(chan struct{})
}

func (s *memSource) Next(ctx context.Context) (Batch, error) {
	for {
		s.mu.Lock()
		for s.cursor < len(s.batches) && s.acked[s.cursor] {
			s.cursor++
		}
		if s.cursor < len(s.batches) {
			id := s.cursor
			s.cursor++
			s.offers[id]++
			s.inSession[id] = true
			s.nexts++
			s.outstanding++
			s.maxOutstanding = max(s.maxOutstanding, s.outstanding)
			b := s.batches[id]
			s.mu.Unlock()
			return b, nil
		}
		wake := s.wake
		s.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return Batch{}, ctx.Err()
		}
	}
}

func (s *memSource) Acked(b Batch) error {
	if s.ackDelay > 0 {
		time.Sleep(s.ackDelay)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := int(b.Seqs[0])
	switch {
	case id >= len(s.batches):
		s.violations = append(s.violations, fmt.Sprintf("acked unknown batch %d", id))
		return nil
	case s.acked[id]:
		s.violations = append(s.violations, fmt.Sprintf("batch %d acked twice", id))
	case !s.inSession[id]:
		s.violations = append(s.violations, fmt.Sprintf("batch %d acked but not offered since the last rewind", id))
	}
	s.acked[id] = true
	s.ackedAt[id] = time.Now()
	delete(s.inSession, id)
	s.outstanding--
	return nil
}

func (s *memSource) Rewind() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cursor = 0
	s.inSession = map[int]bool{}
	s.outstanding = 0
	s.rewinds++
}

func (s *memSource) ackedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, a := range s.acked {
		if a {
			n++
		}
	}
	return n
}

func (s *memSource) snapshot() (nexts, rewinds, maxOut int, violations []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nexts, s.rewinds, s.maxOutstanding, append([]string(nil), s.violations...)
}

func (s *memSource) checkViolations(t *testing.T) {
	t.Helper()
	_, _, _, v := s.snapshot()
	for _, msg := range v {
		t.Error(msg)
	}
}

// seenSet counts the batches a subscriber received.
type seenSet struct {
	mu     sync.Mutex
	counts map[int]int
	other  []testbroker.Message
}

func collect(t *testing.T, ch <-chan testbroker.Message) *seenSet {
	s := &seenSet{counts: map[int]int{}}
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		for {
			select {
			case m := <-ch:
				var p struct {
					Batch *int `json:"batch"`
				}
				s.mu.Lock()
				if json.Unmarshal(m.Payload, &p) == nil && p.Batch != nil {
					s.counts[*p.Batch]++
				} else {
					s.other = append(s.other, m)
				}
				s.mu.Unlock()
			case <-done:
				return
			}
		}
	}()
	return s
}

func (s *seenSet) has(id int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[id] > 0
}

func (s *seenSet) hasAll(n int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range n {
		if s.counts[i] == 0 {
			return false
		}
	}
	return true
}

func (s *seenSet) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.counts {
		n += c
	}
	return n
}

// waitFor polls cond until it holds or timeout passes (then the test fails).
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testLogger writes to the test log; writes after the test ended are
// dropped (paho's loggers are process-wide and may outlive a test).
func testLogger(t testing.TB) *slog.Logger { return testLoggerAt(t, slog.LevelInfo) }

func testLoggerAt(t testing.TB, level slog.Level) *slog.Logger {
	w := &tlogWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.closed = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type tlogWriter struct {
	mu     sync.Mutex
	t      testing.TB
	closed bool
}

func (w *tlogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

const testPrefix = "cityedge/test/gw-test"

// testConfig is a Config for b with short timeouts.
func testConfig(t testing.TB, b *testbroker.Broker) Config {
	tc := b.ClientTLS(t)
	return Config{
		Brokers:         []string{b.URL},
		ClientID:        "gw-test",
		TopicPrefix:     testPrefix,
		TLSConfig:       func() (*tls.Config, error) { return tc, nil },
		KeepAlive:       5 * time.Second,
		ConnectTimeout:  2 * time.Second,
		AckTimeout:      3 * time.Second,
		BackoffMin:      20 * time.Millisecond,
		BackoffMax:      200 * time.Millisecond,
		ReconnectSpread: 100 * time.Millisecond,
		StatusEvery:     time.Minute,
		StopTimeout:     2 * time.Second,
		Logger:          testLogger(t),
	}
}

// running is a Client whose Run goroutine the test controls.
type running struct {
	*Client
	cancel context.CancelFunc
	done   chan error
}

// start runs a Client; it is stopped at the end of the test.
func start(t *testing.T, cfg Config, src Source) *running {
	t.Helper()
	c, err := New(cfg, src)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Client: c, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and waits for it to return.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
		}
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of cancel")
		return nil
	}
}

// helperEnv switches the test binary into a helper process (see TestMain).
const helperEnv = "UPLINK_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "lwt" {
		os.Exit(lwtHelper())
	}
	code := m.Run()
	closeSharedBrokers() // interop_test.go: brokers shared by the whole run
	os.Exit(code)
}

package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
)

// Handler runs one accepted command and returns its result (marshalled to
// a JSON object; nil for none) or an error (its text is the answer's
// "error": never put key material in it).
type Handler func(ctx context.Context, cmd *Command) (result any, err error)

// Options configure a [Dispatcher]; they mirror the [remote] config keys.
type Options struct {
	AgentID  string
	Keys     *KeySet       // remote.trusted_keys, loaded with LoadKeys
	MaxAge   time.Duration // remote.max_age
	StateDir string        // agent.state_dir: the replay store lives here
	Clock    clockwork.Clock
	Logger   *slog.Logger
	// AnswerEvery and AnswerBurst rate-limit answers to rejected commands;
	// zero values take DefaultAnswerEvery and DefaultAnswerBurst.
	AnswerEvery time.Duration
	AnswerBurst int
	// MaxReplayEntries bounds the replay store (0: DefaultReplayEntries).
	MaxReplayEntries int
}

// Stats are the dispatcher's counters since it was created.
type Stats struct {
	Accepted uint64            // commands that passed verification (and ran)
	Failed   uint64            // accepted commands whose handler returned an error
	Rejected map[Reason]uint64 // every reason, zero included
	// AnswersSuppressed counts answers to rejections the rate limit held back.
	AnswersSuppressed uint64
}

// Dispatcher verifies commands, runs their handlers one at a time, and
// builds the answers.
type Dispatcher struct {
	verifier *Verifier
	replay   *ReplayStore
	limiter  *Limiter
	clock    clockwork.Clock
	log      *slog.Logger

	hmu      sync.RWMutex
	handlers map[string]Handler

	run sync.Mutex // one command at a time

	smu   sync.Mutex
	stats Stats
}

// NewDispatcher opens the replay store under opts.StateDir and returns a
// dispatcher with no handlers.
func NewDispatcher(opts Options) (*Dispatcher, error) {
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.StateDir == "" {
		return nil, errors.New("remote: no state directory for the replay store")
	}
	replay, err := OpenReplayStore(opts.StateDir, ReplayOptions{Clock: opts.Clock, MaxEntries: opts.MaxReplayEntries, Retain: opts.MaxAge})
	if err != nil {
		return nil, err
	}
	d := &Dispatcher{
		replay:   replay,
		limiter:  NewLimiter(opts.Clock, opts.AnswerEvery, opts.AnswerBurst),
		clock:    opts.Clock,
		log:      opts.Logger,
		handlers: make(map[string]Handler),
		stats:    Stats{Rejected: make(map[Reason]uint64)},
	}
	for _, r := range Reasons() {
		d.stats.Rejected[r] = 0
	}
	d.verifier, err = NewVerifier(VerifierOptions{AgentID: opts.AgentID, Keys: opts.Keys, MaxAge: opts.MaxAge,
		Known: d.known, Replay: replay, Clock: opts.Clock})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// Register sets the handler for one of the contract's command names
// ([Commands]). A command without a handler is rejected as unknown_cmd.
func (d *Dispatcher) Register(name string, h Handler) error {
	if !slices.Contains(Commands(), name) {
		return fmt.Errorf("remote: register %q: not a command of the contract %v", name, Commands())
	}
	if h == nil {
		return fmt.Errorf("remote: register %q: nil handler", name)
	}
	d.hmu.Lock()
	defer d.hmu.Unlock()
	d.handlers[name] = h
	return nil
}

func (d *Dispatcher) known(name string) bool {
	d.hmu.RLock()
	defer d.hmu.RUnlock()
	_, ok := d.handlers[name]
	return ok
}

// Handle verifies one message received on <topic_prefix>/cmd, runs its
// handler when it is accepted, and returns the JSON answer for
// <topic_prefix>/cmd/result. publish is false when nothing is to be
// answered: a rejection that does not name this agent, or one the rate
// limit holds back. Commands run one at a time; Handle blocks while another
// runs, so call it outside MQTT callbacks.
func (d *Dispatcher) Handle(ctx context.Context, raw []byte) (answer []byte, publish bool) {
	d.run.Lock()
	defer d.run.Unlock()
	cmd, err := d.verifier.Verify(raw)
	if err != nil {
		var rej *Rejection
		if !errors.As(err, &rej) {
			rej = &Rejection{Reason: ReasonMalformedJSON, Detail: err.Error()}
		}
		return d.rejected(rej)
	}
	d.log.Info("remote command accepted", "cmd", cmd.Cmd, "jti", cmd.JTI, "kid", cmd.KeyID,
		"exp", rfc3339(cmd.Expires))
	d.count(func(s *Stats) { s.Accepted++ })

	d.hmu.RLock()
	h := d.handlers[cmd.Cmd]
	d.hmu.RUnlock()
	res := Result{JTI: cmd.JTI, Cmd: cmd.Cmd}
	out, herr := h(ctx, cmd)
	if herr == nil && out != nil {
		res.Result, herr = marshalObject(out)
	}
	res.Time = d.clock.Now()
	if herr != nil {
		res.Error = herr.Error()
		d.count(func(s *Stats) { s.Failed++ })
		d.log.Warn("remote command failed", "cmd", cmd.Cmd, "jti", cmd.JTI, "err", herr)
	} else {
		res.OK = true
		d.log.Info("remote command done", "cmd", cmd.Cmd, "jti", cmd.JTI)
	}
	b, err := json.Marshal(res)
	if err != nil { // cannot happen: every member is marshalable
		d.log.Error("remote answer", "err", err)
		return nil, false
	}
	return b, true
}

func (d *Dispatcher) rejected(rej *Rejection) ([]byte, bool) {
	d.count(func(s *Stats) { s.Rejected[rej.Reason]++ })
	d.log.Warn("remote command rejected", "reason", string(rej.Reason), "cmd", rej.Cmd, "jti", rej.JTI,
		"detail", rej.Detail, "answered", rej.Answer)
	if !rej.Answer {
		return nil, false
	}
	if !d.limiter.Allow() {
		d.count(func(s *Stats) { s.AnswersSuppressed++ })
		return nil, false
	}
	b, err := json.Marshal(Result{JTI: rej.JTI, Cmd: rej.Cmd, OK: false, Reason: rej.Reason,
		Error: string(rej.Reason) + ": " + rej.Detail, Time: d.clock.Now()})
	if err != nil {
		return nil, false
	}
	return b, true
}

func (d *Dispatcher) count(f func(*Stats)) {
	d.smu.Lock()
	defer d.smu.Unlock()
	f(&d.stats)
}

// Stats returns a copy of the counters.
func (d *Dispatcher) Stats() Stats {
	d.smu.Lock()
	defer d.smu.Unlock()
	s := d.stats
	s.Rejected = make(map[Reason]uint64, len(d.stats.Rejected))
	for k, v := range d.stats.Rejected {
		s.Rejected[k] = v
	}
	return s
}

// ReplayStore returns the dispatcher's replay store.
func (d *Dispatcher) ReplayStore() *ReplayStore { return d.replay }

// marshalObject marshals a handler's result, which must be a JSON object.
func marshalObject(v any) (json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("result: %w", err)
	}
	if len(b) == 0 || b[0] != '{' {
		return nil, fmt.Errorf("result is not a JSON object")
	}
	return b, nil
}

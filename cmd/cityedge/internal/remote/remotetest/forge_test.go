package remotetest

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"testing"
	"time"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/remote"
	"github.com/jonboulle/clockwork"
)

func key(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("remotetest " + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

// TestForgeriesRejected: every forgery is rejected by the real dispatcher
// with its stated reason and answer rule, and nothing runs.
func TestForgeriesRejected(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	ops := key("ops")
	ks, err := remote.NewKeySet(ops.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	d, err := remote.NewDispatcher(remote.Options{AgentID: "gw-1", Keys: ks, MaxAge: 10 * time.Minute,
		StateDir: t.TempDir(), Clock: clockwork.NewFakeClockAt(now), AnswerBurst: 1000})
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	if err := d.Register(remote.CmdConfig, func(context.Context, *remote.Command) (any, error) { ran++; return nil, nil }); err != nil {
		t.Fatal(err)
	}
	fs := Forgeries(ops, key("intruder"), "gw-1", now, 10*time.Minute)
	if len(fs) < 20 {
		t.Fatalf("%d forgeries, want at least 20", len(fs))
	}
	for _, f := range fs {
		ans, pub := d.Handle(context.Background(), []byte(f.Token))
		if pub != f.Answered {
			t.Errorf("%s: answered %v, want %v", f.Name, pub, f.Answered)
		}
		if pub {
			var res remote.Result
			if err := json.Unmarshal(ans, &res); err != nil || res.OK || res.Reason != f.Reason {
				t.Errorf("%s: answer %s, want reason %s", f.Name, ans, f.Reason)
			}
		}
	}
	st := d.Stats()
	for _, f := range fs {
		if st.Rejected[f.Reason] == 0 {
			t.Errorf("%s: reason %s not counted", f.Name, f.Reason)
		}
	}
	if ran != 0 || st.Accepted != 0 {
		t.Fatalf("a forgery ran (%d, accepted %d)", ran, st.Accepted)
	}
	// The genuine article is accepted, and then replayed.
	tok := Sign(ops, remote.Payload{Agent: "gw-1", Cmd: remote.CmdConfig, JTI: "real", IAT: now.Unix(), EXP: now.Add(time.Minute).Unix()})
	if _, pub := d.Handle(context.Background(), []byte(tok)); !pub || ran != 1 {
		t.Fatal("genuine command not run")
	}
	if ans, _ := d.Handle(context.Background(), []byte(tok)); ran != 1 || d.Stats().Rejected[remote.ReasonReplayed] != 1 {
		t.Fatalf("replay ran: %s", ans)
	}
}

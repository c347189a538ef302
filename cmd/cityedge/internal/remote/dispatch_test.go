package remote

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestHandlerOutcomes(t *testing.T) {
	cases := []struct {
		name   string
		h      Handler
		ok     bool
		result string
		errSub string
	}{
		{"result", func(context.Context, *Command) (any, error) { return map[string]int{"n": 1}, nil }, true, `{"n":1}`, ""},
		{"no result", func(context.Context, *Command) (any, error) { return nil, nil }, true, "", ""},
		{"error", func(context.Context, *Command) (any, error) { return nil, errors.New("config line 3: unknown key") }, false, "", "config line 3"},
		{"not an object", func(context.Context, *Command) (any, error) { return []int{1}, nil }, false, "", "not a JSON object"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, "")
			if err := r.d.Register(CmdCSR, c.h); err != nil {
				t.Fatal(err)
			}
			tok := signed(t, testKey("ops"), payload(func(p *Payload) { p.Cmd = CmdCSR }))
			ans, pub := r.d.Handle(context.Background(), []byte(tok))
			res := decodeResult(t, ans)
			if !pub || res.OK != c.ok || string(res.Result) != c.result || !strings.Contains(res.Error, c.errSub) ||
				res.Reason != "" || res.Cmd != CmdCSR || res.JTI != "jti-1" {
				t.Fatalf("answer %s", ans)
			}
			if (r.d.Stats().Failed == 1) == c.ok {
				t.Fatalf("stats %+v", r.d.Stats())
			}
		})
	}
}

func TestRegister(t *testing.T) {
	r := newRig(t, "")
	if err := r.d.Register("install-cert", func(context.Context, *Command) (any, error) { return nil, nil }); err == nil {
		t.Fatal("a name outside the contract was registered")
	}
	if err := r.d.Register(CmdInstallCert, nil); err == nil {
		t.Fatal("nil handler registered")
	}
}

func TestResultJSON(t *testing.T) {
	b, err := Result{JTI: "j", Cmd: "status", OK: true, Time: time.Date(2026, 11, 25, 11, 0, 0, 5, time.FixedZone("CET", 3600))}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"jti":"j","cmd":"status","ok":true,"time":"2026-11-25T10:00:00Z"}`; string(b) != want {
		t.Fatalf("%s\nwant %s", b, want)
	}
}

func TestNewDispatcherErrors(t *testing.T) {
	ks := newRig(t, "").keys
	for name, o := range map[string]Options{
		"no agent":     {Keys: ks, MaxAge: time.Minute, StateDir: t.TempDir()},
		"no keys":      {AgentID: "a", MaxAge: time.Minute, StateDir: t.TempDir()},
		"no max_age":   {AgentID: "a", Keys: ks, StateDir: t.TempDir()},
		"no state dir": {AgentID: "a", Keys: ks, MaxAge: time.Minute},
	} {
		if _, err := NewDispatcher(o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

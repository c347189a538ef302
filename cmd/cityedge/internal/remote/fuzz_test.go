package remote

import (
	"context"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzVerify feeds arbitrary input to the command parser: it must never
// panic, every refusal must be a Rejection with a known reason, and whatever
// is accepted must carry a valid signature by a trusted key over a payload
// naming this agent.
func FuzzVerify(f *testing.F) {
	ops := testKey("ops")
	valid := signed(f, ops, payload())
	parts := strings.Split(valid, ".")
	f.Add([]byte(valid))
	f.Add([]byte(compact(f, map[string]string{"alg": "none"}, mustJSON(f, payload()), nil)))
	f.Add([]byte(compact(f, map[string]string{"alg": "EdDSA", "kid": "x"}, mustJSON(f, payload()), ops)))
	f.Add([]byte(`{"payload":"` + parts[1] + `","signatures":[]}`))
	f.Add([]byte(parts[0] + ".." + parts[2]))
	f.Add([]byte("..."))
	known := map[Reason]bool{}
	for _, r := range Reasons() {
		known[r] = true
	}
	// One rig for all inputs (a fresh one per input costs a directory
	// each); the replay store may remember an accepted seed, which is fine.
	r := newRig(f, f.TempDir(), func(o *Options) { o.AnswerBurst = 1 << 30 })
	r.clock.Advance(time.Second)
	f.Fuzz(func(t *testing.T, raw []byte) {
		r.mu.Lock()
		r.ran = nil
		r.mu.Unlock()
		ans, pub := r.d.Handle(context.Background(), raw)
		if r.handled() > 0 {
			c := r.ran[0]
			p := strings.Split(string(raw), ".")
			if len(p) != 3 || c.Agent != testAgent {
				t.Fatalf("accepted %q as %+v", raw, c)
			}
			sig, err := b64.DecodeString(p[2])
			if err != nil || !ed25519.Verify(ops.Public().(ed25519.PublicKey), []byte(p[0]+"."+p[1]), sig) &&
				!ed25519.Verify(testKey("ops-2").Public().(ed25519.PublicKey), []byte(p[0]+"."+p[1]), sig) {
				t.Fatalf("accepted %q without a trusted signature", raw)
			}
			return
		}
		_, err := r.d.verifier.Verify(raw)
		var rej *Rejection
		if !errors.As(err, &rej) || !known[rej.Reason] || rej.Reason == "" {
			t.Fatalf("refused %q with %v", raw, err)
		}
		if pub {
			if res := decodeResult(t, ans); res.OK || len(res.JTI) > maxEcho+len("…") || len(res.Cmd) > maxEcho+len("…") {
				t.Fatalf("answer %s", ans)
			}
		}
	})
}

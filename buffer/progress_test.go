package buffer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func outputT(t testing.TB, q *Queue, name string) *Output {
	t.Helper()
	o, err := q.Output(name)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func readOut(t testing.TB, o *Output) []uint64 {
	t.Helper()
	var out []uint64
	var after uint64
	for {
		es, err := o.ReadAfter(after, 7, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) == 0 {
			return out
		}
		for _, e := range es {
			out = append(out, e.Seq)
			after = e.Seq
		}
	}
}

// copyFile is what a SIGKILL leaves after the last commit: the file as
// fsynced (the copy has no lock and no run behind it).
func copyFile(t testing.TB, from string) string {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	to := filepath.Join(t.TempDir(), "killed.db")
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return to
}

// TestOutputsEachAcknowledge: with two outputs a record leaves the queue
// only when both have it; each output reads what it has not acknowledged,
// and a restart — clean, or from the file a kill leaves after a commit —
// resumes each where it stood.
func TestOutputsEachAcknowledge(t *testing.T) {
	for _, kill := range []bool{false, true} {
		name := map[bool]string{false: "close", true: "kill"}[kill]
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "buffer.db")
			opts := Options{Outputs: []string{"mqtt", "sentilo"}}
			q := openT(t, path, opts)
			var seqs []uint64
			for i := range 20 {
				seqs = append(seqs, appendT(t, q, Record{Key: "s", Data: payload("s", i, 40)}))
			}
			mq, se := outputT(t, q, "mqtt"), outputT(t, q, "sentilo")
			// MQTT has everything; Sentilo all but a held sensor's 3, 7, 15.
			if err := mq.Ack(seqs...); err != nil {
				t.Fatal(err)
			}
			held := []uint64{seqs[3], seqs[7], seqs[15]}
			var rest []uint64
			for _, s := range seqs {
				if !slices.Contains(held, s) {
					rest = append(rest, s)
				}
			}
			if got := readOut(t, se); len(got) != 20 {
				t.Fatalf("sentilo reads %d before acking, want 20", len(got))
			}
			if got := readOut(t, mq); len(got) != 0 {
				t.Fatalf("mqtt reads %v after acking everything", got)
			}
			if err := se.Ack(rest[:10]...); err != nil {
				t.Fatal(err)
			}
			// Sentilo's first acks are committed before MQTT's?  Order does
			// not matter: let a commit happen between the two halves.
			syncT(t, q)
			if err := se.Ack(rest[10:]...); err != nil {
				t.Fatal(err)
			}
			if got := readOut(t, se); !slices.Equal(got, held) {
				t.Fatalf("sentilo reads %v, want the held %v", got, held)
			}
			syncT(t, q)
			if st := q.Stats(); st.Count != 3 {
				t.Fatalf("count %d, want the 3 Sentilo has not", st.Count)
			}
			var q2 *Queue
			if kill {
				q2 = openT(t, copyFile(t, path), opts)
				defer closeT(t, q2)
				defer closeT(t, q)
			} else {
				closeT(t, q)
				q2 = openT(t, path, opts)
				defer closeT(t, q2)
			}
			mq, se = outputT(t, q2, "mqtt"), outputT(t, q2, "sentilo")
			if got := readOut(t, mq); len(got) != 0 {
				t.Fatalf("after restart mqtt reads %v, want nothing", got)
			}
			if got := readOut(t, se); !slices.Equal(got, held) {
				t.Fatalf("after restart sentilo reads %v, want the held %v", got, held)
			}
			// The city registers the sensor: the held ones go, the queue empties.
			if err := se.Ack(held...); err != nil {
				t.Fatal(err)
			}
			syncT(t, q2)
			if st := q2.Stats(); st.Count != 0 || len(readAll(t, q2)) != 0 {
				t.Fatalf("count %d after both outputs have everything", st.Count)
			}
			if st := q2.Stats(); st.Outputs["sentilo"].Progress <= held[2] || st.Outputs["mqtt"].Progress <= held[2] {
				t.Fatalf("progress %+v, want both past %d", st.Outputs, held[2])
			}
		})
	}
}

// syncT waits until the committer has taken and committed everything
// pending (CommitInterval 0: it commits as soon as there is work).
func syncT(t testing.TB, q *Queue) {
	t.Helper()
	for i := 0; ; i++ {
		q.mu.Lock()
		idle := len(q.acks) == 0 && q.outPendingLocked() == 0 && len(q.reqs) == 0 && q.flight == nil && q.ackFlight == nil
		for _, o := range q.outs {
			idle = idle && o.flight == nil
		}
		q.mu.Unlock()
		if idle {
			return
		}
		if i > 5000 {
			t.Fatal("the committer did not catch up")
		}
		q.kick()
		time.Sleep(time.Millisecond)
	}
}

// TestOutputDropsPerOutput: while one output acknowledges nothing,
// the other reads only its new records and the queue holds the rest for
// the one that is down; the bound's drops are counted per output.
func TestOutputDropsPerOutput(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	opts := Options{Outputs: []string{"mqtt", "sentilo"}, MaxBytes: 1 << 20}
	q := openT(t, path, opts)
	defer closeT(t, q)
	mq, se := outputT(t, q, "mqtt"), outputT(t, q, "sentilo")
	var after uint64
	for i := range 400 {
		appendT(t, q, Record{Key: "env", Data: payload("env", i, 8<<10)})
		es, err := mq.ReadAfter(after, 100, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) != 1 {
			t.Fatalf("mqtt read %d new records, want just the one appended", len(es))
		}
		after = es[0].Seq
		if err := mq.Ack(after); err != nil {
			t.Fatal(err)
		}
	}
	syncT(t, q)
	st := q.Stats()
	if st.DroppedTotal == 0 {
		t.Fatal("the bound dropped nothing; the test needs drops")
	}
	if d := st.Outputs["sentilo"].Dropped; d != st.Dropped["env"] {
		t.Fatalf("sentilo dropped %d, the bound dropped %d env records it never had", d, st.Dropped["env"])
	}
	if d := st.Outputs["mqtt"].Dropped; d != 0 {
		t.Fatalf("mqtt dropped %d, but it had every record", d)
	}
	if n := len(readOut(t, se)); uint64(n) != st.Count-1 && uint64(n) != st.Count {
		t.Fatalf("sentilo reads %d, queue holds %d", n, st.Count)
	}
}

// TestOutputForgotten: an output removed from the configuration is
// forgotten at Open, and the records the remaining one has are deleted.
func TestOutputForgotten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openT(t, path, Options{Outputs: []string{"mqtt", "sentilo"}})
	var seqs []uint64
	for i := range 10 {
		seqs = append(seqs, appendT(t, q, Record{Key: "s", Data: payload("s", i, 40)}))
	}
	if err := outputT(t, q, "sentilo").Ack(seqs[:6]...); err != nil {
		t.Fatal(err)
	}
	if err := outputT(t, q, "mqtt").Ack(seqs[2:4]...); err != nil {
		t.Fatal(err)
	}
	closeT(t, q)
	q = openT(t, path, Options{Outputs: []string{"sentilo"}})
	defer closeT(t, q)
	got := readOut(t, outputT(t, q, "sentilo"))
	if !slices.Equal(got, seqs[6:]) {
		t.Fatalf("sentilo alone reads %v, want %v", got, seqs[6:])
	}
	if st := q.Stats(); st.Count != 4 || st.Outputs != nil {
		t.Fatalf("stats %+v, want 4 records and no per-output marks", st)
	}
}

// TestFormat5Outputs: the v5 fixture, opened with its two outputs, gives
// each output exactly the records it had still to get, and drains.
func TestFormat5Outputs(t *testing.T) {
	path, _ := unpackFixture(t, "v5")
	js, err := os.ReadFile(filepath.Join("testdata", "v5.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Outputs map[string][]uint64 `json:"outputs"`
	}
	if err := json.Unmarshal(js, &m); err != nil {
		t.Fatal(err)
	}
	opts := Options{Outputs: []string{"mqtt", "sentilo"}}
	q := openT(t, path, opts)
	for _, name := range opts.Outputs {
		o := outputT(t, q, name)
		got := readOut(t, o)
		if len(got) == 0 || !slices.Equal(got, m.Outputs[name]) {
			t.Fatalf("%s reads %d records %v, manifest says %v", name, len(got), got, m.Outputs[name])
		}
		if err := o.Ack(got...); err != nil {
			t.Fatal(err)
		}
	}
	closeT(t, q)
	q = openT(t, path, opts)
	defer closeT(t, q)
	if st := q.Stats(); st.Count != 0 {
		t.Fatalf("%d records left after both outputs acknowledged theirs", st.Count)
	}
}

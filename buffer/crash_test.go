package buffer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// crashChildEnv makes the test binary a crash-test child: it appends in a
// loop and prints every durable append until it is killed.
const crashChildEnv = "CITYEDGE_BUFFER_CRASH_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(path)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashChild appends from four goroutines with a short commit window and
// prints "ok <first> <count> <writer> <index>" after each Append that
// returned nil, and "ack <seq>" before acking. Each line is one write(2).
func crashChild(path string) {
	q, err := Open(path, Options{CommitInterval: 2 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(3)
	}
	var out sync.Mutex
	emit := func(s string) {
		out.Lock()
		defer out.Unlock()
		os.Stdout.WriteString(s)
	}
	for w := 0; w < 4; w++ {
		go func(w int) {
			key := fmt.Sprintf("w%d", w)
			rnd := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for i := 0; ; {
				n := 1 + rnd.IntN(30)
				recs := make([]Record, n)
				for j := range recs {
					recs[j] = Record{Key: key, Priority: uint8(w % 2), Data: payload(key, i+j, 60+rnd.IntN(200))}
				}
				first, err := q.Append(context.Background(), recs)
				if err != nil {
					fmt.Fprintln(os.Stderr, "child append:", err)
					os.Exit(4)
				}
				emit(fmt.Sprintf("ok %d %d %d %d\n", first, n, w, i))
				i += n
				if w == 0 && rnd.IntN(4) == 0 {
					// Ack a few of the oldest: they may or may not survive.
					es, err := q.ReadAfter(0, 20, 0)
					if err == nil && len(es) > 0 {
						var b strings.Builder
						seqs := make([]uint64, len(es))
						for k, e := range es {
							seqs[k] = e.Seq
							fmt.Fprintf(&b, "ack %d\n", e.Seq)
						}
						emit(b.String())
						_ = q.Ack(seqs...)
					}
				}
			}
		}(w)
	}
	select {}
}

// TestCrashKill SIGKILLs a child process that appends in a loop, at random
// moments, 30+ times, and after each kill proves that every append it
// reported durable is in the file with its payload, that the file needs no
// salvage, and that sequence numbers only grow across restarts.
func TestCrashKill(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns 30+ processes")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "buffer.db")
	durable := map[uint64]string{} // seq → payload prefix (key and the writer's index)
	mayBeGone := map[uint64]bool{}
	var nextSeq uint64
	rnd := rand.New(rand.NewPCG(7, 7))
	const rounds = 32
	var lines, appendsTotal int
	for round := 0; round < rounds; round++ {
		// Under a user-mode emulator without binfmt_misc (qemu-arm-static
		// for the 32-bit ARM run), name the emulator here.
		cmd := exec.Command(exe, "-test.run=^$")
		if wrap := os.Getenv("CITYEDGE_TEST_EXEC_WRAPPER"); wrap != "" {
			cmd = exec.Command(wrap, exe, "-test.run=^$")
		}
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			if errors.Is(err, syscall.ENOEXEC) {
				t.Skipf("cannot re-execute the test binary (%v); set CITYEDGE_TEST_EXEC_WRAPPER to the emulator", err)
			}
			t.Fatal(err)
		}
		got := make(chan []string)
		go func() {
			var ls []string
			sc := bufio.NewScanner(stdout)
			first := true
			for sc.Scan() {
				if first {
					// Kill at a random moment once appends are flowing.
					first = false
					delay := time.Duration(rnd.IntN(80)) * time.Millisecond
					time.AfterFunc(delay, func() { _ = cmd.Process.Signal(syscall.SIGKILL) })
				}
				ls = append(ls, sc.Text())
			}
			got <- ls
		}()
		timeout := time.AfterFunc(20*time.Second, func() { _ = cmd.Process.Kill() })
		ls := <-got
		werr := cmd.Wait()
		timeout.Stop()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: child ended with %v, want SIGKILL; stderr:\n%s", round, werr, stderr.String())
		}
		for _, l := range ls {
			var first, seq uint64
			var n, w, i int
			switch {
			case strings.HasPrefix(l, "ok "):
				if _, err := fmt.Sscanf(l, "ok %d %d %d %d", &first, &n, &w, &i); err != nil {
					continue // the kill cut the last line
				}
				if first < nextSeq {
					t.Errorf("round %d: append got seq %d, below the %d the file had reached", round, first, nextSeq)
				}
				key := fmt.Sprintf("w%d", w)
				for j := 0; j < n; j++ {
					durable[first+uint64(j)] = fmt.Sprintf("%s#%08d|", key, i+j)
				}
				appendsTotal++
			case strings.HasPrefix(l, "ack "):
				if _, err := fmt.Sscanf(l, "ack %d", &seq); err == nil {
					mayBeGone[seq] = true
				}
			}
		}
		lines += len(ls)

		q := openT(t, path, Options{})
		st := q.Stats()
		if st.Salvage != nil {
			t.Fatalf("round %d: file needed salvage after SIGKILL: %+v", round, st.Salvage)
		}
		assertBoltConsistent(t, q)
		present := map[uint64]Entry{}
		for _, e := range readAll(t, q) {
			present[e.Seq] = e
		}
		if uint64(len(present)) != st.Count {
			t.Errorf("round %d: Stats.Count %d, read %d", round, st.Count, len(present))
		}
		for seq, prefix := range durable {
			e, ok := present[seq]
			if !ok {
				if !mayBeGone[seq] {
					t.Fatalf("round %d: seq %d was reported durable and is missing", round, seq)
				}
				continue
			}
			if !bytes.HasPrefix(e.Data, []byte(prefix)) || !strings.HasPrefix(prefix, e.Key+"#") {
				t.Fatalf("round %d: seq %d holds %q/%.20q, want %s…", round, seq, e.Key, e.Data, prefix)
			}
		}
		nextSeq = st.NextSeq
		closeT(t, q)
	}
	t.Logf("%d kills, %d durable appends reported (%d records), all present; %d output lines", rounds, appendsTotal, len(durable), lines)
}

// TestErrLockedOtherProcess: a second agent (another process) on the same
// file gets ErrLocked within the lock timeout; the first keeps working.
func TestErrLockedOtherProcess(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "buffer.db")
	cmd := exec.Command(exe, "-test.run=^$")
	if wrap := os.Getenv("CITYEDGE_TEST_EXEC_WRAPPER"); wrap != "" {
		cmd = exec.Command(wrap, exe, "-test.run=^$")
	}
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		if errors.Is(err, syscall.ENOEXEC) {
			t.Skipf("cannot re-execute the test binary (%v); set CITYEDGE_TEST_EXEC_WRAPPER to the emulator", err)
		}
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() { // the child holds the file and has appended
		t.Fatal("child produced no output")
	}
	go func() {
		for sc.Scan() {
		}
	}()
	start := time.Now()
	_, err = Open(path, Options{LockTimeout: 500 * time.Millisecond, Logger: quietLog(t)})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "another process holds "+path) {
		t.Fatalf("Open while another process holds the file = %v, want ErrLocked naming %s", err, path)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("ErrLocked after %v", waited)
	}
}

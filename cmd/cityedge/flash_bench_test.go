package main

import (
	"bufio"
	"context"
	"fmt"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/agent"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/scripts/testbroker"
)

// BenchmarkAgentDiskWrites measures what the real agent costs the gateway's
// flash, at the default commit_interval (250ms) and at 1s: 50 simulated BME280s
// read every second for 20 s while the broker takes everything, and the
// bytes the process had the kernel write to storage (/proc/<pid>/io
// write_bytes) divided by the readings taken. Appends are group-committed and
// acks are deleted in the next group, so a reading costs a share of one
// fsync'd page write, not a page of its own.
func BenchmarkAgentDiskWrites(b *testing.B) {
	for _, commit := range []string{"250ms", "1s"} {
		b.Run("commit_interval="+commit, func(b *testing.B) { benchDiskWrites(b, commit) })
	}
}

func benchDiskWrites(b *testing.B, commit string) {
	const sensors, run = 50, 20 * time.Second
	for range b.N {
		br := testbroker.Start(b, testbroker.Options{})
		dir := b.TempDir()
		state := filepath.Join(dir, "state")
		var cfg strings.Builder
		fmt.Fprintf(&cfg, "[agent]\nid = \"gw-flash\"\nstate_dir = %q\n[buffer]\ncommit_interval = %q\n[uplink]\nbrokers = [%q]\nca_file = %q\ncert_file = %q\nkey_file = %q\n",
			state, commit, br.URL, br.PKI.CA.CertFile, br.PKI.Client.CertFile, br.PKI.Client.KeyFile)
		for i := 0; i < sensors; i++ {
			fmt.Fprintf(&cfg, "[[sensors]]\nname = \"air-%d\"\ndriver = \"bme280\"\nbus = \"%d\"\naddress = %#x\ninterval = \"1s\"\n",
				i, i/2, 0x76+i%2)
		}
		path := filepath.Join(dir, "cityedge.toml")
		if err := os.WriteFile(path, []byte(cfg.String()), 0o644); err != nil {
			b.Fatal(err)
		}
		c, err := config.Load(path)
		if err != nil {
			b.Fatal(err)
		}
		cmd := exec.Command(agentBinary(b), "--config", path, "--simulate")
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		time.Sleep(run)
		written := procWriteBytes(cmd.Process.Pid)
		live, _ := agent.Query(context.Background(), c, slog.New(slog.DiscardHandler))
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		if live == nil {
			b.Fatal("the agent did not answer on its control socket")
		}
		var readings uint64
		for _, s := range live.Sensors {
			readings += s.Readings
		}
		if readings == 0 {
			b.Fatal("no readings taken")
		}
		b.ReportMetric(float64(written)/float64(readings), "disk-B/reading")
		b.ReportMetric(float64(live.Buffer.Commits)/run.Seconds(), "commits/s")
		b.ReportMetric(float64(written)/float64(max(live.Buffer.Commits, 1)), "disk-B/commit")
		b.ReportMetric(float64(readings)/run.Seconds(), "readings/s")
	}
}

func procWriteBytes(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "write_bytes: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/agent"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/cityedge/cityedge/scripts/testbroker"
	"golang.org/x/sys/unix"
)

// BenchmarkAgentDiskWrites measures what the real agent costs the gateway's
// flash at 50 readings/s: 50 simulated BME280s read every second while the
// broker takes everything, with the default configuration (the default
// commit_interval) and with commit_interval = 250ms (the old default), for
// comparison (CITYEDGE_BENCH_COMMIT_INTERVALS="1s 2s" measures others). The state directory is an ext4 file system of its own on a
// loop device (an SD card's stand-in), and what counts is the sectors the
// device was asked to write over the window (/sys/block/loopN/stat), the
// journal included: /proc/PID/io charges whole page-cache folios and says
// nothing about wear. Needs root (losetup, mount); CITYEDGE_REQUIRE_ROOT=1
// turns the skip into a failure.
func BenchmarkAgentDiskWrites(b *testing.B) {
	commits := []string{"default", "250ms"}
	if s := os.Getenv("CITYEDGE_BENCH_COMMIT_INTERVALS"); s != "" {
		commits = strings.Fields(s) // e.g. "500ms 1s 2s", to choose the default
	}
	for _, commit := range commits {
		d := diskRun{sensors: 50}
		if commit != "default" {
			d.commit = commit
		}
		b.Run("commit_interval="+commit, func(b *testing.B) { benchDiskWrites(b, d) })
	}
}

// BenchmarkAgentDiskWrites500 is the same at 500 readings/s: 500 simulated
// BME280s read every second, with the default configuration.
func BenchmarkAgentDiskWrites500(b *testing.B) {
	benchDiskWrites(b, diskRun{sensors: 500})
}

// BenchmarkAgentDiskWritesOffline is BenchmarkAgentDiskWrites at the
// default configuration with the broker down all along: every reading is
// stored, the flash's worst case (an outage), where the broker-up figure is
// its everyday one.
func BenchmarkAgentDiskWritesOffline(b *testing.B) {
	benchDiskWrites(b, diskRun{sensors: 50, offline: true})
}

// diskRun is one flash measurement: sensors simulated BME280s read every
// second, with commit_interval commit ("": the default).
type diskRun struct {
	commit  string
	sensors int
	offline bool // the broker is stopped before the agent starts
	// extra, when set, adds to the configuration (a [sentilo] table:
	// flash_sentilo_bench_test.go).
	extra func(b *testing.B, br *testbroker.Broker, sensors int) string
}

func benchDiskWrites(b *testing.B, d diskRun) {
	const warmup, run = 5 * time.Second, 30 * time.Second
	for range b.N {
		dev := newLoopFS(b, 256<<20)
		br := testbroker.Start(b, testbroker.Options{})
		dir := b.TempDir()
		state := filepath.Join(dev.mount, "state")
		var cfg strings.Builder
		fmt.Fprintf(&cfg, "[agent]\nid = \"gw-flash\"\nstate_dir = %q\n", state)
		if d.commit != "" {
			fmt.Fprintf(&cfg, "[buffer]\ncommit_interval = %q\n", d.commit)
		}
		fmt.Fprintf(&cfg, "[uplink]\nbrokers = [%q]\nca_file = %q\ncert_file = %q\nkey_file = %q\n",
			br.URL, br.PKI.CA.CertFile, br.PKI.Client.CertFile, br.PKI.Client.KeyFile)
		cfg.WriteString(testClockRule)
		if d.extra != nil {
			cfg.WriteString(d.extra(b, br, d.sensors))
		}
		for i := 0; i < d.sensors; i++ {
			fmt.Fprintf(&cfg, "[[sensors]]\nname = \"air-%d\"\ndriver = \"bme280\"\nbus = \"%d\"\naddress = %#x\ninterval = \"1s\"\n",
				i, i/2, 0x76+i%2)
		}
		if d.offline {
			br.Stop()
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
		quiet := slog.New(slog.DiscardHandler)
		time.Sleep(warmup)
		dev.sync(b)
		sectors0 := dev.sectorsWritten(b)
		live0, _ := agent.Query(context.Background(), c, quiet)
		time.Sleep(run)
		live1, _ := agent.Query(context.Background(), c, quiet)
		dev.sync(b) // what the window left dirty (journal commit, inode) counts too
		sectors1 := dev.sectorsWritten(b)
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		if live0 == nil || live1 == nil {
			b.Fatal("the agent did not answer on its control socket")
		}
		if d.offline && live1.Uplink.Acked != 0 {
			b.Fatalf("%d readings acknowledged with the broker down: this is not the offline case", live1.Uplink.Acked)
		}
		readings := sumReadings(live1) - sumReadings(live0)
		if readings == 0 {
			b.Fatal("no readings taken")
		}
		commits := live1.Buffer.Commits - live0.Buffer.Commits
		written := float64(sectors1-sectors0) * 512
		b.ReportMetric(written/float64(readings), "disk-B/reading")
		b.ReportMetric(float64(commits)/run.Seconds(), "commits/s")
		b.ReportMetric(written/float64(max(commits, 1))/4096, "pages/commit")
		b.ReportMetric(float64(readings)/run.Seconds(), "readings/s")
		b.ReportMetric(written/run.Seconds(), "disk-B/s")
	}
}

func sumReadings(s *agent.LiveState) (n uint64) {
	for _, x := range s.Sensors {
		n += x.Readings
	}
	return n
}

// loopFS is an ext4 file system on a loop device, mounted for one benchmark.
type loopFS struct {
	dev   string // /dev/loopN
	mount string
}

// newLoopFS creates an image of size bytes, attaches it, makes an ext4 file
// system with the defaults of mkfs.ext4 (journal included) and mounts it.
func newLoopFS(b *testing.B, size int64) *loopFS {
	b.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CITYEDGE_REQUIRE_ROOT") == "1" {
			b.Fatal("needs root for a loop device (CITYEDGE_REQUIRE_ROOT=1)")
		}
		b.Skip("SKIP: needs root to measure writes at a loop device; CITYEDGE_REQUIRE_ROOT=1 makes this a failure")
	}
	dir := b.TempDir()
	img := filepath.Join(dir, "sd.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		b.Fatal(err)
	}
	run := func(name string, args ...string) string {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			b.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run("mkfs.ext4", "-q", "-F", img)
	l := &loopFS{dev: run("losetup", "--find", "--show", img), mount: filepath.Join(dir, "mnt")}
	b.Cleanup(func() { exec.Command("losetup", "--detach", l.dev).Run() })
	if err := os.Mkdir(l.mount, 0o700); err != nil {
		b.Fatal(err)
	}
	run("mount", "-t", "ext4", l.dev, l.mount)
	b.Cleanup(func() { exec.Command("umount", l.mount).Run() })
	return l
}

// sync flushes the file system, its journal included.
func (l *loopFS) sync(b *testing.B) {
	fd, err := unix.Open(l.mount, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		b.Fatal(err)
	}
}

// sectorsWritten is field 7 of /sys/block/loopN/stat: 512-byte sectors the
// device was asked to write.
func (l *loopFS) sectorsWritten(b *testing.B) uint64 {
	data, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(l.dev), "stat"))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(data))
	if len(f) < 7 {
		b.Fatalf("%s: unexpected stat %q", l.dev, data)
	}
	n, err := strconv.ParseUint(f[6], 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return n
}

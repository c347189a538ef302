// Command cityedge is the edge agent for smart-city gateways: it reads the
// configured parking and environmental sensors, keeps every reading in a
// durable on-disk buffer, and delivers the readings as SenML over MQTT with
// mutual TLS, deleting each one only after the broker acknowledged it.
//
// Usage:
//
//	cityedge [--config PATH] [--simulate] [--diagnose [--json] [--sign-test]] [--version]
//	cityedge [--config PATH] [--simulate] --blank-signs
//	cityedge [--config PATH] --enroll [--csr PATH]
//	cityedge [--config PATH] --sentilo-catalog
//
// Exit status: 0 ok, 1 runtime failure, 2 bad usage or bad configuration.
package main

// docs/cityedge.1 is made from the flag set and the configuration keys
// (manpage_gen_test.go):
//go:generate go test -run ^TestManPage$ . -args -update-man

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/agent"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/diagnose"
)

// Set at build time with -ldflags "-X main.version=... -X main.commit=... -X main.buildDate=...".
var (
	version   = "dev"
	commit    = ""
	buildDate = ""
)

const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

func main() {
	agent.SetMemoryLimit()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	config   string
	simulate bool
	diagnose bool
	json     bool
	version  bool
	enroll   bool
	csr      string
	// Parking signs (signs.go in the agent).
	blankSigns bool
	signTest   bool
	// sentilo.go: print the Sentilo catalog registration and exit.
	sentiloCatalog bool
}

// newFlagSet defines the command line into o (the man page is made from
// it too).
func newFlagSet(o *options, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("cityedge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.config, "config", config.DefaultPath, "configuration file `PATH` (TOML)")
	fs.BoolVar(&o.simulate, "simulate", false, "back every configured sensor with a simulated chip or pin (no hardware needed)")
	fs.BoolVar(&o.diagnose, "diagnose", false, "check config, sensors, buffer and broker once, print PASS/WARN/FAIL, exit 1 on any FAIL")
	fs.BoolVar(&o.json, "json", false, "with --diagnose: print the report as JSON")
	fs.BoolVar(&o.version, "version", false, "print version and build information and exit")
	fs.BoolVar(&o.enroll, "enroll", false, "create a new private key at uplink.key_file and write a certificate signing request")
	fs.StringVar(&o.csr, "csr", "-", "with --enroll: `PATH` where to write the CSR (PEM); - is standard output")
	fs.BoolVar(&o.blankSigns, "blank-signs", false, "show \"----\" on every configured sign and switch every lamp off, then exit (the unit's ExecStopPost=)")
	fs.BoolVar(&o.signTest, "sign-test", false, "with --diagnose: light every segment of every sign and every lamp, for a person at the sign to check")
	fs.BoolVar(&o.sentiloCatalog, "sentilo-catalog", false, "print the body of POST /catalog/{provider} that registers this gateway's Sentilo sensors (no network)")
	fs.Usage = func() { printUsage(stderr, fs) }
	return fs
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := newFlagSet(&o, stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		// flag has printed the error and the usage already.
		return o, errPrinted{err}
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.json && !o.diagnose {
		return o, errors.New("--json goes with --diagnose")
	}
	if o.diagnose && o.enroll {
		return o, errors.New("--diagnose and --enroll cannot be combined")
	}
	if o.signTest && !o.diagnose {
		return o, errors.New("--sign-test goes with --diagnose")
	}
	if o.blankSigns && (o.diagnose || o.enroll) {
		return o, errors.New("--blank-signs cannot be combined with --diagnose or --enroll")
	}
	return o, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	// Signals first: a SIGTERM or SIGHUP that arrives while the agent starts
	// must not kill it with Go's default action.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		if !errors.As(err, new(errPrinted)) {
			fmt.Fprintf(stderr, "cityedge: %v\n", err)
		}
		return exitUsage
	}
	if o.version {
		fmt.Fprintln(stdout, versionString())
		return exitOK
	}
	var notes []string // remote.go: a pushed configuration set aside
	cfg, err := config.LoadInForce(o.config, func(msg string) { notes = append(notes, msg) })
	if err == nil {
		// Only that the TLS files are named: files that are missing or wrong
		// stop the uplink, never sampling (the agent and --diagnose say why).
		if !o.blankSigns { // blanking signs needs no TLS material
			err = cfg.CheckFiles(false)
		}
	}
	if err != nil {
		if o.diagnose { // the report lists every problem, as text or JSON
			diagnose.ConfigFailed(o.config, err, diagnose.Options{JSON: o.json}, stdout)
			return exitUsage
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stderr, "cityedge: bad configuration: %s\n", line)
		}
		return exitUsage
	}
	logLevel := new(slog.LevelVar)
	_ = logLevel.UnmarshalText([]byte(cfg.Agent.LogLevel)) // validated with the config
	logger := newLogger(stderr, logLevel)
	slog.SetDefault(logger)
	for _, n := range notes {
		logger.Warn("pushed configuration not used", "detail", n)
	}

	switch {
	case o.blankSigns:
		return runBlankSigns(ctx, cfg, o.simulate, logger)
	case o.sentiloCatalog:
		return printSentiloCatalog(cfg, stdout, stderr)
	case o.enroll:
		return runEnroll(cfg, o.csr, stderr)
	case o.diagnose:
		if !diagnose.Run(ctx, cfg, diagnose.Options{Simulate: o.simulate, JSON: o.json, SignTest: o.signTest}, stdout) {
			return exitRuntime
		}
		return exitOK
	}
	err = agent.Run(ctx, cfg, agent.Deps{Version: version, Simulate: o.simulate, Logger: logger, Level: logLevel, Hup: hup,
		Diagnose: liveDiagnose, BuildDate: buildTime()})
	var setup *agent.SetupError
	switch {
	case errors.Is(err, agent.ErrRestart) && ctx.Err() == nil: // not when asked to stop meanwhile
		return restart(logger)
	case errors.Is(err, agent.ErrRestart):
		return exitOK
	case errors.As(err, &setup):
		return exitUsage
	case err != nil:
		return exitRuntime
	}
	return exitOK
}

// runBlankSigns is --blank-signs: every sign shows "----", every lamp off.
// It exits 1 when a sign could not be blanked (systemd logs it; the unit
// ignores the status of ExecStopPost= for restarts).
func runBlankSigns(ctx context.Context, cfg *config.Config, simulate bool, log *slog.Logger) int {
	code := exitOK
	for _, r := range agent.BlankSigns(ctx, cfg, simulate) {
		if r.Err != nil {
			log.Error("sign not blanked", "sign", r.Name, "at", r.Where, "err", r.Err)
			code = exitRuntime
			continue
		}
		log.Info("sign blanked", "sign", r.Name, "at", r.Where)
	}
	return code
}

func versionString() string {
	bi, _ := debug.ReadBuildInfo()
	return describeBuild(version, commit, buildDate, bi)
}

// describeBuild names the build: the -ldflags values when given, otherwise
// what the Go toolchain recorded (module version, VCS revision and time, and
// whether the tree had uncommitted changes), so that any binary in the field
// can be traced to a commit.
func describeBuild(ver, rev, date string, bi *debug.BuildInfo) string {
	modified, fromInfo := false, rev == ""
	if bi != nil {
		if ver == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			ver = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && rev == "":
				rev = s.Value
			case s.Key == "vcs.time" && date == "":
				date = s.Value
			case s.Key == "vcs.modified" && fromInfo:
				modified = s.Value == "true"
			}
		}
	}
	if rev == "" {
		rev = "unknown"
	} else if modified {
		rev += "-modified"
	}
	if date == "" {
		date = "unknown"
	}
	return fmt.Sprintf("cityedge %s (commit %s, built %s, %s, %s/%s)", ver, rev, date, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// newLogger logs text to stderr, which journald keeps. Under systemd
// (JOURNAL_STREAM set) the timestamp is left out: the journal adds its own.
func newLogger(w io.Writer, level slog.Leveler) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if os.Getenv("JOURNAL_STREAM") != "" {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// Command vmcheck is the host side of cityedge's emulated-gateway test
// (scripts/vm/run.sh). It holds the test scenario in one place: it writes the
// development PKI and the guest's files (agent configuration, the shell
// functions that set up and change the simulated chips and GPIO line), and
// afterwards it checks what the broker received and what the guest printed
// against values computed here, independently of the agent's drivers, from
// the chips' datasheet formulas.
//
// Usage:
//
//	vmcheck pki DIR AGENT_ID          CA, broker (10.0.2.2, 127.0.0.1), agent and observer certificates
//	vmcheck scenario DIR AGENT_ID PORT TIME_PORT the guest's /etc/cityedge and /etc/vmtest
//	vmcheck initramfs DIR OUT.gz       pack DIR as the guest's initramfs (root:root, with /dev/console)
//	vmcheck freeport                   a free TCP port on 127.0.0.1
//	vmcheck timeserver PORT_FILE       the host's true time for the guest's ntpset (see clock.go)
//	vmcheck check AGENT_ID CONSOLE CAPTURE CLOCK_CAPTURE
//
// check exits 1 and says why when anything differs.
package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "vmcheck: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	usage := fmt.Errorf("usage: vmcheck pki DIR AGENT_ID | scenario DIR AGENT_ID PORT TIME_PORT | initramfs DIR OUT.gz | freeport | timeserver PORT_FILE | check AGENT_ID CONSOLE CAPTURE CLOCK_CAPTURE")
	if len(args) == 0 {
		return usage
	}
	switch {
	case args[0] == "pki" && len(args) == 3:
		return writePKI(args[1], args[2])
	case args[0] == "scenario" && len(args) == 5:
		var ports [2]int
		for i, a := range args[3:] {
			p, err := strconv.Atoi(a)
			if err != nil || p < 1 || p > 65535 {
				return fmt.Errorf("scenario: port %q is not a port number", a)
			}
			ports[i] = p
		}
		return writeScenario(args[1], args[2], ports[0], ports[1])
	case args[0] == "timeserver" && len(args) == 2:
		return timeServer(args[1])
	case args[0] == "initramfs" && len(args) == 3:
		return writeInitramfs(args[1], args[2])
	case args[0] == "freeport" && len(args) == 1:
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("freeport: %w", err)
		}
		defer l.Close()
		fmt.Println(l.Addr().(*net.TCPAddr).Port)
		return nil
	case args[0] == "check" && len(args) == 5:
		var files [3]string
		for i, name := range args[2:] {
			b, err := os.ReadFile(name)
			if err != nil {
				return fmt.Errorf("check: %w", err)
			}
			files[i] = string(b)
		}
		res := check(args[1], files[0], files[1])
		checkClock(&res, args[1], files[0], files[2])
		for _, l := range res.passed {
			fmt.Println("ok   " + l)
		}
		for _, l := range res.failed {
			fmt.Println("FAIL " + l)
		}
		if len(res.failed) > 0 {
			return fmt.Errorf("%d of %d checks failed", len(res.failed), len(res.failed)+len(res.passed))
		}
		fmt.Printf("all %d checks passed\n", len(res.passed))
		return nil
	}
	return usage
}

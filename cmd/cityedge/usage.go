package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// usageLines are the synopsis, as README's "Command line" shows it.
var usageLines = []string{
	"cityedge [--config PATH] [--simulate] [--diagnose [--json] [--sign-test]] [--version]",
	"cityedge [--config PATH] [--simulate] --blank-signs",
	"cityedge [--config PATH] --enroll [--csr PATH]",
	"cityedge [--config PATH] --sentilo-catalog",
}

// errPrinted is a flag error the flag package has already printed.
type errPrinted struct{ error }

// printUsage writes the synopsis and every flag with two dashes, as README
// writes them (flag.PrintDefaults would show one).
func printUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: %s\n", usageLines[0])
	for _, l := range usageLines[1:] {
		fmt.Fprintf(w, "       %s\n", l)
	}
	fmt.Fprintln(w)
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		head := "  --" + f.Name
		if name != "" {
			head += " " + name
		}
		fmt.Fprintf(w, "%s\n    \t%s", head, strings.ReplaceAll(usage, "\n", "\n    \t"))
		if f.DefValue != "" && f.DefValue != "false" {
			fmt.Fprintf(w, " (default %q)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
	fmt.Fprintln(w, "\nExit status: 0 ok, 1 runtime failure, 2 bad usage or bad configuration. See `man cityedge`.")
}

package agent

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"periph.io/x/host/v3/gpioioctl"
)

// Inventory lists the I2C buses and GPIO chips this host has, with the
// named lines of each chip, for messages about a bus or pin that is not
// there: a technician learns what does exist instead of periph's "did you
// forget to call Init()". It reads /dev and the gpiochips periph found at
// host.Init.
func Inventory() string {
	return inventory(devGlob, gpioChips)
}

var devGlob = filepath.Glob

// gpioChip is what the inventory needs of one chip.
type gpioChip struct {
	name, label string
	lines       []string // named lines only
	count       int
}

func gpioChips() []gpioChip {
	var out []gpioChip
	for _, c := range gpioioctl.Chips {
		g := gpioChip{name: c.Name(), label: c.Label(), count: c.LineCount()}
		for _, l := range c.Lines() {
			if n := l.Name(); n != "" {
				g.lines = append(g.lines, n)
			}
		}
		out = append(out, g)
	}
	return out
}

func inventory(glob func(string) ([]string, error), chips func() []gpioChip) string {
	var parts []string
	buses, _ := glob("/dev/i2c-*")
	slices.Sort(buses)
	if len(buses) == 0 {
		parts = append(parts, "no I2C bus on this host (no /dev/i2c-*: enable I2C and load the i2c-dev module)")
	} else {
		parts = append(parts, "I2C buses: "+strings.Join(buses, ", "))
	}
	cs := chips()
	if len(cs) == 0 {
		parts = append(parts, "no GPIO chip on this host (no /dev/gpiochip*)")
	}
	for _, c := range cs {
		lines := "no named lines"
		if len(c.lines) > 0 {
			const max = 40
			shown := c.lines
			more := ""
			if len(shown) > max {
				shown, more = shown[:max], fmt.Sprintf(" and %d more", len(c.lines)-max)
			}
			lines = "lines " + strings.Join(shown, ", ") + more
		}
		parts = append(parts, fmt.Sprintf("%s (%s, %d lines): %s", c.name, c.label, c.count, lines))
	}
	return strings.Join(parts, "; ") + "; use --simulate for a desk check without hardware"
}

// withoutInitHint drops periph's "did you forget to call Init()?" from an
// error message: Init was called, the host simply has no such bus.
func withoutInitHint(err error) string {
	s := err.Error()
	for _, h := range []string{"; did you forget to call Init()?", ", did you forget to call Init()?", " did you forget to call Init()?"} {
		s = strings.ReplaceAll(s, h, "")
	}
	return s
}

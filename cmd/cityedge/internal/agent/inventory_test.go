package agent

import (
	"errors"
	"strings"
	"testing"
)

// TestInventory: the list of what a host has, for a technician whose
// configured bus or pin is not there.
func TestInventory(t *testing.T) {
	none := func(string) ([]string, error) { return nil, nil }
	two := func(string) ([]string, error) { return []string{"/dev/i2c-1", "/dev/i2c-0"}, nil }
	chip := func() []gpioChip {
		return []gpioChip{{name: "gpiochip0", label: "pinctrl-bcm2835", count: 54, lines: []string{"GPIO17", "GPIO27"}}}
	}
	for _, c := range []struct {
		name  string
		glob  func(string) ([]string, error)
		chips func() []gpioChip
		want  []string
	}{
		{"bare machine", none, func() []gpioChip { return nil }, []string{"no I2C bus", "no GPIO chip", "--simulate"}},
		{"gateway", two, chip, []string{"I2C buses: /dev/i2c-0, /dev/i2c-1", "gpiochip0 (pinctrl-bcm2835, 54 lines): lines GPIO17, GPIO27"}},
	} {
		got := inventory(c.glob, c.chips)
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q lacks %q", c.name, got, w)
			}
		}
	}
	if got := withoutInitHint(errors.New("i2creg: no bus found; did you forget to call Init()?")); strings.Contains(got, "Init") {
		t.Errorf("hint kept: %s", got)
	}
}

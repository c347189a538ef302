package ht16k33

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/cityedge/cityedge/drivers/internal/drivertest"
	"github.com/cityedge/cityedge/drivers/sim"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2ctest"
)

// ram builds display RAM contents from the backpack's four digit bytes
// (addresses 0x00, 0x02, 0x06, 0x08) and the colon byte (0x04).
func ram(d0, d1, d2, d3, colon byte) [RAMSize]byte {
	var r [RAMSize]byte
	r[0x00], r[0x02], r[0x04], r[0x06], r[0x08] = d0, d1, colon, d2, d3
	return r
}

func TestEncode(t *testing.T) {
	cases := []struct {
		text string
		want [RAMSize]byte
		err  string
	}{
		// Segments a..g are bits 0..6: 3 = a b c d g = 0x4F, F = a e f g =
		// 0x71, U = b c d e f = 0x3E, L = d e f = 0x38, - = g = 0x40.
		{"", ram(0, 0, 0, 0, 0), ""},
		{"3", ram(0, 0, 0, 0x4F, 0), ""},
		{"42", ram(0, 0, 0x66, 0x5B, 0), ""},
		{"  42", ram(0, 0, 0x66, 0x5B, 0), ""},
		{"1234", ram(0x06, 0x5B, 0x4F, 0x66, 0), ""},
		{"9999", ram(0x6F, 0x6F, 0x6F, 0x6F, 0), ""},
		{"0", ram(0, 0, 0, 0x3F, 0), ""},
		{"FULL", ram(0x71, 0x3E, 0x38, 0x38, 0), ""},
		{"----", ram(0x40, 0x40, 0x40, 0x40, 0), ""},
		{"8", ram(0, 0, 0, 0x7F, 0), ""},
		{"12345", [RAMSize]byte{}, "5 characters, the display has 4"},
		{"full", [RAMSize]byte{}, "no 7-segment glyph for 'f'"},
		{"1:2", [RAMSize]byte{}, "no 7-segment glyph for ':'"},
		{"1.5", [RAMSize]byte{}, "no 7-segment glyph for '.'"},
		{"\xff", [RAMSize]byte{}, "not UTF-8"},
	}
	for _, tc := range cases {
		got, err := Encode(tc.text)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Encode(%q) = % x, %v; want an error containing %q", tc.text, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Encode(%q) = % x, %v; want % x", tc.text, got, err, tc.want)
		}
	}
}

// Every glyph lights a different set of segments, so the display can be
// read back unambiguously.
func TestGlyphsDistinct(t *testing.T) {
	seen := map[byte]rune{}
	for c, g := range glyphs {
		if g&segDP != 0 {
			t.Errorf("glyph %q lights the decimal point", c)
		}
		if o, dup := seen[g]; dup {
			t.Errorf("glyphs %q and %q both light %#02x", c, o, g)
		}
		seen[g] = c
	}
}

// The datasheet's start-up sequence, byte for byte.
func TestNew(t *testing.T) {
	zeros := make([]byte, RAMSize)
	setup := func(a uint16) i2ctest.IO { return i2ctest.IO{Addr: a, W: []byte{0x21}} }
	clear := func(a uint16) i2ctest.IO { return i2ctest.IO{Addr: a, W: append([]byte{0x00}, zeros...)} }
	readBack := func(a uint16, r []byte) i2ctest.IO { return i2ctest.IO{Addr: a, W: []byte{0x00}, R: r} }
	dim := func(a uint16, n byte) i2ctest.IO { return i2ctest.IO{Addr: a, W: []byte{0xE0 | n}} }
	on := func(a uint16) i2ctest.IO { return i2ctest.IO{Addr: a, W: []byte{0x81}} }
	start := func(a uint16, n byte) []i2ctest.IO {
		return []i2ctest.IO{setup(a), clear(a), readBack(a, zeros), dim(a, n), on(a)}
	}
	garbage := append([]byte{0xFF}, zeros[1:]...)
	cases := []struct {
		name   string
		opts   *Opts
		ops    []i2ctest.IO
		nackAt int
		err    string
		nacked bool
	}{
		{"defaults: 0x70, dimming 0xE8 (duty 9/16)", nil, start(0x70, 8), -1, "", false},
		{"darkest at 0x77", &Opts{Addr: 0x77, Brightness: 0}, start(0x77, 0), -1, "", false},
		{"brightest", &Opts{Addr: 0x70, Brightness: 15}, start(0x70, 15), -1, "", false},
		{"brightness 16", &Opts{Addr: 0x70, Brightness: 16}, nil, -1, "brightness = 16: want 0 to 15", false},
		{"brightness -1", &Opts{Addr: 0x70, Brightness: -1}, nil, -1, "brightness = -1", false},
		{"address of another chip", &Opts{Addr: 0x3C, Brightness: 8}, nil, -1, "address = 0x3c: an HT16K33 answers at 0x70 to 0x77", false},
		{"RAM does not read back", nil, []i2ctest.IO{setup(0x70), clear(0x70), readBack(0x70, garbage)}, -1, "reads ff 00", false},
		{"nothing there", nil, nil, 0, "system setup (oscillator on)", true},
		{"NACK on clearing", nil, []i2ctest.IO{setup(0x70)}, 1, "write display RAM", true},
		{"NACK on read back", nil, []i2ctest.IO{setup(0x70), clear(0x70)}, 2, "read back display RAM", true},
		{"NACK on dimming", nil, []i2ctest.IO{setup(0x70), clear(0x70), readBack(0x70, zeros)}, 3, "dimming set 9/16", true},
		{"NACK on display on", nil, []i2ctest.IO{setup(0x70), clear(0x70), readBack(0x70, zeros), dim(0x70, 8)}, 4, "display setup (on, no blinking)", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := New(drivertest.Playback(t, tc.ops, tc.nackAt), tc.opts)
			if drivertest.WantErr(t, "New", err, tc.err) {
				wantNACK(t, "New", err, tc.nackAt, tc.nacked)
				return
			}
			if d == nil {
				t.Fatal("New returned no device and no error")
			}
		})
	}
}

func TestShow(t *testing.T) {
	write := func(r [RAMSize]byte) i2ctest.IO { return i2ctest.IO{Addr: 0x70, W: append([]byte{0x00}, r[:]...)} }
	cases := []struct {
		name   string
		text   string
		ops    []i2ctest.IO
		nackAt int
		err    string
		nacked bool
	}{
		{"free count", "7", []i2ctest.IO{write(ram(0, 0, 0, 0x07, 0))}, -1, "", false},
		{"full", "FULL", []i2ctest.IO{write(ram(0x71, 0x3E, 0x38, 0x38, 0))}, -1, "", false},
		{"unknown", "----", []i2ctest.IO{write(ram(0x40, 0x40, 0x40, 0x40, 0))}, -1, "", false},
		{"too long: nothing written", "10000", nil, -1, "5 characters", false},
		{"NACK", "12", nil, 0, "write display RAM", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := &Dev{c: i2c.Dev{Bus: drivertest.Playback(t, tc.ops, tc.nackAt), Addr: 0x70}}
			err := d.Show(tc.text)
			if drivertest.WantErr(t, "Show", err, tc.err) {
				wantNACK(t, "Show", err, tc.nackAt, tc.nacked)
			}
		})
	}
}

func TestLampTestAndBrightness(t *testing.T) {
	all := ram(0xFF, 0xFF, 0xFF, 0xFF, 0x02)
	ops := []i2ctest.IO{
		{Addr: 0x71, W: append([]byte{0x00}, all[:]...)},
		{Addr: 0x71, W: []byte{0xE3}},
	}
	d := &Dev{c: i2c.Dev{Bus: drivertest.Playback(t, ops, -1), Addr: 0x71}}
	if err := d.LampTest(); err != nil {
		t.Fatal(err)
	}
	if err := d.SetBrightness(3); err != nil {
		t.Fatal(err)
	}
	if err := d.SetBrightness(16); err == nil {
		t.Error("SetBrightness(16) accepted")
	}
	if got, want := d.String(), "ht16k33(playback 0x71)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if err := d.Halt(); err != nil {
		t.Errorf("Halt: %v", err)
	}
}

func TestValidate(t *testing.T) {
	for _, o := range []Opts{DefaultOpts, {Addr: 0x70, Brightness: 0}, {Addr: 0x77, Brightness: 15}} {
		if err := o.Validate(); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
	}
	for _, o := range []Opts{{Addr: 0x6F, Brightness: 8}, {Addr: 0x78, Brightness: 8}, {Addr: 0x70, Brightness: 99}} {
		if err := o.Validate(); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

// wantNACK checks that err wraps sim.ErrNACK exactly when the case injects a
// NACK (see drivers/bh1750's twin for why both are checked).
func wantNACK(t *testing.T, step string, err error, nack int, nacked bool) {
	t.Helper()
	if nacked != (nack >= 0) {
		t.Errorf("%s: the case expects a NACK error %v but injects a NACK at transaction %d", step, nacked, nack)
	}
	if got := errors.Is(err, sim.ErrNACK); got != nacked {
		t.Errorf("%s: %v: wraps sim.ErrNACK %v, want %v", step, err, got, nacked)
	}
}

func FuzzEncode(f *testing.F) {
	for _, s := range []string{"", "7", "FULL", "----", "12345", "x", "\xff", "8888"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		got, err := Encode(text)
		if err != nil {
			return
		}
		if !utf8.ValidString(text) || utf8.RuneCountInString(text) > Digits {
			t.Fatalf("Encode(%q) accepted", text)
		}
		// Only the digit bytes are used, never a decimal point or the colon,
		// and they spell the text right-aligned.
		want := []rune(strings.Repeat(" ", Digits-utf8.RuneCountInString(text)) + text)
		for i, b := range got {
			digit := -1
			for n, a := range digitAddr {
				if a == i {
					digit = n
				}
			}
			if digit < 0 {
				if b != 0 {
					t.Fatalf("Encode(%q): RAM[%#02x] = %#02x, not a digit", text, i, b)
				}
				continue
			}
			if g, ok := glyphs[want[digit]]; !ok || g != b {
				t.Fatalf("Encode(%q): digit %d = %#02x, want the glyph of %q", text, digit, b, want[digit])
			}
		}
	})
}

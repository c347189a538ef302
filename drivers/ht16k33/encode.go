package ht16k33

import (
	"fmt"
	"unicode/utf8"
)

// RAMSize is the size of the display RAM: 16 bytes, addresses 0x00 to 0x0F
// ("Display Data Address Pointer": 8 rows of 16 bits).
const RAMSize = 16

// Digits is the number of digits of the backpack.
const Digits = 4

// Layout of the common 4-digit 7-segment backpack (Adafruit 0.56" and its
// clones): digit n is lit from RAM address digitAddr[n], left to right; the
// colon between the second and third digit is bit 1 of colonAddr; in a digit
// byte, segments a to g are bits 0 to 6 and the decimal point is bit 7. The
// odd addresses (rows' upper bytes, outputs ROW8 to ROW15) are not wired.
var digitAddr = [Digits]int{0x00, 0x02, 0x06, 0x08}

// Colon position in the display RAM.
const (
	colonAddr = 0x04
	colonBit  = 0x02
)

// Segment bits of a digit byte.
const (
	segA  = 1 << iota // top
	segB              // upper right
	segC              // lower right
	segD              // bottom
	segE              // lower left
	segF              // upper left
	segG              // middle
	segDP             // decimal point
)

// glyphs maps each character the display can show to its segments. Every
// glyph differs from every other, so the lit segments tell which character
// was meant (a test keeps it so).
var glyphs = map[rune]byte{
	' ': 0,
	'-': segG,
	'_': segD,
	'0': segA | segB | segC | segD | segE | segF,
	'1': segB | segC,
	'2': segA | segB | segD | segE | segG,
	'3': segA | segB | segC | segD | segG,
	'4': segB | segC | segF | segG,
	'5': segA | segC | segD | segF | segG,
	'6': segA | segC | segD | segE | segF | segG,
	'7': segA | segB | segC,
	'8': segA | segB | segC | segD | segE | segF | segG,
	'9': segA | segB | segC | segD | segF | segG,
	'A': segA | segB | segC | segE | segF | segG,
	'b': segC | segD | segE | segF | segG,
	'C': segA | segD | segE | segF,
	'd': segB | segC | segD | segE | segG,
	'E': segA | segD | segE | segF | segG,
	'F': segA | segE | segF | segG,
	'H': segB | segC | segE | segF | segG,
	'L': segD | segE | segF,
	'n': segC | segE | segG,
	'o': segC | segD | segE | segG,
	'P': segA | segB | segE | segF | segG,
	'r': segE | segG,
	't': segD | segE | segF | segG,
	'U': segB | segC | segD | segE | segF,
}

// Encode returns the display RAM contents (address 0x00 first) that show
// text: at most four characters, right-aligned (a shorter text is padded
// with blanks on the left, so "3" shows as "   3"), colon and decimal points
// off. It is pure: Show writes what it returns.
func Encode(text string) ([RAMSize]byte, error) {
	var ram [RAMSize]byte
	if !utf8.ValidString(text) {
		return ram, fmt.Errorf("ht16k33: cannot show %q: not UTF-8", text)
	}
	n := utf8.RuneCountInString(text)
	if n > Digits {
		return ram, fmt.Errorf("ht16k33: cannot show %q: %d characters, the display has %d", text, n, Digits)
	}
	i := Digits - n
	for _, c := range text {
		g, ok := glyphs[c]
		if !ok {
			return ram, fmt.Errorf("ht16k33: cannot show %q: no 7-segment glyph for %q", text, c)
		}
		ram[digitAddr[i]] = g
		i++
	}
	return ram, nil
}

// lampTest is the RAM contents that light every segment, decimal point and
// the colon.
func lampTest() [RAMSize]byte {
	var ram [RAMSize]byte
	for _, a := range digitAddr {
		ram[a] = 0xFF
	}
	ram[colonAddr] = colonBit
	return ram
}

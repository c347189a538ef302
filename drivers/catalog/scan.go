package catalog

import (
	"fmt"
	"slices"
	"strings"

	"periph.io/x/conn/v3/i2c"
)

// Found is an I2C address that answered a scan, with the registered drivers
// whose chips can have that address (none when no driver knows it).
type Found struct {
	Addr    uint16
	Drivers []string
}

// String formats f for a report: "0x44 sht3x, sht4x" or "0x50 (no driver)".
func (f Found) String() string {
	if len(f.Drivers) == 0 {
		return fmt.Sprintf("%#02x (no driver)", f.Addr)
	}
	return fmt.Sprintf("%#02x %s", f.Addr, strings.Join(f.Drivers, ", "))
}

// Scan range: the 7-bit addresses i2cdetect probes by default. 0x00–0x07
// (general call, CBUS, other buses, high-speed master codes) and 0x78–0x7F
// (10-bit addressing, reserved) are not device addresses.
const (
	scanFirst = 0x08
	scanLast  = 0x77
)

// sensirionProbes are harmless commands for chips that do not acknowledge a
// read while they have nothing to send (Sensirion's sensors NACK the read
// header until a command has produced a response). Each only asks for a
// status word or an identifier and changes no setting; the driver's next
// command discards the response. They are sent only to an address where
// the read was refused and a driver that knows the chip is registered.
var sensirionProbes = map[string][]byte{
	"sht3x": {0xF3, 0x2D}, // read out of status register
	"sht4x": {0x89},       // read serial number
	"scd4x": {0xE4, 0xB8}, // get_data_ready_status, accepted in idle and periodic mode
	"sps30": {0xD1, 0x00}, // read version, accepted in every mode
}

// Scan probes every address from 0x08 to 0x77 on bus and returns those that
// answer, in address order, each with the drivers registered for it. It is
// for diagnosis: run it while nothing else uses the bus, since a probe can
// take away a response another reader was waiting for.
//
// The probe is a one-byte read (i2cdetect's "read byte" mode, -r). An SMBus
// quick write, i2cdetect's default for most addresses, is not possible
// through periph: its Linux i2c-dev bus returns success for a transaction
// that neither writes nor reads without touching the bus, so every address
// would "answer". A read changes no chip's configuration; the exceptions
// i2cdetect's manual names (write-only clock generators at 0x69 can lock up
// on a read) are not found on the gateways this agent targets, and 0x69 is
// where an SPS30 sits. Where the read is refused and a Sensirion driver is
// registered for the address, a harmless command (sensirionProbes) is
// tried as well.
func Scan(bus i2c.Bus) []Found {
	byAddr := map[uint16][]string{}
	for _, name := range Names() {
		d, _ := Lookup(name)
		if d.Kind != I2C {
			continue
		}
		for _, a := range d.Addrs {
			byAddr[a] = append(byAddr[a], name)
		}
	}
	var found []Found
	var b [1]byte
	for addr := uint16(scanFirst); addr <= scanLast; addr++ {
		ok := bus.Tx(addr, nil, b[:]) == nil
		for _, name := range byAddr[addr] {
			if ok {
				break
			}
			if cmd := sensirionProbes[name]; cmd != nil {
				ok = bus.Tx(addr, cmd, nil) == nil
			}
		}
		if ok {
			found = append(found, Found{Addr: addr, Drivers: slices.Clone(byAddr[addr])})
		}
	}
	return found
}

package main

// The checker's own conversions, written from the datasheets' formulas and
// deliberately not shared with the agent's drivers: the drivers use the
// integer formulas, these the floating-point ones, so an error in either
// shows up as a difference.

// bmeCalib holds a BME280's trimming parameters (BME280 datasheet
// BST-BME280-DS002 section 4.2.2, table 16).
type bmeCalib struct {
	T1                             uint16
	T2, T3                         int16
	P1                             uint16
	P2, P3, P4, P5, P6, P7, P8, P9 int16
	H1, H3                         uint8
	H2, H4, H5                     int16
	H6                             int8
}

// bmeRegs returns the register contents that hold c: 0x88..0xA1 (26 bytes)
// and 0xE1..0xE7 (7 bytes), laid out as table 16 says: little-endian words,
// dig_H4 and dig_H5 as 12-bit values sharing register 0xE5.
func (c bmeCalib) bmeRegs() (lo, hi []byte) {
	le := func(b []byte, v uint16) []byte { return append(b, byte(v), byte(v>>8)) }
	lo = le(lo, c.T1)
	lo = le(lo, uint16(c.T2))
	lo = le(lo, uint16(c.T3))
	lo = le(lo, c.P1)
	for _, p := range []int16{c.P2, c.P3, c.P4, c.P5, c.P6, c.P7, c.P8, c.P9} {
		lo = le(lo, uint16(p))
	}
	lo = append(lo, 0x00, c.H1) // 0xA0 is reserved
	hi = le(hi, uint16(c.H2))
	hi = append(hi, c.H3,
		byte(uint16(c.H4)>>4), byte(uint16(c.H4)&0x0F)|byte(uint16(c.H5)&0x0F)<<4, byte(uint16(c.H5)>>4),
		byte(c.H6))
	return lo, hi
}

// bmeData returns registers 0xF7..0xFE for raw ADC values: pressure and
// temperature are 20 bits, MSB first, in the top bits of three registers;
// humidity is 16 bits, MSB first (datasheet section 5.4.7 to 5.4.9).
func bmeData(adcT, adcP, adcH int32) []byte {
	return []byte{
		byte(adcP >> 12), byte(adcP >> 4), byte(adcP<<4) & 0xF0,
		byte(adcT >> 12), byte(adcT >> 4), byte(adcT<<4) & 0xF0,
		byte(adcH >> 8), byte(adcH),
	}
}

// bmeCompensate is the double-precision compensation of the BME280
// datasheet, section 8.1: temperature in °C, pressure in Pa, humidity in
// %RH.
func bmeCompensate(c bmeCalib, adcT, adcP, adcH int32) (tempC, pressPa, rh float64) {
	aT, aP, aH := float64(adcT), float64(adcP), float64(adcH)
	t1, t2, t3 := float64(c.T1), float64(c.T2), float64(c.T3)
	var1 := (aT/16384 - t1/1024) * t2
	var2 := (aT/131072 - t1/8192) * (aT/131072 - t1/8192) * t3
	tFine := var1 + var2
	tempC = tFine / 5120

	var1 = tFine/2 - 64000
	var2 = var1 * var1 * float64(c.P6) / 32768
	var2 += var1 * float64(c.P5) * 2
	var2 = var2/4 + float64(c.P4)*65536
	var1 = (float64(c.P3)*var1*var1/524288 + float64(c.P2)*var1) / 524288
	var1 = (1 + var1/32768) * float64(c.P1)
	if var1 != 0 {
		p := 1048576 - aP
		p = (p - var2/4096) * 6250 / var1
		var1 = float64(c.P9) * p * p / 2147483648
		var2 = p * float64(c.P8) / 32768
		pressPa = p + (var1+var2+float64(c.P7))/16
	}

	h := tFine - 76800
	h = (aH - (float64(c.H4)*64 + float64(c.H5)/16384*h)) *
		(float64(c.H2) / 65536 * (1 + float64(c.H6)/67108864*h*(1+float64(c.H3)/67108864*h)))
	h *= 1 - float64(c.H1)*h/524288
	rh = min(max(h, 0), 100)
	return tempC, pressPa, rh
}

// sensirionCRC is the CRC-8 of Sensirion's sensors: polynomial 0x31, initial
// value 0xFF, no reflection, no final XOR (SHT3x datasheet section 4.12,
// table 20).
func sensirionCRC(b []byte) byte {
	crc := byte(0xFF)
	for _, v := range b {
		crc ^= v
		for range 8 {
			if crc&0x80 != 0 {
				crc = crc<<1 ^ 0x31
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// sensirionWords returns words as the chip sends them: each big-endian and
// followed by its CRC.
func sensirionWords(words ...uint16) []byte {
	var out []byte
	for _, w := range words {
		b := []byte{byte(w >> 8), byte(w)}
		out = append(out, b[0], b[1], sensirionCRC(b))
	}
	return out
}

// shtConvert is the SHT3x conversion of section 4.13: T = -45 + 175·S/(2¹⁶-1)
// °C, RH = 100·S/(2¹⁶-1) %RH.
func shtConvert(sT, sRH uint16) (tempC, rh float64) {
	return -45 + 175*float64(sT)/65535, 100 * float64(sRH) / 65535
}

// qmcTesla converts a QMC5883L count at the ±2 G range (12000 LSB/G, 1 G =
// 10⁻⁴ T) to tesla.
func qmcTesla(count int16) float64 { return float64(count) / 12000 * 1e-4 }

// qmcData returns registers 0x00..0x05: X, Y, Z as little-endian two's
// complement (QMC5883L datasheet section 9.1).
func qmcData(f field) []byte {
	var out []byte
	for _, v := range []int16{f.X, f.Y, f.Z} {
		out = append(out, byte(uint16(v)), byte(uint16(v)>>8))
	}
	return out
}

package bme280

import (
	"encoding/binary"
	"fmt"

	"periph.io/x/conn/v3/physic"
)

// calibration holds the trimming words of one chip (datasheet section 4.2.2,
// table 16) and which optional channels the driver enabled.
type calibration struct {
	t1                             uint16
	t2, t3                         int16
	p1                             uint16
	p2, p3, p4, p5, p6, p7, p8, p9 int16
	h1, h3                         uint8
	h2, h4, h5                     int16
	h6                             int8
	hasHumidityCal                 bool // words 0xE1..0xE7 were read (BME280)
	pressure, humidity             bool // channels enabled in ctrl_meas / ctrl_hum
}

// parseCalibration decodes registers 0x88..0xA1 (c1, 26 bytes) and, for a
// BME280, 0xE1..0xE7 (c2, 7 bytes; nil for a BMP280). Words are little endian;
// dig_H4 and dig_H5 are 12-bit values sharing register 0xE5.
func parseCalibration(c1, c2 []byte) (calibration, error) {
	if len(c1) != calib1Len || (c2 != nil && len(c2) != calib2Len) {
		return calibration{}, fmt.Errorf("%w: %d+%d bytes", errCalib, len(c1), len(c2))
	}
	if same(c1) {
		// A chip whose NVM reads all 0x00 or all 0xFF is dead or absent
		// behind a bus that floats; compensating with it yields nonsense.
		return calibration{}, fmt.Errorf("%w: registers 0x88..0xA1 all read %#02x", errCalib, c1[0])
	}
	u := func(i int) uint16 { return binary.LittleEndian.Uint16(c1[i:]) }
	s := func(i int) int16 { return int16(u(i)) }
	c := calibration{
		t1: u(0), t2: s(2), t3: s(4),
		p1: u(6), p2: s(8), p3: s(10), p4: s(12), p5: s(14), p6: s(16), p7: s(18), p8: s(20), p9: s(22),
		h1: c1[25],
	}
	if c.t1 == 0 || c.p1 == 0 {
		return calibration{}, fmt.Errorf("%w: dig_T1=%d dig_P1=%d", errCalib, c.t1, c.p1)
	}
	if c2 != nil {
		c.hasHumidityCal = true
		c.h2 = int16(binary.LittleEndian.Uint16(c2[0:]))
		c.h3 = c2[2]
		c.h4 = int16(int8(c2[3]))<<4 | int16(c2[4]&0x0F)
		c.h5 = int16(int8(c2[5]))<<4 | int16(c2[4]>>4)
		c.h6 = int8(c2[6])
	}
	return c, nil
}

func same(b []byte) bool {
	for _, v := range b {
		if v != b[0] {
			return false
		}
	}
	return true
}

// Reset values of the data registers (section 5.3): what a skipped
// measurement, or a chip reset since the conversion was started, leaves.
const (
	skipped20 = 0x80000
	skipped16 = 0x8000
)

// decode turns the burst 0xF7..0xFC (6 bytes, BMP280) or 0xF7..0xFE (8 bytes,
// BME280) into a Measurement using c. It is pure so it can be table-tested
// against the datasheet and fuzzed.
func decode(c *calibration, raw []byte) (Measurement, error) {
	if len(raw) != dataLenBMP && len(raw) != dataLenBME {
		return Measurement{}, fmt.Errorf("%w: %d bytes", errRawSize, len(raw))
	}
	if len(raw) == dataLenBME && !c.hasHumidityCal {
		return Measurement{}, fmt.Errorf("%w: humidity data without humidity calibration", errRawSize)
	}
	adcP := int32(raw[0])<<12 | int32(raw[1])<<4 | int32(raw[2])>>4
	adcT := int32(raw[3])<<12 | int32(raw[4])<<4 | int32(raw[5])>>4
	adcH := int32(skipped16)
	if len(raw) == dataLenBME {
		adcH = int32(raw[6])<<8 | int32(raw[7])
	}
	// Every channel at its reset value means no conversion ever completed:
	// the chip was reset (power glitch, re-plug) after the conversion was
	// started. One channel alone at that value can be a genuine reading.
	if adcT == skipped20 && adcP == skipped20 && adcH == skipped16 {
		return Measurement{}, errNoData
	}

	centi, tFine := c.compensateT(adcT)
	if centi < minTempCenti || centi > maxTempCenti {
		return Measurement{}, fmt.Errorf("temperature %d.%02d °C %w (-40..85 °C)", centi/100, abs(centi%100), errRange)
	}
	m := Measurement{Temperature: physic.Temperature(centi)*10*physic.MilliKelvin + physic.ZeroCelsius}

	if c.pressure {
		q8 := c.compensateP(adcP, tFine)
		if q8 == 0 {
			return Measurement{}, fmt.Errorf("%w: pressure compensation divides by zero", errCalib)
		}
		if q8 < minPressQ8 || q8 > maxPressQ8 {
			return Measurement{}, fmt.Errorf("pressure %d Pa %w (300..1100 hPa)", q8/256, errRange)
		}
		// Q24.8 Pa to nPa: 1e9/256 = 3906250 exactly.
		m.Pressure = physic.Pressure(q8) * 3906250 * physic.NanoPascal
		m.HasPressure = true
	}
	if c.humidity && len(raw) == dataLenBME {
		q10 := c.compensateH(adcH, tFine) // clamped to 0..100 %RH by the formula
		// Q22.10 %RH to the 1e-5 %RH unit of physic, rounded.
		m.Humidity = physic.RelativeHumidity((int64(q10)*3125 + 16) / 32)
		m.HasHumidity = true
	}
	return m, nil
}

func abs(v int32) int32 {
	if v < 0 {
		return -v
	}
	return v
}

// compensateT is BME280_compensate_T_int32 (section 4.2.3): temperature in
// 0.01 °C, and t_fine which the pressure and humidity formulas take.
func (c *calibration) compensateT(adcT int32) (centi, tFine int32) {
	t1, t2, t3 := int32(c.t1), int32(c.t2), int32(c.t3)
	var1 := (((adcT >> 3) - (t1 << 1)) * t2) >> 11
	d := (adcT >> 4) - t1
	var2 := (((d * d) >> 12) * t3) >> 14
	tFine = var1 + var2
	return (tFine*5 + 128) >> 8, tFine
}

// compensateP is BME280_compensate_P_int64 (section 4.2.3): pressure in Pa
// as Q24.8, or 0 when the calibration makes the divisor zero.
func (c *calibration) compensateP(adcP, tFine int32) uint32 {
	var1 := int64(tFine) - 128000
	var2 := var1 * var1 * int64(c.p6)
	var2 += (var1 * int64(c.p5)) << 17
	var2 += int64(c.p4) << 35
	var1 = ((var1 * var1 * int64(c.p3)) >> 8) + ((var1 * int64(c.p2)) << 12)
	var1 = (((int64(1) << 47) + var1) * int64(c.p1)) >> 33
	if var1 == 0 {
		return 0
	}
	p := 1048576 - int64(adcP)
	p = (((p << 31) - var2) * 3125) / var1
	var1 = (int64(c.p9) * (p >> 13) * (p >> 13)) >> 25
	var2 = (int64(c.p8) * p) >> 19
	p = ((p + var1 + var2) >> 8) + (int64(c.p7) << 4)
	return uint32(p)
}

// compensateH is bme280_compensate_H_int32 (section 4.2.3): relative
// humidity in %RH as Q22.10, clamped to 0..100 %RH.
func (c *calibration) compensateH(adcH, tFine int32) uint32 {
	h1, h2, h3 := int32(c.h1), int32(c.h2), int32(c.h3)
	h4, h5, h6 := int32(c.h4), int32(c.h5), int32(c.h6)
	v := tFine - 76800
	v = ((((adcH << 14) - (h4 << 20) - (h5 * v)) + 16384) >> 15) *
		(((((((v*h6)>>10)*(((v*h3)>>11)+32768))>>10)+2097152)*h2 + 8192) >> 14)
	v -= ((((v >> 15) * (v >> 15)) >> 7) * h1) >> 4
	v = max(v, 0)
	v = min(v, 419430400)
	return uint32(v >> 12)
}

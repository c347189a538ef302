package main

import (
	"math"
	"testing"
)

func TestSensirionCRC(t *testing.T) {
	// SHT3x datasheet section 4.12, table 20: CRC(0xBEEF) = 0x92.
	if got := sensirionCRC([]byte{0xBE, 0xEF}); got != 0x92 {
		t.Fatalf("CRC(0xBEEF) = %#02x, want 0x92", got)
	}
	if got := sensirionWords(0xBEEF, 0x0000); string(got) != "\xbe\xef\x92\x00\x00\x81" {
		t.Fatalf("sensirionWords = % x", got)
	}
}

func TestBMECompensateDatasheetExample(t *testing.T) {
	// BMP280 datasheet section 3.12, table: with these trimming words,
	// adc_T = 519888 gives 25.08 °C and adc_P = 415148 gives 100653.27 Pa.
	w := bmePhases[0]
	if w.T != 519888 || w.P != 415148 {
		t.Fatalf("phase 0 is not the datasheet example: %+v", w)
	}
	temp, press, _ := bmeCompensate(bmeCal, w.T, w.P, w.H)
	if math.Abs(temp-25.08) > 0.005 {
		t.Errorf("temperature %v °C, want 25.08", temp)
	}
	if math.Abs(press-100653.27) > 0.01 {
		t.Errorf("pressure %v Pa, want 100653.27", press)
	}
}

func TestBMEHumidityClampsAndRises(t *testing.T) {
	w := bmePhases[0]
	prev := -1.0
	for adc := int32(0); adc <= 65535; adc += 4096 {
		_, _, h := bmeCompensate(bmeCal, w.T, w.P, adc)
		if h < 0 || h > 100 || h < prev {
			t.Fatalf("adc_H %d: %v %%RH after %v", adc, h, prev)
		}
		prev = h
	}
	if prev != 100 {
		t.Fatalf("adc_H 61440 gives %v %%RH, want the clamp at 100", prev)
	}
}

func TestBMERegsLayout(t *testing.T) {
	lo, hi := bmeCal.bmeRegs()
	if len(lo) != 26 || len(hi) != 7 {
		t.Fatalf("%d and %d bytes, want 26 (0x88..0xA1) and 7 (0xE1..0xE7)", len(lo), len(hi))
	}
	u16 := func(b []byte, i int) uint16 { return uint16(b[i]) | uint16(b[i+1])<<8 }
	// Table 16: dig_T1 at 0x88/0x89, dig_P9 at 0x9E/0x9F, dig_H1 at 0xA1,
	// dig_H2 at 0xE1/0xE2, dig_H3 at 0xE3, dig_H4 = 0xE4[7:0]<<4 | 0xE5[3:0],
	// dig_H5 = 0xE6[7:0]<<4 | 0xE5[7:4], dig_H6 at 0xE7.
	h4 := int16(int8(hi[3]))<<4 | int16(hi[4]&0x0F)
	h5 := int16(int8(hi[5]))<<4 | int16(hi[4]>>4)
	got := bmeCalib{T1: u16(lo, 0), P9: int16(u16(lo, 0x9E-0x88)), H1: lo[0xA1-0x88],
		H2: int16(u16(hi, 0)), H3: hi[2], H4: h4, H5: h5, H6: int8(hi[6])}
	want := bmeCalib{T1: bmeCal.T1, P9: bmeCal.P9, H1: bmeCal.H1, H2: bmeCal.H2, H3: bmeCal.H3, H4: bmeCal.H4, H5: bmeCal.H5, H6: bmeCal.H6}
	if got != want {
		t.Fatalf("decoded %+v, want %+v", got, want)
	}
}

func TestBMEData(t *testing.T) {
	got := bmeData(519888, 415148, 0x6978)
	want := []byte{0x65, 0x5A, 0xC0, 0x7E, 0xED, 0x00, 0x69, 0x78}
	if string(got) != string(want) {
		t.Fatalf("bmeData = % x, want % x", got, want)
	}
}

func TestSHTConvertEnds(t *testing.T) {
	// Section 4.13: the formulas span -45..130 °C and 0..100 %RH.
	if tc, rh := shtConvert(0, 0); tc != -45 || rh != 0 {
		t.Errorf("ticks 0: %v °C %v %%RH", tc, rh)
	}
	if tc, rh := shtConvert(0xFFFF, 0xFFFF); tc != 130 || rh != 100 {
		t.Errorf("ticks 0xFFFF: %v °C %v %%RH", tc, rh)
	}
}

func TestQMC(t *testing.T) {
	if got := qmcTesla(12000); got != 1e-4 {
		t.Errorf("12000 counts = %v T, want 1e-4 (1 G)", got)
	}
	if got := qmcData(field{X: -2, Y: 0x0102, Z: 0}); string(got) != "\xfe\xff\x02\x01\x00\x00" {
		t.Errorf("qmcData = % x", got)
	}
}

// The phases must be told apart by the checker and lie inside the ranges
// the drivers accept, or the scenario would prove nothing.
func TestScenarioPhasesDistinctAndValid(t *testing.T) {
	sets := map[string][2][]expected{
		"bme280":   {weatherBME(0), weatherBME(1)},
		"sht3x":    {weatherSHT(0), weatherSHT(1)},
		"qmc5883l": {magField(0), magField(1)},
	}
	for name, ph := range sets {
		apart := false
		for i := range ph[0] {
			if math.Abs(ph[0][i].v-ph[1][i].v) > 100*ph[0][i].tol {
				apart = true
			}
		}
		if !apart {
			t.Errorf("%s: phases %v and %v are too close to tell apart", name, ph[0], ph[1])
		}
	}
	for i := range 2 {
		w := weatherBME(i)
		if w[0].v < -40 || w[0].v > 85 || w[1].v <= 0 || w[1].v >= 100 || w[2].v < 30000 || w[2].v > 110000 {
			t.Errorf("bme280 phase %d outside the datasheet ranges (or humidity clamped): %v", i, w)
		}
	}
	// The car must move the field well past the detector's default
	// threshold (20 µT); the empty bay must read as the earth's field.
	var d2 float64
	for i, e := range magField(1) {
		d := e.v - magField(0)[i].v
		d2 += d * d
	}
	if dev := math.Sqrt(d2); dev < 30e-6 {
		t.Errorf("the car's field is %v T from the empty bay's, want well above 20 µT", dev)
	}
}

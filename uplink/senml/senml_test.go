package senml

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/drivers"
)

type record struct {
	BN  *string  `json:"bn"`
	BT  *float64 `json:"bt"`
	N   string   `json:"n"`
	U   string   `json:"u"`
	V   *float64 `json:"v"`
	VB  *bool    `json:"vb"`
	T   float64  `json:"t"`
	Seq uint64   `json:"seq"`
}

func mustStore(t testing.TB, r drivers.Reading) []byte {
	t.Helper()
	b, err := AppendReading(nil, r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPackRoundTrip(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 123_000_000, time.UTC)
	items := []Item{
		{Seq: 41, Data: mustStore(t, drivers.Reading{Sensor: "air-1", Time: t0, Values: []drivers.Value{
			{Quantity: "temperature", Unit: "Cel", Num: 21.53},
			{Quantity: "humidity", Unit: "%RH", Num: 40.1},
			{Quantity: "pressure", Unit: "Pa", Num: 101325.25},
		}})},
		{Seq: 42, Data: mustStore(t, drivers.Reading{Sensor: "bay-17", Time: t0.Add(1500 * time.Millisecond), Values: []drivers.Value{
			{Quantity: "occupied", IsBool: true, Bool: true},
		}})},
		{Seq: 43, Data: mustStore(t, drivers.Reading{Sensor: "mag-1", Time: t0.Add(-2 * time.Millisecond), Values: []drivers.Value{
			{Quantity: "x", Unit: "T", Num: -4.2e-5},
		}})},
	}
	out, bad := Pack(nil, "gw-0042", items)
	if len(bad) != 0 {
		t.Fatalf("bad = %v", bad)
	}
	var recs []record
	if err := json.Unmarshal(out, &recs); err != nil {
		t.Fatalf("pack is not JSON: %v\n%s", err, out)
	}
	type resolved struct {
		name string
		unit string
		v    float64
		vb   *bool
		ms   int64
		seq  uint64
	}
	var got []resolved
	var bn string
	var bt float64
	for i, r := range recs {
		if i == 0 {
			if r.BN == nil || r.BT == nil {
				t.Fatalf("first record lacks bn/bt: %s", out)
			}
			bn, bt = *r.BN, *r.BT
		} else if r.BN != nil || r.BT != nil {
			t.Errorf("record %d repeats bn/bt", i)
		}
		x := resolved{name: bn + r.N, unit: r.U, vb: r.VB, ms: int64(math.Round((bt + r.T) * 1000)), seq: r.Seq}
		if r.V != nil {
			x.v = *r.V
		}
		got = append(got, x)
	}
	yes := true
	want := []resolved{
		{"gw-0042/air-1/temperature", "Cel", 21.53, nil, t0.UnixMilli(), 41},
		{"gw-0042/air-1/humidity", "%RH", 40.1, nil, t0.UnixMilli(), 41},
		{"gw-0042/air-1/pressure", "Pa", 101325.25, nil, t0.UnixMilli(), 41},
		{"gw-0042/bay-17/occupied", "", 0, &yes, t0.UnixMilli() + 1500, 42},
		{"gw-0042/mag-1/x", "T", -4.2e-5, nil, t0.UnixMilli() - 2, 43},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d: %s", len(got), len(want), out)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.name != w.name || g.unit != w.unit || g.v != w.v || g.ms != w.ms || g.seq != w.seq ||
			(g.vb == nil) != (w.vb == nil) || (g.vb != nil && *g.vb != *w.vb) {
			t.Errorf("record %d = %+v, want %+v", i, g, w)
		}
	}
}

func TestAppendReadingRejects(t *testing.T) {
	now := time.Now()
	cases := []struct {
		name string
		r    drivers.Reading
		want string
	}{
		{"no values", drivers.Reading{Sensor: "s", Time: now}, "no values"},
		{"NaN", drivers.Reading{Sensor: "s", Time: now, Values: []drivers.Value{{Quantity: "q", Num: math.NaN()}}}, "not a number"},
		{"Inf", drivers.Reading{Sensor: "s", Time: now, Values: []drivers.Value{{Quantity: "q", Num: math.Inf(1)}}}, "not a number"},
		{"bad sensor name", drivers.Reading{Sensor: "a b", Time: now, Values: []drivers.Value{{Quantity: "q"}}}, "not allowed"},
		{"bad quantity", drivers.Reading{Sensor: "s", Time: now, Values: []drivers.Value{{Quantity: `q"`}}}, "not allowed"},
		{"empty quantity", drivers.Reading{Sensor: "s", Time: now, Values: []drivers.Value{{}}}, "empty name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := AppendReading(nil, c.r)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to mention %q", err, c.want)
			}
		})
	}
}

func TestPackSkipsDamagedItems(t *testing.T) {
	good := mustStore(t, drivers.Reading{Sensor: "s", Time: time.Unix(1, 0), Values: []drivers.Value{{Quantity: "q", Num: 1}}})
	out, bad := Pack(nil, "gw", []Item{{Seq: 1, Data: []byte{9, 9}}, {Seq: 2, Data: good}, {Seq: 3, Data: good[:len(good)-1]}})
	if len(bad) != 2 || bad[0] != 1 || bad[1] != 3 {
		t.Fatalf("bad = %v, want [1 3]", bad)
	}
	var recs []record
	if err := json.Unmarshal(out, &recs); err != nil || len(recs) != 1 || recs[0].Seq != 2 {
		t.Fatalf("pack %s: %v", out, err)
	}
}

func TestAppendMillis(t *testing.T) {
	for ms, want := range map[int64]string{0: "0", 1: "0.001", 10: "0.01", 1500: "1.5", -2: "-0.002", 1764064800123: "1764064800.123"} {
		if got := string(appendMillis(nil, ms)); got != want {
			t.Errorf("appendMillis(%d) = %q, want %q", ms, got, want)
		}
	}
}

// FuzzDecodeReading feeds arbitrary stored bytes to the decoder and the packer:
// they must never panic, and whatever they accept must come out as valid JSON.
func FuzzDecodeReading(f *testing.F) {
	f.Add(mustStore(f, drivers.Reading{Sensor: "air-1", Time: time.Unix(1764064800, 0), Values: []drivers.Value{
		{Quantity: "temperature", Unit: "Cel", Num: 21.5}, {Quantity: "occupied", IsBool: true, Bool: true}}}))
	f.Add(mustStore(f, drivers.Reading{Sensor: "pm-1", Time: time.Unix(1764064800, 0), Values: []drivers.Value{
		drivers.Number32("pm2_5", "ug/m3", 12.3), {Quantity: "pm10", Unit: "ug/m3", Num: 20.25}}}))
	f.Add([]byte{1, 0, 0, 0})
	f.Add([]byte{1, 2, 1, 'a', 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeReading(b)
		out, bad := Pack(nil, "gw-1", []Item{{Seq: 7, Data: b}})
		if (err != nil) != (len(bad) == 1) {
			t.Fatalf("decode err %v but pack bad %v", err, bad)
		}
		var recs []map[string]any
		if jerr := json.Unmarshal(out, &recs); jerr != nil {
			t.Fatalf("pack of accepted input is not JSON: %v\n%q", jerr, out)
		}
		if err == nil && len(recs) != len(r.Values) {
			t.Fatalf("%d records for %d values", len(recs), len(r.Values))
		}
	})
}

func FuzzPackStrings(f *testing.F) {
	f.Add("gw-0042", "Cel", 21.5)
	f.Add("gw\"\\\x01\xff", "ug/m3", -1e300)
	f.Fuzz(func(t *testing.T, bn, unit string, v float64) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return
		}
		data, err := AppendReading(nil, drivers.Reading{Sensor: "s", Time: time.Unix(0, 0), Values: []drivers.Value{{Quantity: "q", Unit: unit, Num: v}}})
		if err != nil {
			t.Fatal(err)
		}
		out, _ := Pack(nil, bn, []Item{{Seq: 1, Data: data}})
		var recs []record
		if err := json.Unmarshal(out, &recs); err != nil {
			t.Fatalf("not JSON: %v\n%q", err, out)
		}
		if *recs[0].V != v {
			t.Fatalf("v = %v, want %v", *recs[0].V, v)
		}
	})
}

// BenchmarkPack100 packs 100 stored three-value readings, as one message of
// a draining backlog.
func BenchmarkPack100(b *testing.B) {
	items := make([]Item, 100)
	size := 0
	for i := range items {
		items[i] = Item{Seq: 1764064800000000 + uint64(i), Data: mustStore(b, drivers.Reading{Sensor: "air-quality-17", Time: time.UnixMilli(1764064800000 + int64(i)*100),
			Values: []drivers.Value{{Quantity: "temperature", Unit: "Cel", Num: 21.53}, {Quantity: "humidity", Unit: "%RH", Num: 40.125}, {Quantity: "pressure", Unit: "Pa", Num: 101325.25}}})}
		size += len(items[i].Data)
	}
	buf := make([]byte, 0, 64<<10)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		out, _ := Pack(buf[:0], "gw-0042", items)
		buf = out
	}
	b.ReportMetric(float64(len(buf))/100, "JSON-B/reading")
	b.ReportMetric(float64(size)/100, "stored-B/reading")
	b.ReportMetric(float64(b.N)*100/b.Elapsed().Seconds(), "readings/s")
}

// TestFloat32Precision: a value from a float32 source is stored as a
// float32 and sent in the shortest form that reads back as that float32,
// without float64 noise digits; it decodes back with Float32 set.
func TestFloat32Precision(t *testing.T) {
	cases := []struct {
		v    float32
		want string
	}{
		{12.3, `"v":12.3,`},
		{0.1, `"v":0.1,`},
		{1.0000001, `"v":1.0000001,`},
		{3.4028235e38, `"v":3.4028235e+38,`},
		{-7.25, `"v":-7.25,`},
	}
	for _, c := range cases {
		data, err := AppendReading(nil, drivers.Reading{Sensor: "pm-1", Time: time.Unix(1764064800, 0),
			Values: []drivers.Value{drivers.Number32("pm2_5", "ug/m3", c.v)}})
		if err != nil {
			t.Fatal(err)
		}
		out, bad := Pack(nil, "gw", []Item{{Seq: 1, Data: data}})
		if len(bad) != 0 || !strings.Contains(string(out), c.want) {
			t.Errorf("%v: pack %s (bad %v), want %s", c.v, out, bad, c.want)
		}
		if g64 := strconvG64(float64(c.v)); g64 != strconv.FormatFloat(float64(c.v), 'g', -1, 32) && strings.Contains(string(out), g64) {
			t.Errorf("%v: pack %s carries float64 noise digits", c.v, out)
		}
		r, err := DecodeReading(data)
		if err != nil || !r.Values[0].Float32 || r.Values[0].Num != float64(c.v) {
			t.Errorf("%v: decoded %+v, %v", c.v, r, err)
		}
	}
	// The float64 path is unchanged.
	data, _ := AppendReading(nil, drivers.Reading{Sensor: "s", Time: time.Unix(0, 0), Values: []drivers.Value{drivers.Number("q", "", float64(float32(12.3)))}})
	if out, _ := Pack(nil, "gw", []Item{{Seq: 1, Data: data}}); !strings.Contains(string(out), `"v":12.300000190734863`) {
		t.Errorf("float64 value: %s", out)
	}
}

func strconvG64(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// TestPackTimeAndMark: an item's Time replaces the stored time and its Mark
// goes out as the extension label "tq" on each of its records; items
// without them are sent as stored.
func TestPackTimeAndMark(t *testing.T) {
	stored := time.Unix(42, 0) // a gateway that booted at 1970
	corrected := time.Date(2026, 12, 6, 8, 0, 1, 500_000_000, time.UTC)
	two := []drivers.Value{drivers.Number(drivers.Temperature, drivers.UnitCelsius, 20), drivers.Number("humidity", "%RH", 40)}
	items := []Item{
		{Seq: 1, Data: mustStore(t, drivers.Reading{Sensor: "air-1", Time: stored, Values: two}), Time: corrected, Mark: "corrected"},
		{Seq: 2, Data: mustStore(t, drivers.Reading{Sensor: "air-1", Time: corrected.Add(time.Second), Values: two[:1]})},
		{Seq: 3, Data: mustStore(t, drivers.Reading{Sensor: "air-1", Time: corrected.Add(2 * time.Second), Values: two[:1]}), Mark: "unsynced"},
	}
	out, bad := Pack(nil, "gw", items)
	if len(bad) != 0 {
		t.Fatalf("bad %v", bad)
	}
	var recs []struct {
		record
		TQ *string `json:"tq"`
	}
	if err := json.Unmarshal(out, &recs); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	want := []struct {
		t  time.Time
		tq string
	}{{corrected, "corrected"}, {corrected, "corrected"}, {corrected.Add(time.Second), ""}, {corrected.Add(2 * time.Second), "unsynced"}}
	if len(recs) != len(want) {
		t.Fatalf("%d records: %s", len(recs), out)
	}
	bt := *recs[0].BT
	for i, w := range want {
		got := time.UnixMilli(int64(math.Round((bt + recs[i].T) * 1000)))
		tq := ""
		if recs[i].TQ != nil {
			tq = *recs[i].TQ
		}
		if !got.Equal(w.t) || tq != w.tq {
			t.Errorf("record %d: time %v tq %q, want %v %q (%s)", i, got, tq, w.t, w.tq, out)
		}
	}
}

// TestAppendFloat holds the short float forms to strconv's shortest 'g'
// form, on the kinds of values sensors report (few decimals, every
// magnitude around the limits of the short path) and on random bits.
func TestAppendFloat(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	var vals []float64
	for _, v := range []float64{0, 1, -1, 0.1, 0.2, 0.3, 0.1 + 0.2, 1e-4, 9.9e-5, 0.00012345, 999999, 999999.9, 999999.9999999, 1e6, 1e6 - 0.5,
		21.53, 40.125, 101325.25, -12.75, 1e-5, 123456.789012, 0.5, 2.675, 1.005, math.MaxFloat64, math.SmallestNonzeroFloat64, math.Nextafter(1e-4, 0), math.Nextafter(1e6, 0)} {
		vals = append(vals, v, -v)
	}
	for range 200000 {
		k := rnd.IntN(9)
		m := rnd.Int64N(2_000_000_000) - 1_000_000_000
		vals = append(vals, float64(m)/math.Pow(10, float64(k)), math.Float64frombits(rnd.Uint64()), rnd.Float64()*math.Pow(10, float64(rnd.IntN(14)-7)))
	}
	for _, v := range vals {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		if got, want := string(appendFloat64(nil, v)), strconv.FormatFloat(v, 'g', -1, 64); got != want {
			t.Fatalf("appendFloat64(%b) = %s, want %s", v, got, want)
		}
		v32 := float32(v)
		if math.IsInf(float64(v32), 0) {
			continue
		}
		if got, want := string(appendFloat32(nil, v32)), strconv.FormatFloat(float64(v32), 'g', -1, 32); got != want {
			t.Fatalf("appendFloat32(%b) = %s, want %s", v32, got, want)
		}
	}
}

// TestPackRepeats: Pack copies a name and unit it wrote before and counts
// a sequence number up from the last one; whatever the order, the sensors
// interleave and the damaged items in between, every record carries its
// own name, unit and seq.
func TestPackRepeats(t *testing.T) {
	type want struct {
		n, u string
		seq  uint64
	}
	var items []Item
	var wants []want
	seqs := []uint64{8, 9, 10, 11, 99, 100, 101, 7, 999, 1000, 1001, 1002, 9999, 10000}
	for i, seq := range seqs {
		sensor := fmt.Sprintf("s%d", i%11) // more sensors than the names remembered
		if i%5 == 0 {
			// Damaged after its first record was written: what it wrote is
			// dropped, the remembered name of the next item's sensor too.
			next := fmt.Sprintf("s%d", (i+1)%11)
			data := mustStore(t, drivers.Reading{Sensor: next, Time: time.Unix(1, 0), Values: []drivers.Value{{Quantity: "temperature", Unit: "Cel", Num: 1}, {Quantity: "r", Num: 2}}})
			items = append(items, Item{Seq: seq, Data: data[:len(data)-1]})
			continue
		}
		items = append(items, Item{Seq: seq, Data: mustStore(t, drivers.Reading{Sensor: sensor, Time: time.Unix(1764064800+int64(i), 0), Values: []drivers.Value{
			{Quantity: "temperature", Unit: "Cel", Num: 20}, {Quantity: "humidity", Unit: "%RH", Num: 40}, {Quantity: "count", Num: 3}}})})
		wants = append(wants, want{sensor + "/temperature", "Cel", seq}, want{sensor + "/humidity", "%RH", seq}, want{sensor + "/count", "", seq})
	}
	out, bad := Pack(nil, "gw", items)
	if len(bad) != 3 {
		t.Fatalf("bad = %v, want the 3 damaged items", bad)
	}
	var recs []struct {
		N   string `json:"n"`
		U   string `json:"u"`
		Seq uint64 `json:"seq"`
	}
	if err := json.Unmarshal(out, &recs); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if len(recs) != len(wants) {
		t.Fatalf("%d records, want %d:\n%s", len(recs), len(wants), out)
	}
	for i, r := range recs {
		if w := wants[i]; r.N != w.n || r.U != w.u || r.Seq != w.seq {
			t.Errorf("record %d = %+v, want %+v", i, r, w)
		}
	}
}

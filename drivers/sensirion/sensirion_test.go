package sensirion_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/drivers/internal/drivertest"
	"github.com/cityedge/cityedge/drivers/sensirion"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/physic"
)

func TestCRC8(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want byte
	}{
		{[]byte{0xBE, 0xEF}, 0x92}, // SHT3x datasheet table 20, SCD4x and SPS30 datasheets
		{[]byte{0x00, 0x00}, 0x81},
		{[]byte{}, 0xFF}, // the init value
	} {
		if got := sensirion.CRC8(tc.in); got != tc.want {
			t.Errorf("sensirion.CRC8(%#v) = %#02x, want %#02x", tc.in, got, tc.want)
		}
	}
}

func TestWords(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  []byte
		want []uint16
		err  error
	}{
		{"datasheet example", []byte{0xBE, 0xEF, 0x92}, []uint16{0xBEEF}, nil},
		{"two words", sensirion.AppendWord(sensirion.AppendWord(nil, 0x6667), 0x0000), []uint16{0x6667, 0}, nil},
		{"bad CRC in second word", []byte{0xBE, 0xEF, 0x92, 0x12, 0x34, 0x00}, nil, sensirion.ErrCRC},
		{"torn word", []byte{0xBE, 0xEF}, nil, nil},
		{"empty", nil, []uint16{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := sensirion.Words(tc.raw)
			switch {
			case tc.err != nil:
				if !errors.Is(err, tc.err) {
					t.Fatalf("error %v, want %v", err, tc.err)
				}
			case tc.want == nil:
				if err == nil {
					t.Fatal("accepted a torn word")
				}
			default:
				if err != nil || len(got) != len(tc.want) {
					t.Fatalf("sensirion.Words = %v, %v; want %v", got, err, tc.want)
				}
				for i := range got {
					if got[i] != tc.want[i] {
						t.Fatalf("sensirion.Words = %v, want %v", got, tc.want)
					}
				}
			}
		})
	}
}

func TestExec(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ops    []i2ctest.IO
		cmd    []byte
		args   []uint16
		wait   time.Duration
		words  int
		want   []byte
		errStr string
	}{
		{name: "write with argument, SCD4x set_sensor_altitude 0x2427 (0 m)", cmd: sensirion.Cmd16(0x2427), args: []uint16{0}, wait: time.Millisecond,
			ops: []i2ctest.IO{{Addr: 0x62, W: []byte{0x24, 0x27, 0x00, 0x00, 0x81}}}},
		{name: "read two words, one-byte command", cmd: []byte{0x89}, wait: 10 * time.Millisecond, words: 2,
			ops:  []i2ctest.IO{{Addr: 0x62, W: []byte{0x89}}, {Addr: 0x62, R: []byte{0xBE, 0xEF, 0x92, 0x00, 0x00, 0x81}}},
			want: []byte{0xBE, 0xEF, 0x92, 0x00, 0x00, 0x81}},
		{name: "read failure", cmd: sensirion.Cmd16(0xE4B8), words: 1, ops: []i2ctest.IO{{Addr: 0x62, W: []byte{0xE4, 0xB8}}}, errStr: "command 0xe4b8: read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := drivertest.NewClock(time.Unix(0, 0))
			pb := &i2ctest.Playback{Ops: tc.ops, DontPanic: true}
			d := sensirion.Dev{I2C: i2c.Dev{Bus: pb, Addr: 0x62}, Clock: clock}
			got, err := d.Exec(context.Background(), tc.cmd, tc.args, tc.wait, tc.words)
			if tc.errStr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errStr) {
					t.Fatalf("error %v, want %q", err, tc.errStr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Errorf("read %#v, want %#v", got, tc.want)
			}
			if tc.wait > 0 && (len(clock.Sleeps) != 1 || clock.Sleeps[0] != tc.wait) {
				t.Errorf("waited %v, want %v", clock.Sleeps, tc.wait)
			}
			if err := pb.Close(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestExecHonoursContext(t *testing.T) {
	pb := &i2ctest.Playback{Ops: []i2ctest.IO{{Addr: 0x44, W: []byte{0xFD}}}, DontPanic: true}
	d := sensirion.Dev{I2C: i2c.Dev{Bus: pb, Addr: 0x44}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Exec(ctx, []byte{0xFD}, nil, time.Hour, 2); !errors.Is(err, context.Canceled) {
		t.Fatalf("Exec with a cancelled context: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte{0xBE, 0xEF, 0x92})
	f.Add([]byte{0xBE, 0xEF, 0x92, 0x00})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		w, err := sensirion.Words(raw)
		if err != nil {
			return
		}
		var back []byte
		for _, v := range w {
			back = sensirion.AppendWord(back, v)
		}
		if !bytes.Equal(back, raw) {
			t.Fatalf("sensirion.Words(%#v) = %v does not re-encode to the input", raw, w)
		}
	})
}

func BenchmarkCRC8(b *testing.B) {
	buf := make([]byte, 40) // an SPS30 measurement is 40 data bytes
	for b.Loop() {
		for i := 0; i < len(buf); i += 2 {
			_ = sensirion.CRC8(buf[i : i+2])
		}
	}
}

// The decode skeleton and the conversions the SHT3x, SHT4x and SCD4x
// datasheets share, with the datasheet's CRC example word 0xBEEF.
func TestDecodeAndConvert(t *testing.T) {
	beef := []byte{0xBE, 0xEF, 0x92}
	for _, tc := range []struct {
		name    string
		raw     []byte
		n       int
		wantErr string
	}{
		{"two words", append(append([]byte{}, beef...), beef...), 2, ""},
		{"short", beef, 2, "measurement of 3 bytes, want 6"},
		{"long", append(append([]byte{}, beef...), beef...), 1, "measurement of 6 bytes, want 3"},
		{"bad CRC", []byte{0xBE, 0xEF, 0x93}, 1, "measurement: word 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := sensirion.Decode(tc.raw, tc.n)
			if drivertest.WantErr(t, "Decode", err, tc.wantErr) {
				return
			}
			if len(w) != tc.n || w[0] != 0xBEEF {
				t.Fatalf("Decode = %#04x", w)
			}
		})
	}
	for _, tc := range []struct {
		word       uint16
		minC, maxC int
		wantC      float64
		wantErr    error
	}{
		{0xBEEF, -40, 125, -45 + 175*48879.0/65535, nil},
		{0x6667, -10, 60, -45 + 175*26215.0/65535, nil},
		{0, -40, 125, -45, sensirion.ErrRange},
		{0xFFFF, -40, 125, 130, sensirion.ErrRange},
		{0xBEEF, -10, 60, -45 + 175*48879.0/65535, sensirion.ErrRange},
	} {
		got, err := sensirion.Temperature(tc.word, tc.minC, tc.maxC)
		if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
			t.Errorf("Temperature(%#04x, %d, %d): error %v, want %v", tc.word, tc.minC, tc.maxC, err, tc.wantErr)
		}
		if c := got.Celsius(); c < tc.wantC-1e-6 || c > tc.wantC+1e-6 {
			t.Errorf("Temperature(%#04x) = %v °C, want %v", tc.word, c, tc.wantC)
		}
	}
	for word, wantPct := range map[uint16]float64{0: 0, 0xFFFF: 100, 0xBEEF: 100 * 48879.0 / 65535} {
		got := float64(sensirion.Humidity(word)) / float64(physic.PercentRH)
		if got < wantPct-1e-5 || got > wantPct+1e-5 {
			t.Errorf("Humidity(%#04x) = %v %%RH, want %v", word, got, wantPct)
		}
	}
}

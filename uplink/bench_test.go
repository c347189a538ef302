package uplink

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/scripts/testbroker"
	"github.com/cityedge/cityedge/scripts/testproc"
	"github.com/cityedge/cityedge/uplink/senml"
)

const (
	benchReadings   = 100 // readings per message, the default batch_max
	benchReadingLen = 141 // bytes per reading in a SenML pack, separator included
)

// benchPayload is a SenML-shaped pack of benchReadings records of
// benchReadingLen bytes each; i makes messages differ.
func benchPayload(i int) []byte {
	var sb strings.Builder
	sb.WriteByte('[')
	for r := range benchReadings {
		rec := fmt.Sprintf(`{"n":"gw-0042/air-%d/temperature","u":"Cel","v":%.2f,"t":%.3f,"seq":%d`,
			r%8, 18+float64((i+r)%700)/100, float64(r)/10, i*benchReadings+r)
		sb.WriteString(rec)
		sb.WriteString(strings.Repeat(" ", benchReadingLen-2-len(rec))) // JSON whitespace
		sb.WriteByte('}')
		if r < benchReadings-1 {
			sb.WriteByte(',')
		}
	}
	sb.WriteByte(']')
	return []byte(sb.String())
}

func benchPayloads() [][]byte {
	ps := make([][]byte, 64)
	for i := range ps {
		ps[i] = benchPayload(i)
	}
	return ps
}

func reportReadings(b *testing.B) {
	b.ReportMetric(float64(b.N)*benchReadings/b.Elapsed().Seconds(), "readings/s")
}

// BenchmarkRawPahoMTLS is the ceiling for the uplink: prebuilt messages
// published from memory with paho directly, QoS 1 over mutual TLS to
// mosquitto, DefaultWindow publishes in flight. One op is one message of 100
// readings.
func BenchmarkRawPahoMTLS(b *testing.B) { benchRawPaho(b, DefaultWindow, benchPayloads()) }

// BenchmarkRawPahoMTLSStopAndWait is the same with one publish in flight.
func BenchmarkRawPahoMTLSStopAndWait(b *testing.B) { benchRawPaho(b, 1, benchPayloads()) }

// BenchmarkRawPahoMTLSDrainPayload is BenchmarkRawPahoMTLS publishing the
// messages cmd/cityedge's BenchmarkDrainMTLS sends: 100 BME280 readings
// each (three SenML records a reading, about 26 KB a message where
// BenchmarkRawPahoMTLS's take 14 KB), packed the agent's way beforehand.
// The drain's ratio to it is the drain's cost per byte against raw paho's.
func BenchmarkRawPahoMTLSDrainPayload(b *testing.B) {
	benchRawPaho(b, DefaultWindow, drainPayloads(b))
}

// drainPayloads packs what cmd/cityedge's BenchmarkDrainMTLS buffers
// (its benchReading) into messages as its forwarder does.
func drainPayloads(b *testing.B) [][]byte {
	ps := make([][]byte, 64)
	items := make([]senml.Item, benchReadings)
	for i := range ps {
		for j := range items {
			n := i*benchReadings + j
			data, err := senml.AppendReading(nil, drivers.Reading{Sensor: "air-quality-17", Time: time.UnixMilli(1764064800000 + int64(n)*100),
				Values: []drivers.Value{
					{Quantity: "temperature", Unit: "Cel", Num: 21.53 + float64(n%100)/100},
					{Quantity: "humidity", Unit: "%RH", Num: 40.125},
					{Quantity: "pressure", Unit: "Pa", Num: 101325.25},
				}})
			if err != nil {
				b.Fatal(err)
			}
			items[j] = senml.Item{Seq: 1796540000000000 + uint64(n), Data: data}
		}
		ps[i], _ = senml.Pack(nil, "gw-bench", items)
	}
	return ps
}

func benchRawPaho(b *testing.B, window int, payloads [][]byte) {
	br := testbroker.Start(b, testbroker.Options{})
	opts := mqtt.NewClientOptions().
		AddBroker(br.URL).
		SetClientID("bench-raw").
		SetTLSConfig(br.ClientTLS(b)).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetOrderMatters(false)
	cli := mqtt.NewClient(opts)
	if tok := cli.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("connect: %v", tok.Error())
	}
	defer cli.Disconnect(100)
	await := func(tok mqtt.Token) {
		select {
		case <-tok.Done():
			if err := tok.Error(); err != nil {
				b.Fatalf("publish: %v", err)
			}
		case <-time.After(10 * time.Second):
			b.Fatal("no PUBACK within 10s")
		}
	}
	b.SetBytes(int64(len(payloads[0])))
	inflight := make([]mqtt.Token, 0, window)
	brokerCPU := br.CPUPerOp(b)
	cpu0 := testproc.OwnCPU()
	b.ResetTimer()
	for i := range b.N {
		if len(inflight) == window {
			await(inflight[0])
			inflight = append(inflight[:0], inflight[1:]...)
		}
		inflight = append(inflight, cli.Publish("bench/readings", 1, false, payloads[i%len(payloads)]))
	}
	for _, tok := range inflight {
		await(tok)
	}
	b.StopTimer()
	b.ReportMetric(float64(testproc.OwnCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	brokerCPU()
	reportReadings(b)
}

// BenchmarkUplinkMTLS drives the same messages through Client from an
// in-memory Source: the uplink's own cost against BenchmarkRawPahoMTLS.
func BenchmarkUplinkMTLS(b *testing.B) { benchUplink(b, DefaultWindow) }

// BenchmarkUplinkMTLSStopAndWait is the same with Window 1.
func BenchmarkUplinkMTLSStopAndWait(b *testing.B) { benchUplink(b, 1) }

func benchUplink(b *testing.B, window int) {
	br := testbroker.Start(b, testbroker.Options{})
	src := &benchSource{payloads: benchPayloads(), start: make(chan struct{}), done: make(chan struct{}), n: int64(b.N)}
	cfg := testConfig(b, br)
	cfg.Window = window
	cfg.Logger = testLoggerAt(b, slog.LevelWarn) // benchmarks print every b.Log
	c, err := New(cfg, src)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- c.Run(ctx) }()
	defer func() { cancel(); <-ran }()
	deadline := time.Now().Add(10 * time.Second)
	for !c.State().Connected {
		if time.Now().After(deadline) {
			b.Fatalf("not connected: %s", c.State().LastError)
		}
		time.Sleep(time.Millisecond)
	}
	b.SetBytes(int64(len(src.payloads[0])))
	brokerCPU := br.CPUPerOp(b)
	b.ResetTimer()
	close(src.start)
	select {
	case <-src.done:
	case <-time.After(time.Minute):
		b.Fatalf("not all acked: %+v", c.State())
	}
	b.StopTimer()
	brokerCPU()
	if st := c.State(); st.Sessions != 1 {
		b.Fatalf("%d sessions during the benchmark; the numbers include reconnects", st.Sessions)
	}
	reportReadings(b)
}

// benchSource hands out n batches as fast as asked, after start is closed.
type benchSource struct {
	payloads    [][]byte
	start, done chan struct{}
	n           int64
	next, acked atomic.Int64
}

func (s *benchSource) Next(ctx context.Context) (Batch, error) {
	select {
	case <-s.start:
	case <-ctx.Done():
		return Batch{}, ctx.Err()
	}
	i := s.next.Add(1) - 1
	if i >= s.n {
		<-ctx.Done()
		return Batch{}, ctx.Err()
	}
	return Batch{Payload: s.payloads[i%int64(len(s.payloads))], Seqs: []uint64{uint64(i)}}, nil
}

func (s *benchSource) Acked(Batch) error {
	if s.acked.Add(1) == s.n {
		close(s.done)
	}
	return nil
}

func (s *benchSource) Rewind() {}

func TestBenchPayloadShape(t *testing.T) {
	p := benchPayload(12345)
	var recs []map[string]any
	if err := json.Unmarshal(p, &recs); err != nil {
		t.Fatalf("benchmark payload is not JSON: %v", err)
	}
	if len(recs) != benchReadings || len(p) != benchReadings*benchReadingLen+1 {
		t.Errorf("%d records in %d bytes; want %d records of %d bytes", len(recs), len(p), benchReadings, benchReadingLen)
	}
}

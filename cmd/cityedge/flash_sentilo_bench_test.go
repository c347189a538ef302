package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cityedge/cityedge/scripts/testbroker"
	"github.com/cityedge/cityedge/uplink/sentilo"
	"github.com/cityedge/cityedge/uplink/sentilo/sentilotest"
)

// BenchmarkAgentDiskWritesSentilo is BenchmarkAgentDiskWrites (50
// readings/s, default configuration) with both outputs on: MQTT and Sentilo
// (the in-process stand-in speaking mutual TLS itself, every id
// registered). DECISIONS 17: #13's flash targets are measured with MQTT
// alone; this is the figure with the second output's progress in the
// buffer too.
func BenchmarkAgentDiskWritesSentilo(b *testing.B) {
	benchDiskWrites(b, diskRun{sensors: 50, extra: func(b *testing.B, br *testbroker.Broker, sensors int) string {
		var ids []string
		for i := 0; i < sensors; i++ {
			for _, q := range []string{"temperature", "humidity", "pressure"} {
				ids = append(ids, sentilo.DefaultID("gw-flash", fmt.Sprintf("air-%d", i), q))
			}
		}
		ids = append(ids, sentilo.DefaultID("gw-flash", "cityedge", "dropped"), sentilo.DefaultID("gw-flash", "cityedge", "corrupt"))
		caPEM, err := os.ReadFile(br.PKI.CA.CertFile)
		if err != nil {
			b.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		cert, err := tls.LoadX509KeyPair(br.PKI.Server.CertFile, br.PKI.Server.KeyFile)
		if err != nil {
			b.Fatal(err)
		}
		const token = "flash-t0ken-0123456789"
		srv := sentilotest.Start(b, sentilotest.Options{Provider: "flash", Token: token, Sensors: ids,
			TLS: &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}})
		tokenFile := filepath.Join(b.TempDir(), "sentilo.token")
		if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			if n := len(srv.Observations()); n == 0 {
				b.Error("Sentilo stored nothing: the benchmark did not run with both outputs")
			}
		})
		return fmt.Sprintf("[sentilo]\nurl = %q\nprovider = \"flash\"\ntoken_file = %q\n", srv.URL, tokenFile)
	}})
}

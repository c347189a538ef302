package testbroker

import (
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

func connect(t *testing.T, url string, tc *tls.Config) (mqtt.Client, error) {
	t.Helper()
	opts := mqtt.NewClientOptions().AddBroker(url).SetClientID("probe-" + strings.ReplaceAll(t.Name(), "/", "-")).
		SetTLSConfig(tc).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).SetProtocolVersion(4)
	cli := mqtt.NewClient(opts)
	tok := cli.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { cli.Disconnect(100) })
	return cli, nil
}

func publish(t *testing.T, cli mqtt.Client, topic, payload string, retained bool) {
	t.Helper()
	tok := cli.Publish(topic, 1, retained, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

func receive(t *testing.T, ch <-chan Message, what string) Message {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: nothing received", what)
		return Message{}
	}
}

// TestBrokerLifecycle: mTLS publish reaches the subscriber; across a clean
// Stop/Restart on the same port, the retained message and the subscriber's
// session survive, and messages published while the subscriber reconnects
// are not lost.
func TestBrokerLifecycle(t *testing.T) {
	b := Start(t, Options{})
	if !strings.HasPrefix(b.URL, "mqtts://127.0.0.1:") || b.Port == 0 {
		t.Fatalf("URL %q port %d", b.URL, b.Port)
	}
	sub := b.Subscribe(t, "t/#")
	cli, err := connect(t, b.URL, b.ClientTLS(t))
	if err != nil {
		t.Fatalf("connect with the PKI's client certificate: %v", err)
	}
	publish(t, cli, "t/retained", "kept", true)
	publish(t, cli, "t/live", "one", false)
	if m := receive(t, sub, "before restart"); m.Topic != "t/retained" || string(m.Payload) != "kept" {
		t.Fatalf("got %+v", m)
	}
	if m := receive(t, sub, "before restart"); m.Topic != "t/live" || string(m.Payload) != "one" {
		t.Fatalf("got %+v", m)
	}

	if cpu, err := b.CPU(); err != nil || cpu < 0 {
		t.Fatalf("CPU of the running broker: %v, %v", cpu, err)
	}
	port := b.Port
	b.Stop()
	if _, err := connect(t, b.URL, b.ClientTLS(t)); err == nil {
		t.Fatal("connected to a stopped broker")
	}
	if _, err := b.CPU(); err == nil {
		t.Fatal("CPU of a stopped broker: no error")
	}
	b.Restart()
	if b.Port != port {
		t.Fatalf("port changed from %d to %d", port, b.Port)
	}
	cli2, err := connect(t, b.URL, b.ClientTLS(t))
	if err != nil {
		t.Fatalf("connect after restart: %v", err)
	}
	// Published at once: the subscriber may not be back yet; its persistent
	// session queues the message.
	publish(t, cli2, "t/live", "two", false)
	for {
		m := receive(t, sub, "after restart")
		if string(m.Payload) == "two" {
			break
		}
		// QoS 1 is at-least-once: "one" may come again if the broker stopped
		// before the subscriber's PUBACK reached it.
		if string(m.Payload) != "one" && string(m.Payload) != "kept" {
			t.Fatalf("after restart got %+v", m)
		}
	}
	if m := receive(t, b.Subscribe(t, "t/retained"), "retained"); string(m.Payload) != "kept" || !m.Retained {
		t.Fatalf("retained message after restart: %+v", m)
	}
}

// TestClientCertificateRequired: without a client certificate, or with one
// from another CA, the broker refuses the connection.
func TestClientCertificateRequired(t *testing.T) {
	b := Start(t, Options{})
	noCert := b.ClientTLS(t)
	noCert.Certificates = nil
	if _, err := connect(t, b.URL, noCert); err == nil {
		t.Error("connected without a client certificate")
	}
	other := Start(t, Options{}) // its own PKI
	if _, err := connect(t, b.URL, TLSConfig(t, b.PKI.CA.CertFile, other.PKI.Client.CertFile, other.PKI.Client.KeyFile)); err == nil {
		t.Error("connected with a client certificate from another CA")
	}
}

func TestPlaintextAndExtra(t *testing.T) {
	b := Start(t, Options{Plaintext: true, Extra: "max_packet_size 1000"})
	if !strings.HasPrefix(b.URL, "mqtts://") {
		t.Errorf("URL %q: want the mqtts:// URL an agent would be given", b.URL)
	}
	if _, err := connect(t, b.URL, b.ClientTLS(t)); err == nil {
		t.Fatal("TLS connection to a plaintext listener succeeded")
	}
	sub := b.Subscribe(t, "p/#")
	cli, err := connect(t, strings.Replace(b.URL, "mqtts://", "tcp://", 1), nil)
	if err != nil {
		t.Fatalf("plain MQTT: %v", err)
	}
	publish(t, cli, "p/x", "plain", false)
	if m := receive(t, sub, "plaintext"); string(m.Payload) != "plain" {
		t.Fatalf("got %+v", m)
	}
	// The extra line reached mosquitto: a packet over 1000 bytes is refused.
	tok := cli.Publish("p/x", 1, false, strings.Repeat("x", 2000))
	if tok.WaitTimeout(2*time.Second) && tok.Error() == nil {
		select {
		case m := <-sub:
			t.Errorf("a 2000-byte message passed max_packet_size 1000: %d bytes", len(m.Payload))
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func TestPauseResume(t *testing.T) {
	b := Start(t, Options{})
	sub := b.Subscribe(t, "h/#")
	cli, err := connect(t, b.URL, b.ClientTLS(t))
	if err != nil {
		t.Fatal(err)
	}
	b.Pause()
	tok := cli.Publish("h/x", 1, false, "late")
	if tok.WaitTimeout(300 * time.Millisecond) {
		t.Fatalf("a paused broker acknowledged a publish (err %v)", tok.Error())
	}
	b.Resume()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("no PUBACK after Resume: %v", tok.Error())
	}
	if m := receive(t, sub, "after resume"); string(m.Payload) != "late" {
		t.Fatalf("got %+v", m)
	}
}

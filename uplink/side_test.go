package uplink

import (
	"context"
	"crypto/tls"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/cityedge/cityedge/scripts/testbroker"
)

// TestSideMessages: retained side messages reach the broker at once and are
// published again after a broker restart lost them; a subscription's
// messages reach their handler; one-off answers are published; none of it
// waits behind the backlog.
func TestSideMessages(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	zones := b.Subscribe(t, testPrefix+"/zones/#")
	results := b.Subscribe(t, testPrefix+"/cmd/result")

	src := newMemSource(0)
	cfg := testConfig(t, b)
	var c *running
	var mu sync.Mutex
	var got []string
	cfg.Subscriptions = []Subscription{{Suffix: "cmd", Handle: func(_ context.Context, p []byte) {
		mu.Lock()
		got = append(got, string(p))
		mu.Unlock()
		c.Send("cmd/result", append([]byte("ok:"), p...))
	}}}
	client, err := New(cfg, src)
	if err != nil {
		t.Fatal(err)
	}
	client.SetRetained("zones/z1", []byte("v1")) // before any session
	ctx, cancel := context.WithCancel(context.Background())
	c = &running{Client: client, cancel: cancel, done: make(chan error, 1)}
	go func() { c.done <- client.Run(ctx) }()
	t.Cleanup(func() { c.stop(t) })

	want := func(ch <-chan testbroker.Message, topic, payload string) testbroker.Message {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case m := <-ch:
				if m.Topic == topic && string(m.Payload) == payload {
					return m
				}
			case <-deadline:
				t.Fatalf("no %q on %s", payload, topic)
			}
		}
	}
	want(zones, testPrefix+"/zones/z1", "v1")

	// A large backlog does not delay a zone update.
	src.Add(2000)
	c.SetRetained("zones/z1", []byte("v2"))
	want(zones, testPrefix+"/zones/z1", "v2")

	publish(t, b, testPrefix+"/cmd", "hello")
	want(results, testPrefix+"/cmd/result", "ok:hello")
	mu.Lock()
	if len(got) != 1 || got[0] != "hello" {
		t.Errorf("handler got %q", got)
	}
	mu.Unlock()

	// mosquitto runs without persistence here: a restart forgets retained
	// messages, and the next session publishes them again.
	b.Restart()
	waitFor(t, 20*time.Second, "a new session", func() bool { return c.State().Sessions >= 2 })
	late := b.Subscribe(t, testPrefix+"/zones/#")
	if m := want(late, testPrefix+"/zones/z1", "v2"); !m.Retained {
		t.Error("a late subscriber got z1 but not as a retained message")
	}
	// And the subscription is renewed on the new session.
	publish(t, b, testPrefix+"/cmd", "again")
	want(results, testPrefix+"/cmd/result", "ok:again")
}

func TestSubscriptionChecked(t *testing.T) {
	for _, s := range []Subscription{{Suffix: "cmd/#", Handle: func(context.Context, []byte) {}}, {Suffix: "", Handle: func(context.Context, []byte) {}}, {Suffix: "cmd"}} {
		cfg := Config{Brokers: []string{"mqtts://127.0.0.1:1"}, ClientID: "x", TopicPrefix: "p", TLSConfig: func() (*tls.Config, error) { return nil, nil }, Subscriptions: []Subscription{s}}
		if _, err := New(cfg, newMemSource(0)); err == nil || !strings.Contains(err.Error(), "subscription") {
			t.Errorf("subscription %+v accepted: %v", s, err)
		}
	}
}

// publish sends one QoS 1 message as another client of the broker.
func publish(t *testing.T, b *testbroker.Broker, topic, payload string) {
	t.Helper()
	opts := mqtt.NewClientOptions().AddBroker(b.URL).SetClientID("publisher-" + strings.ReplaceAll(t.Name(), "/", "-")).
		SetTLSConfig(b.ClientTLS(t)).SetConnectTimeout(5 * time.Second)
	cli := mqtt.NewClient(opts)
	if tok := cli.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publisher connect: %v", tok.Error())
	}
	defer cli.Disconnect(100)
	if tok := cli.Publish(topic, 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
}

// TestSendAcked: SendAcked's channel stays empty while no session is up
// (the message waits), receives nil once the broker acknowledged the
// message, and by then a subscriber has it.
func TestSendAcked(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	results := b.Subscribe(t, testPrefix+"/cmd/result")
	client, err := New(testConfig(t, b), newMemSource(0))
	if err != nil {
		t.Fatal(err)
	}
	done := client.SendAcked("cmd/result", []byte("answer"))
	select {
	case err := <-done:
		t.Fatalf("acknowledged before any session: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &running{Client: client, cancel: cancel, done: make(chan error, 1)}
	go func() { c.done <- client.Run(ctx) }()
	t.Cleanup(func() { c.stop(t) })
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("SendAcked: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no acknowledgement within 10 s of a session")
	}
	select {
	case m := <-results:
		if string(m.Payload) != "answer" {
			t.Fatalf("subscriber got %q", m.Payload)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("acknowledged, but the subscriber never got it")
	}
}

package uplink

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/jonboulle/clockwork"
)

// Errors of Echo's round trip.
var (
	// ErrNotDelivered: the broker acknowledged the test message (PUBACK) but
	// never delivered it to the subscription. MQTT 3.1.1 has no way to say
	// "denied" to a QoS 1 publish: a broker whose ACL refuses it still sends
	// PUBACK and drops the message, so readings published under such an ACL
	// are lost without a sign. The ACL is the usual cause.
	ErrNotDelivered = errors.New("the broker accepted the test message but did not deliver it")
	// ErrSubscribeRefused: the broker refused the subscription to the test
	// topic (SUBACK 0x80), so the round trip cannot be checked.
	ErrSubscribeRefused = errors.New("the broker refused the subscription to the test topic")
)

// EchoTopic returns a fresh diagnostic topic under prefix:
// <prefix>/diagnose/<random>.
func EchoTopic(prefix string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return prefix + "/diagnose/" + hex.EncodeToString(b[:])
}

// Echo is Probe followed by one round trip: it subscribes to topic, publishes
// one QoS 1 message to it (not retained, so nothing stays on the broker)
// and waits until the message comes back or ctx ends. It returns
// ErrSubscribeRefused when the broker refuses the subscription and
// ErrNotDelivered when the publish was acknowledged but never delivered.
func Echo(ctx context.Context, broker, clientID, topic string, tlsConfig func() (*tls.Config, error), timeout time.Duration) (ProbeResult, error) {
	return probe(ctx, broker, clientID, tlsConfig, timeout, clockwork.NewRealClock(), func(cli mqtt.Client) error {
		var nonce [16]byte
		_, _ = rand.Read(nonce[:])
		payload := []byte(`{"diagnose":"` + hex.EncodeToString(nonce[:]) + `"}`)
		back := make(chan struct{}, 1)
		sub := cli.Subscribe(topic, 1, func(_ mqtt.Client, m mqtt.Message) {
			if string(m.Payload()) == string(payload) {
				select {
				case back <- struct{}{}:
				default:
				}
			}
		})
		if err := waitToken(ctx, sub, "SUBACK"); err != nil {
			return err
		}
		if st, ok := sub.(*mqtt.SubscribeToken); ok {
			if code, ok := st.Result()[topic]; ok && code == 0x80 {
				return fmt.Errorf("%w %s", ErrSubscribeRefused, topic)
			}
		}
		defer cli.Unsubscribe(topic)
		if err := waitToken(ctx, cli.Publish(topic, 1, false, payload), "PUBACK"); err != nil {
			return err
		}
		select {
		case <-back:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("%w on %s", ErrNotDelivered, topic)
		}
	})
}

// waitToken waits for a token within ctx.
func waitToken(ctx context.Context, tok mqtt.Token, what string) error {
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("no %s in time", what)
	}
}

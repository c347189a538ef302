package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// record is one SenML record as the consumer received it.
type record struct {
	GW   string // agent id, from bn
	Seq  int64
	Name string // resolved name without the agent id: "air-1/temperature"
	V    float64
	At   time.Time // when the consumer received the message
}

// parsePack reads a SenML pack of the agent's readings topic; records
// without a seq (none are sent today) are refused.
func parsePack(payload []byte, at time.Time) ([]record, error) {
	var pack []struct {
		Bn  string   `json:"bn"`
		N   string   `json:"n"`
		V   *float64 `json:"v"`
		Seq *int64   `json:"seq"`
	}
	if err := json.Unmarshal(payload, &pack); err != nil {
		return nil, err
	}
	var bn string
	out := make([]record, 0, len(pack))
	for i, r := range pack {
		if r.Bn != "" {
			bn = r.Bn
		}
		if bn == "" || r.Seq == nil {
			return nil, fmt.Errorf("record %d: no bn or seq", i)
		}
		rec := record{GW: strings.TrimSuffix(bn, "/"), Seq: *r.Seq, Name: r.N, At: at}
		if r.V != nil {
			rec.V = *r.V
		}
		out = append(out, rec)
	}
	return out, nil
}

// consumer is one persistent MQTT session (clean session off, QoS 1) that
// records every reading; its queue on the cluster is a quorum queue, so it
// survives the loss of a node.
type consumer struct {
	id  string
	cli mqtt.Client

	mu      sync.Mutex
	records []record
	bad     int
	lost    int // connection losses seen
}

func tlsConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no certificate", caFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// startConsumer connects to brokers (first one preferred) and subscribes
// to every gateway's readings.
func startConsumer(id string, brokers []string, tc *tls.Config, topic string) (*consumer, error) {
	c := &consumer{id: id}
	o := mqtt.NewClientOptions()
	for _, b := range brokers {
		o.AddBroker(strings.Replace(b, "mqtts://", "ssl://", 1))
	}
	o.SetClientID(id).SetCleanSession(false).SetTLSConfig(tc)
	o.SetAutoReconnect(true).SetConnectRetry(true).SetMaxReconnectInterval(2 * time.Second)
	o.SetConnectTimeout(5 * time.Second).SetKeepAlive(10 * time.Second)
	o.SetOrderMatters(false)
	o.SetConnectionLostHandler(func(mqtt.Client, error) {
		c.mu.Lock()
		c.lost++
		c.mu.Unlock()
	})
	o.SetOnConnectHandler(func(cl mqtt.Client) {
		// Subscribing again is harmless with a persistent session and
		// covers a queue that a broker lost.
		go cl.Subscribe(topic, 1, c.handle)
	})
	o.SetDefaultPublishHandler(c.handle)
	c.cli = mqtt.NewClient(o)
	tok := c.cli.Connect()
	if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("consumer %s: connect: %v", id, tok.Error())
	}
	sub := c.cli.Subscribe(topic, 1, c.handle)
	if !sub.WaitTimeout(30*time.Second) || sub.Error() != nil {
		return nil, fmt.Errorf("consumer %s: subscribe: %v", id, sub.Error())
	}
	return c, nil
}

func (c *consumer) handle(_ mqtt.Client, m mqtt.Message) {
	recs, err := parsePack(m.Payload(), time.Now())
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.bad++
		return
	}
	c.records = append(c.records, recs...)
}

func (c *consumer) snapshot() []record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]record(nil), c.records...)
}

func (c *consumer) close() { c.cli.Disconnect(500) }

// retainedStatus connects a fresh clean session to one broker, subscribes
// to every gateway's status and returns what the broker hands over as
// retained within wait: agent id → state.
//
// RabbitMQ 3.10 hands retained messages only to subscriptions without
// wildcards, so it subscribes to each gateway's own status topic.
func retainedStatus(broker string, id string, tc *tls.Config, topics []string, wait time.Duration) (map[string]string, error) {
	var mu sync.Mutex
	seen := map[string]string{}
	o := mqtt.NewClientOptions().AddBroker(strings.Replace(broker, "mqtts://", "ssl://", 1))
	o.SetClientID(id).SetCleanSession(true).SetTLSConfig(tc).SetAutoReconnect(false).SetConnectTimeout(10 * time.Second)
	cli := mqtt.NewClient(o)
	tok := cli.Connect()
	if !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("late subscriber on %s: %v", broker, tok.Error())
	}
	defer cli.Disconnect(200)
	filters := map[string]byte{}
	for _, t := range topics {
		filters[t] = 1
	}
	sub := cli.SubscribeMultiple(filters, func(_ mqtt.Client, m mqtt.Message) {
		if !m.Retained() {
			return
		}
		var st struct {
			State string `json:"state"`
			Agent string `json:"agent"`
		}
		if json.Unmarshal(m.Payload(), &st) == nil && st.Agent != "" {
			mu.Lock()
			seen[st.Agent] = st.State
			mu.Unlock()
		}
	})
	if !sub.WaitTimeout(20*time.Second) || sub.Error() != nil {
		return nil, fmt.Errorf("late subscriber on %s: subscribe: %v", broker, sub.Error())
	}
	time.Sleep(wait)
	mu.Lock()
	defer mu.Unlock()
	out := make(map[string]string, len(seen))
	for k, v := range seen {
		out[k] = v
	}
	return out, nil
}

// takeover connects a second session with a gateway's own client id and
// certificate to another node, holds it for hold, and disconnects, as a
// gateway does that reconnects elsewhere before its old session died.
func takeover(broker, clientID string, tc *tls.Config, hold time.Duration) error {
	o := mqtt.NewClientOptions().AddBroker(strings.Replace(broker, "mqtts://", "ssl://", 1))
	o.SetClientID(clientID).SetCleanSession(true).SetTLSConfig(tc).SetAutoReconnect(false).SetConnectTimeout(10 * time.Second)
	cli := mqtt.NewClient(o)
	tok := cli.Connect()
	if !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		return fmt.Errorf("takeover of %s on %s: %v", clientID, broker, tok.Error())
	}
	time.Sleep(hold)
	cli.Disconnect(200)
	return nil
}

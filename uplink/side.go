package uplink

import (
	"context"
	"fmt"
	"sort"
	"sync"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Side messages travel beside the backlog, never behind it: the newest state
// of a retained topic (a zone's free-space count, a Smart Data Models
// document) and short answers (a remote command's result). They are not
// durable here — their owner keeps what must survive — and they are
// published only while a session is up:
//
//   - SetRetained keeps the newest payload per topic; it is published at once
//     when connected, and again at every new session, so a broker that lost
//     its retained state (a restarted node of a cluster) is repaired.
//   - Send queues a one-off message, published as soon as a session is up;
//     at most maxSideQueue wait, the oldest is dropped (and logged) beyond.
//
// Incoming messages of Config.Subscriptions are handed to their handler on
// the uplink's own goroutine, never on paho's, in arrival order.

// maxSideQueue bounds the one-off messages waiting for a session.
const maxSideQueue = 64

// maxInbox bounds received messages not yet handled; beyond it a message is
// dropped with a warning (QoS 1: the broker does not resend it in a clean
// session).
const maxInbox = 64

// sideMsg is one side message.
type sideMsg struct {
	topic    string
	payload  []byte
	retained bool
	gen      uint64     // for retained topics: which version of the topic's payload
	done     chan error // SendAcked's: the PUBACK (nil) or why not; nil for others
}

// sides holds the side messages of a Client.
type sides struct {
	mu       sync.Mutex
	retained map[string]sideMsg // topic → newest payload
	sent     map[string]uint64  // topic → generation published in this session
	gen      uint64
	queue    []sideMsg
	kick     chan struct{}
	dropped  uint64
}

func newSides() *sides {
	return &sides{retained: map[string]sideMsg{}, sent: map[string]uint64{}, kick: make(chan struct{}, 1)}
}

func (s *sides) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// SetRetained makes payload the retained message of <TopicPrefix>/<suffix>:
// published with QoS 1 as soon as a session is up, and again at every new
// session. Only the newest payload of a topic is kept.
func (c *Client) SetRetained(suffix string, payload []byte) {
	s := c.side
	s.mu.Lock()
	s.gen++
	topic := c.cfg.TopicPrefix + "/" + suffix
	s.retained[topic] = sideMsg{topic: topic, payload: append([]byte(nil), payload...), retained: true, gen: s.gen}
	s.mu.Unlock()
	s.poke()
}

// Send queues a one-off QoS 1 message to <TopicPrefix>/<suffix>, not
// retained, published as soon as a session is up.
func (c *Client) Send(suffix string, payload []byte) { c.send(suffix, payload, nil) }

// SendAcked is Send, and the returned channel receives nil once the broker
// acknowledged the message (PUBACK), or the error that ended its publish.
// It receives nothing while the message waits for a session (the caller
// bounds its wait) or after it was dropped from a full queue.
func (c *Client) SendAcked(suffix string, payload []byte) <-chan error {
	done := make(chan error, 1)
	c.send(suffix, payload, done)
	return done
}

func (c *Client) send(suffix string, payload []byte, done chan error) {
	s := c.side
	s.mu.Lock()
	if len(s.queue) >= maxSideQueue {
		c.log.Warn("uplink: side message dropped: too many waiting for a session", "topic", s.queue[0].topic)
		s.queue = s.queue[1:]
		s.dropped++
	}
	s.queue = append(s.queue, sideMsg{topic: c.cfg.TopicPrefix + "/" + suffix, payload: append([]byte(nil), payload...), done: done})
	s.mu.Unlock()
	s.poke()
}

// newSession forgets what was published in the previous session, so that
// every retained topic is published again.
func (s *sides) newSession() {
	s.mu.Lock()
	clear(s.sent)
	s.mu.Unlock()
}

// due takes what must be published now: retained topics whose newest
// payload was not yet published in this session (in topic order), then the
// queued one-off messages.
func (s *sides) due() []sideMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []sideMsg
	for topic, m := range s.retained {
		if s.sent[topic] != m.gen {
			out = append(out, m)
			s.sent[topic] = m.gen
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].topic < out[j].topic })
	out = append(out, s.queue...)
	s.queue = nil
	return out
}

// publishSides publishes what is due on session s. Each token is watched on
// its own goroutine for the log: a side message whose PUBACK never comes is
// repaired by the next session (retained) or lost with the session (a
// one-off answer; its sender may ask again).
func (c *Client) publishSides(s *session) {
	for _, m := range c.side.due() {
		tok := s.cli.Publish(m.topic, 1, m.retained, m.payload)
		go func(topic string, done chan error) {
			var err error
			if !c.await(tok, c.cfg.AckTimeout) {
				err = fmt.Errorf("no PUBACK within %v", c.cfg.AckTimeout)
			} else {
				err = tok.Error()
			}
			if err != nil {
				c.log.Debug("uplink: side message not sent", "topic", topic, "err", err)
			}
			if done != nil {
				done <- err
			}
		}(m.topic, m.done)
	}
}

// Subscription is one topic the uplink subscribes to, QoS 1, on every
// connection.
type Subscription struct {
	// Suffix is appended to TopicPrefix and "/" (no wildcards).
	Suffix string
	// Handle receives each message's payload, one at a time, on the uplink's
	// own goroutine; it should return quickly (long work goes elsewhere).
	Handle func(ctx context.Context, payload []byte)
}

// inMsg is a received message waiting for its handler.
type inMsg struct {
	handle  func(context.Context, []byte)
	payload []byte
}

// subscribe subscribes session s to every Subscription; paho's callback only
// queues the message.
func (c *Client) subscribe(s *session) error {
	for _, sub := range c.cfg.Subscriptions {
		h := sub.Handle
		topic := c.cfg.TopicPrefix + "/" + sub.Suffix
		tok := s.cli.Subscribe(topic, 1, func(_ mqtt.Client, m mqtt.Message) {
			select {
			case c.inbox <- inMsg{handle: h, payload: m.Payload()}:
			default:
				c.log.Warn("uplink: incoming message dropped: the handler is behind", "topic", m.Topic())
			}
		})
		if !c.await(tok, c.cfg.ConnectTimeout) {
			return fmt.Errorf("subscribe %s: no SUBACK within %v", topic, c.cfg.ConnectTimeout)
		}
		if err := tok.Error(); err != nil {
			return fmt.Errorf("subscribe %s: %w", topic, err)
		}
		if st, ok := tok.(*mqtt.SubscribeToken); ok {
			for _, q := range st.Result() {
				if q == 0x80 {
					return fmt.Errorf("subscribe %s: the broker refused it (check its ACL)", topic)
				}
			}
		}
	}
	return nil
}

// handleInbox runs the Subscription handlers until ctx is done.
func (c *Client) handleInbox(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-c.inbox:
			m.handle(ctx, m.payload)
		}
	}
}

// SideDropped reports how many one-off side messages were dropped because
// too many waited for a session.
func (c *Client) SideDropped() uint64 {
	c.side.mu.Lock()
	defer c.side.mu.Unlock()
	return c.side.dropped
}

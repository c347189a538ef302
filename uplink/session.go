package uplink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// outcome is how a session ended.
type outcome int

const (
	lost      outcome = iota // an established session ended on an error
	requested                // Reconnect was called
	stopped                  // Run's context ended
)

// Run connects, publishes and reconnects until ctx is done. Then it publishes
// the offline status, waits up to StopTimeout for it and for in-flight
// PUBACKs, disconnects cleanly and returns nil. Errors along the way are
// logged and kept in State; they never end Run. The waits between attempts
// follow the reconnect policy described in backoff.go.
func (c *Client) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("uplink: Run is already running")
	}
	defer c.running.Store(false)
	inboxCtx, stopInbox := context.WithCancel(ctx)
	inboxDone := make(chan struct{})
	go func() { defer close(inboxDone); c.handleInbox(inboxCtx) }()
	defer func() { stopInbox(); <-inboxDone }()
	pol := newBackoff(c.cfg.BackoffMin, c.cfg.BackoffMax, c.cfg.ReconnectSpread, c.rnd)
	ev := evStart // the first attempt at start is immediate
	for {
		wait := pol.next(c.clock.Now(), ev)
		if !c.before(ctx, ev, wait, pol.attempt) {
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		if ev = c.attempt(ctx); ev == evStopped {
			return nil
		}
	}
}

// before announces the wait before attempt number n (counted from the loss
// of the session) in State and, unless the attempt follows a start or a
// Reconnect, once in the log; then it waits. It reports false when ctx ended.
func (c *Client) before(ctx context.Context, ev event, wait time.Duration, n int) bool {
	c.mu.Lock()
	c.st.NextAttempt = c.clock.Now().Add(wait)
	c.st.Attempts = n - 1
	lastErr := c.st.LastError
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.st.NextAttempt = time.Time{}
		c.mu.Unlock()
	}()
	if ev != evStart && ev != evRequested {
		c.log.Info("uplink: reconnecting in "+delayText(wait), "attempt", n, "err", lastErr)
	}
	if wait <= 0 {
		return true
	}
	return c.pause(ctx, wait)
}

// delayText shows a delay as an operator reads it: "0.7s", "83.4s".
func delayText(d time.Duration) string {
	if d > 0 && d < 100*time.Millisecond {
		return d.Round(time.Millisecond).String()
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
}

// pause waits d, cut short by Reconnect. It reports false when ctx ended.
func (c *Client) pause(ctx context.Context, d time.Duration) bool {
	t := c.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.Chan():
	case <-c.reconnect:
		c.log.Info("uplink: reconnect requested, not waiting any longer")
	}
	return true
}

// attempt tries the brokers in order and serves the first session that is
// established. It returns the event that chooses the next wait: a failed
// attempt is evDown only when no broker accepted the TCP connection.
func (c *Client) attempt(ctx context.Context) event {
	// A Reconnect requested before this point is satisfied by this attempt:
	// the TLS configuration is read afresh below.
	select {
	case <-c.reconnect:
	default:
	}
	ev := evDown
	for _, u := range c.brokers {
		s, err := c.connect(ctx, u)
		if ctx.Err() != nil {
			return evStopped
		}
		if err != nil {
			c.logFailure(u.String(), err)
			c.setError(err)
			if errors.Is(err, errTLSConfig) {
				return evRefused // the same for every broker: no attempt at all
			}
			if !brokerDown(err) {
				ev = evRefused
			}
			continue
		}
		if c.failStreak > 0 {
			c.log.Info("uplink: connected after failures", "broker", u.String(), "failures", c.failStreak)
		}
		c.failStreak, c.failText = 0, ""
		began := c.clock.Now()
		switch c.serve(ctx, s) {
		case stopped:
			return evStopped
		case requested:
			return evRequested
		}
		if s.acked && c.clock.Since(began) >= stableAfter {
			return evLost
		}
		return evLostEarly
	}
	return ev
}

// logFailure logs a failed connection attempt as a warning the first time
// and whenever the cause changes; repeats go to debug, since the line that
// announces the next attempt carries the error too. A broker down for a day
// then costs one journal line per attempt.
func (c *Client) logFailure(broker string, err error) {
	c.failStreak++
	text := err.Error()
	if text != c.failText {
		c.log.Warn("uplink: connection failed", "broker", broker, "err", err, "failures_in_a_row", c.failStreak)
	} else {
		c.log.Debug("uplink: connection failed", "broker", broker, "err", err, "failures_in_a_row", c.failStreak)
	}
	c.failText = text
}

var errTLSConfig = errors.New("TLS configuration unusable, not connecting")

// dialError is a failure to open the TCP connection.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// brokerDown reports whether err says that no broker process answered: the
// TCP connection was refused or had no route. A TCP connect that timed out
// does not count: a broker whose listen backlog is full drops connection
// requests, and must not be retried quickly.
func brokerDown(err error) bool {
	var de *dialError
	if !errors.As(err, &de) {
		return false
	}
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout()) && !errors.Is(err, context.DeadlineExceeded)
}

// session is one connection: a fresh paho client, never reused.
type session struct {
	broker  string
	cli     mqtt.Client
	tls     *tls.Config
	ctx     context.Context
	now     func() time.Time
	timeout time.Duration
	lost    chan error // connection-lost reports; paho's callback never blocks on it

	mu      sync.Mutex
	raw     net.Conn // the TCP connection under TLS, closed to abort
	dialErr error
	version uint16
	stage   string // how far the connection got: stageTCP, stageTLS (explain.go)
	issuer  string // issuer of the client certificate offered, "CN=…"
	// sent is when the TLS handshake was done and paho went on to send
	// CONNECT, and connackAfter how long the broker then took to answer
	// (connackReceived). It is logged with the session, because a broker
	// that holds CONNECTs (RabbitMQ while its client-id registry has no
	// leader) answers many of them in the same instant.
	sent         time.Time
	connackAfter time.Duration

	acked bool // a PUBACK arrived; touched only by the serving goroutine
}

// open is paho's connection function: TCP connect and TLS handshake, bounded
// by the connect timeout and by Run's context. Owning it keeps any plaintext
// path out of paho's scheme switch and gives a precise error.
func (s *session) open(uri *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", uri.Host)
	if err != nil {
		err = &dialError{err}
		s.fail(err)
		return nil, err
	}
	s.mu.Lock()
	s.raw, s.stage = raw, stageTCP
	s.mu.Unlock()
	cfg := s.tls.Clone()
	recordIssuer(cfg, func(issuer string) {
		s.mu.Lock()
		s.issuer = issuer
		s.mu.Unlock()
	})
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		err = s.explainHandshake(err, cfg.ServerName)
		s.fail(err)
		return nil, err
	}
	s.mu.Lock()
	s.version, s.stage, s.sent = tc.ConnectionState().Version, stageTLS, s.now()
	s.mu.Unlock()
	return &verdictConn{Conn: tc}, nil
}

// connackReceived records, when Connect's token has completed, how long
// the broker took to answer CONNECT, and returns it. Sessions and
// --diagnose's probe both time it here.
func (s *session) connackReceived() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.connackAfter = s.now().Sub(s.sent)
	return s.connackAfter
}

// verdictConn keeps the broker's reason for refusing us. With TLS 1.3 the
// broker checks the client certificate after our side of the handshake is
// done; it then sends an alert and closes, and our CONNECT may hit the closed
// socket first. On such a write error, the alert is read if it is there, so
// the error names the cause instead of "connection reset by peer".
type verdictConn struct {
	*tls.Conn
}

func (c *verdictConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) {
		_ = c.Conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		var b [1]byte
		if _, rerr := c.Conn.Read(b[:]); isRemoteAlert(rerr) {
			return n, rerr
		}
	}
	return n, err
}

func isRemoteAlert(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error"
}

func (s *session) fail(err error) {
	s.mu.Lock()
	s.dialErr = err
	s.mu.Unlock()
}

// closeConn drops the TCP connection without an MQTT DISCONNECT, so the
// broker publishes the last will. paho does not notice by itself (it takes
// "use of closed network connection" for its own close): follow with
// Disconnect.
func (s *session) closeConn() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.raw != nil {
		_ = s.raw.Close()
	}
}

func explainHandshake(err error) error {
	var rh tls.RecordHeaderError
	switch {
	case errors.As(err, &rh):
		return fmt.Errorf("TLS handshake: the broker did not answer with TLS (plaintext listener?): %w", err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		// A TLS broker that refuses our version or certificate sends an alert;
		// a bare close or reset is what a plaintext MQTT listener does to a
		// ClientHello.
		return fmt.Errorf("TLS handshake: the broker closed the connection without a TLS answer: most likely not a TLS listener (plain MQTT on this port? use the broker's TLS port, usually 8883): %w", err)
	}
	return fmt.Errorf("TLS handshake: %w", err)
}

// explainConnect adds the likely cause to a failure after the handshake: with
// TLS 1.3 the broker checks our certificate after the client's side of the
// handshake is done, so its refusal arrives as an alert while we read CONNACK.
func (s *session) explainConnect(err error) error {
	s.mu.Lock()
	issuer, stage := s.issuer, s.stage
	s.mu.Unlock()
	switch {
	case isRemoteAlert(err):
		return explainRejected(err, issuer)
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF):
		return fmt.Errorf("the broker closed the connection right after the TLS handshake: %w", explainRejected(err, issuer))
	case isTimeout(err):
		return explainSilence(stage, err)
	}
	return err
}

// explainHandshake words a failed TLS handshake: the broker's certificate
// not verified, this gateway's refused, no TLS answer at all.
func (s *session) explainHandshake(err error, serverName string) error {
	if e := explainServerCert(err, serverName); e != nil {
		return fmt.Errorf("TLS handshake: %w", e)
	}
	if isRemoteAlert(err) {
		s.mu.Lock()
		issuer := s.issuer
		s.mu.Unlock()
		return fmt.Errorf("TLS handshake: %w", explainRejected(err, issuer))
	}
	if isTimeout(err) {
		return fmt.Errorf("TLS handshake: %w", explainSilence(stageTCP, err))
	}
	return explainHandshake(err)
}

// stageReached is how far the connection got, for a broker that went silent.
func (s *session) stageReached() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stage
}

// sessionTLS derives the TLS configuration of one connection from base,
// which belongs to the caller and is not modified.
func sessionTLS(base *tls.Config, u *url.URL) (*tls.Config, error) {
	if base == nil {
		return nil, fmt.Errorf("%w: TLSConfig returned nil", errTLSConfig)
	}
	if base.InsecureSkipVerify {
		return nil, fmt.Errorf("%w: InsecureSkipVerify is refused, the broker must be verified", errTLSConfig)
	}
	tc := base.Clone()
	if tc.MinVersion < tls.VersionTLS12 {
		tc.MinVersion = tls.VersionTLS12
	}
	if tc.ServerName == "" {
		tc.ServerName = u.Hostname()
	}
	return tc, nil
}

// connect establishes one session with broker u.
func (c *Client) connect(ctx context.Context, u *url.URL) (*session, error) {
	broker := u.String()
	c.mu.Lock()
	c.st.Broker = broker
	c.mu.Unlock()

	base, err := c.cfg.TLSConfig()
	if err != nil {
		return nil, fmt.Errorf("uplink: %w: %w", errTLSConfig, err)
	}
	tc, err := sessionTLS(base, u)
	if err != nil {
		return nil, fmt.Errorf("uplink: %w", err)
	}
	s := &session{
		broker:  broker,
		tls:     tc,
		ctx:     ctx,
		now:     c.clock.Now,
		timeout: c.cfg.ConnectTimeout,
		lost:    make(chan error, 1),
	}
	opts := mqtt.NewClientOptions().
		AddBroker(broker).
		SetClientID(c.cfg.ClientID).
		SetProtocolVersion(4). // no silent retry with MQTT 3.1 on failure
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetOrderMatters(false).
		SetKeepAlive(c.cfg.KeepAlive).
		SetPingTimeout(c.cfg.ConnectTimeout).
		SetConnectTimeout(c.cfg.ConnectTimeout).
		SetWriteTimeout(c.cfg.AckTimeout).
		SetBinaryWill(c.statusTopic, c.cfg.Status(false), 1, true).
		SetCustomOpenConnectionFn(s.open).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			select {
			case s.lost <- err:
			default:
			}
		})
	s.cli = mqtt.NewClient(opts)

	tok := s.cli.Connect()
	// paho bounds the handshake and the CONNACK separately; this bound only
	// guards against a paho bug leaving the token open.
	bound := c.clock.NewTimer(2*c.cfg.ConnectTimeout + time.Second)
	defer bound.Stop()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		s.closeConn()
		c.await(tok, time.Second)
		if s.cli.IsConnectionOpen() {
			s.cli.Disconnect(0)
		}
		return nil, ctx.Err()
	case <-bound.Chan():
		s.closeConn()
		return nil, fmt.Errorf("uplink: connect %s: %w", broker, explainSilence(s.stageReached(), fmt.Errorf("no CONNACK within %v", 2*c.cfg.ConnectTimeout)))
	}
	if err := tok.Error(); err != nil {
		s.mu.Lock()
		dialErr := s.dialErr
		s.mu.Unlock()
		if dialErr != nil {
			err = dialErr
		} else {
			err = s.explainConnect(err)
		}
		return nil, fmt.Errorf("uplink: connect %s: %w", broker, err)
	}
	s.connackReceived()
	return s, nil
}

// await waits for tok for at most d and reports whether it completed.
func (c *Client) await(tok mqtt.Token, d time.Duration) bool {
	t := c.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-tok.Done():
		return true
	case <-t.Chan():
		return false
	}
}

// pending is a publish awaiting its PUBACK.
type pending struct {
	b      Batch
	tok    mqtt.Token
	sent   time.Time
	status bool // a status message: no slot, no Acked
}

// serve runs an established session: a producer goroutine takes batches
// from the Source while a window slot is free and publishes them; this
// goroutine completes them in publish order, reports acks, keeps the status
// fresh and ends the session on the first error.
func (c *Client) serve(ctx context.Context, s *session) outcome {
	s.mu.Lock()
	version, connackAfter := tls.VersionName(s.version), s.connackAfter
	s.mu.Unlock()
	c.mu.Lock()
	c.st.Connected = true
	c.st.Broker = s.broker
	c.st.ConnectedSince = c.clock.Now()
	c.st.Sessions++
	c.st.Attempts = 0
	c.mu.Unlock()
	c.log.Info("uplink: connected", "broker", s.broker, "tls", version, "connack_after", connackAfter.Round(time.Millisecond))
	defer func() {
		c.mu.Lock()
		c.st.Connected = false
		c.st.ConnectedSince = time.Time{}
		c.mu.Unlock()
		c.inFlight.Store(0)
	}()

	c.src.Rewind()
	c.side.newSession()
	if err := c.subscribe(s); err != nil {
		c.setError(fmt.Errorf("uplink: %s: %w", s.broker, err))
		c.log.Warn("uplink: subscription failed, dropping the session", "broker", s.broker, "err", err)
		s.closeConn()
		s.cli.Disconnect(0)
		return lost
	}
	sctx, stopProducer := context.WithCancel(ctx)
	defer stopProducer()
	slots := make(chan struct{}, c.cfg.Window)
	// At most Window batches plus one status message are ever queued, so the
	// producer never blocks on this channel.
	queue := make(chan *pending, c.cfg.Window+1)
	prodDone := make(chan struct{})
	go func() {
		defer close(prodDone)
		c.produce(sctx, s, slots, queue)
	}()

	statusPending := false
	publishStatus := func() {
		if statusPending {
			return // the previous one is still unacknowledged
		}
		statusPending = true
		sent := c.clock.Now()
		tok := s.cli.Publish(c.statusTopic, 1, true, c.cfg.Status(true))
		queue <- &pending{tok: tok, sent: sent, status: true}
	}
	publishStatus()
	c.publishSides(s)
	ticker := c.clock.NewTicker(c.cfg.StatusEvery)
	defer ticker.Stop()
	timer := c.clock.NewTimer(c.cfg.AckTimeout)
	timer.Stop()
	defer timer.Stop()

	var (
		head    *pending
		err     error
		out     = lost
		wasLost bool
	)
loop:
	for {
		var headDone <-chan struct{}
		next := (<-chan *pending)(queue)
		if head != nil {
			headDone = head.tok.Done()
			next = nil
		}
		select {
		case <-ctx.Done():
			out = stopped
			break loop
		case <-c.reconnect:
			c.log.Info("uplink: reconnect requested", "broker", s.broker)
			out = requested
			break loop
		case e := <-s.lost:
			wasLost = true
			err = fmt.Errorf("connection lost: %w", orEOF(e))
			break loop
		case <-ticker.Chan():
			publishStatus()
		case <-c.statusNow:
			publishStatus()
		case <-c.side.kick:
			c.publishSides(s)
		case p := <-next:
			head = p
			timer.Reset(c.cfg.AckTimeout - c.clock.Since(p.sent))
		case <-headDone:
			timer.Stop()
			if err = c.complete(s, head, slots); err != nil {
				head = nil
				break loop
			}
			if head.status {
				statusPending = false
			}
			head = nil
		case <-timer.Chan():
			select {
			case <-head.tok.Done():
				continue // completed at the same instant; handled above next round
			default:
			}
			err = fmt.Errorf("no PUBACK within %v: broker or network stalled", c.cfg.AckTimeout)
			break loop
		}
	}

	stopProducer()
	stopBy := c.clock.Now().Add(c.cfg.StopTimeout)
	if out == lost && !wasLost {
		// Drop the connection without DISCONNECT, so the broker publishes
		// our last will now and a Publish stuck on the dead socket fails.
		s.closeConn()
	}
	if out == stopped {
		// The producer can only be held up inside paho's Publish, which
		// waits for a stalled connection up to AckTimeout; shutdown does not
		// wait that long. Past this point it never touches the Source.
		select {
		case <-prodDone:
		case <-c.clock.After(c.cfg.StopTimeout):
			c.log.Warn("uplink: connection stalled at shutdown, dropping it", "broker", s.broker)
			s.closeConn()
			s.cli.Disconnect(0)
			return stopped
		}
	} else {
		<-prodDone // Rewind must not run while the producer may call Next
	}
	var rest []*pending
	if head != nil {
		rest = append(rest, head)
	}
	for len(queue) > 0 {
		rest = append(rest, <-queue)
	}

	switch out {
	case stopped:
		// Offline first, so it is on its way while in-flight PUBACKs come in.
		sent := c.clock.Now()
		tok := s.cli.Publish(c.statusTopic, 1, true, c.cfg.Status(false))
		rest = append(rest, &pending{tok: tok, sent: sent, status: true})
		c.settle(s, rest, c.clock.Until(stopBy))
		s.cli.Disconnect(250)
		c.log.Info("uplink: disconnected", "broker", s.broker)
	case requested:
		c.settle(s, rest, c.cfg.StopTimeout)
		s.cli.Disconnect(250)
	default:
		err = fmt.Errorf("uplink: session with %s ended: %w", s.broker, err)
		c.log.Warn("uplink: session ended", "broker", s.broker, "err", err, "unacked", len(rest))
		c.setError(err)
		if !wasLost {
			// paho takes a socket closed under it for its own doing and
			// would wait for it forever: tell it. Its DISCONNECT cannot reach
			// the broker any more, so the last will stands.
			s.cli.Disconnect(0)
		}
	}
	return out
}

// produce publishes batches while window slots are free. Taking a batch
// from the Source (a buffer read and a SenML pack) and publishing it (paho
// hands the packet to its writer only when the previous one is written)
// overlap: this goroutine prepares the next batch while publish sends the
// one before, so a drain costs the longer of the two per message, not
// their sum. A batch taken but never published is simply offered again
// after the next Rewind, as an unacknowledged one is.
func (c *Client) produce(ctx context.Context, s *session, slots chan struct{}, queue chan<- *pending) {
	ready := make(chan Batch)
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		c.publish(ctx, s, ready, queue)
	}()
	defer func() { <-pubDone }()
	retry := c.cfg.BackoffMin
	for ctx.Err() == nil {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		b, err := c.src.Next(ctx)
		if err != nil {
			<-slots
			if ctx.Err() != nil {
				return
			}
			err = fmt.Errorf("uplink: next batch from the buffer: %w", err)
			c.log.Error("uplink: source failed", "err", err, "retry_in", retry)
			c.setError(err)
			select {
			case <-c.clock.After(retry):
			case <-ctx.Done():
				return
			}
			retry = min(2*retry, c.cfg.BackoffMax)
			continue
		}
		retry = c.cfg.BackoffMin
		select {
		case ready <- b:
		case <-ctx.Done():
			return // the session is ending; the batch is offered again later
		}
	}
}

// publish sends the batches produce prepared, in order, and queues them
// for completion.
func (c *Client) publish(ctx context.Context, s *session, ready <-chan Batch, queue chan<- *pending) {
	for {
		var b Batch
		select {
		case b = <-ready:
		case <-ctx.Done():
			return
		}
		if ctx.Err() != nil {
			return // the session is ending; the batch is offered again later
		}
		sent := c.clock.Now()
		tok := s.cli.Publish(c.readingsTopic, 1, false, b.Payload)
		if ctx.Err() != nil {
			return // ended while Publish waited; the batch is offered again later
		}
		c.inFlight.Add(1)
		c.mu.Lock()
		c.st.Published++
		c.mu.Unlock()
		if c.log.Enabled(ctx, slog.LevelDebug) { // seqRange formats: not for every message of a drain
			c.log.Debug("uplink: published", "seq", seqRange(b.Seqs), "bytes", len(b.Payload))
		}
		queue <- &pending{b: b, tok: tok, sent: sent}
	}
}

// complete handles a finished publish token of session s. A batch is
// reported to the Source only if its token completed without error. Every
// session is a fresh paho client with automatic reconnect off, so a token can
// only complete for the connection that sent it (the resumed-token loss of
// paho #563 cannot happen): no generation check is needed, and none is made.
func (c *Client) complete(s *session, p *pending, slots <-chan struct{}) error {
	if err := p.tok.Error(); err != nil {
		if p.status {
			return fmt.Errorf("publish status: %w", err)
		}
		return fmt.Errorf("publish batch seq %s: %w", seqRange(p.b.Seqs), err)
	}
	s.acked = true
	if p.status {
		return nil
	}
	if err := c.src.Acked(p.b); err != nil {
		// The batch stays in the buffer and is sent again after the next
		// rewind: a duplicate, never a loss.
		err = fmt.Errorf("uplink: recording the ack of seq %s: %w", seqRange(p.b.Seqs), err)
		c.log.Error("uplink: ack not recorded", "err", err)
		c.setError(err)
	}
	now := c.clock.Now()
	c.mu.Lock()
	c.st.Acked++
	c.st.LastUpload = now
	c.mu.Unlock()
	c.inFlight.Add(-1)
	<-slots
	return nil
}

// settle waits until deadline for the given publishes, in order, and reports
// the acknowledged batches; used when a session ends on purpose, so that
// batches already delivered are not sent twice.
func (c *Client) settle(s *session, ps []*pending, d time.Duration) {
	deadline := c.clock.After(d)
	slots := make(chan struct{}, len(ps)) // complete() releases a slot per batch
	for range ps {
		slots <- struct{}{}
	}
	for _, p := range ps {
		select {
		case <-p.tok.Done():
			if err := c.complete(s, p, slots); err != nil {
				c.log.Debug("uplink: not acknowledged at session end", "err", err)
			}
		case <-deadline:
			return
		}
	}
}

func orEOF(err error) error {
	if err == nil {
		return io.EOF
	}
	return err
}

func seqRange(seqs []uint64) string {
	switch len(seqs) {
	case 0:
		return "-"
	case 1:
		return fmt.Sprint(seqs[0])
	}
	return fmt.Sprintf("%d..%d", seqs[0], seqs[len(seqs)-1])
}

package sentilo

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/cityedge/cityedge/drivers"
)

// Reading is one value the forwarder offers to Sentilo.
type Reading struct {
	ID       string        // Sentilo sensor id (MapIDs)
	Sensor   string        // our sensor or zone name (status and logs)
	Value    drivers.Value // the quantity and its number or boolean
	Float32  bool          // the source measured in float32: format at float32 precision
	Time     time.Time     // the reading's own time
	Location *[2]float64   // [lon, lat] as in the config; nil: none
	Key      uint64        // opaque to the client (e.g. the buffer sequence); several readings may share one
}

// Status is what became of one reading in one Publish.
type Status uint8

const (
	// Acked: Sentilo stored it. Never offer it again.
	Acked Status = iota + 1
	// Held: its sensor is not registered (404.1) or not online (404.2).
	// Keep it and offer it again at RetryAt; it is delivered once the city
	// registers or re-enables the sensor.
	Held
	// SetAside: Sentilo refuses this observation on its own (400). It is done
	// for this output (counted and logged, not resent).
	SetAside
	// Retry: not delivered (throttled, refused credentials, server or
	// network trouble). Keep it and offer it again at RetryAt. Unknown tells
	// that it may have been stored all the same.
	Retry
)

func (s Status) String() string {
	switch s {
	case Acked:
		return "acked"
	case Held:
		return "held"
	case SetAside:
		return "set-aside"
	case Retry:
		return "retry"
	}
	return "status(" + strconv.Itoa(int(s)) + ")"
}

// Outcome is the fate of one reading in one Publish.
type Outcome struct {
	Status  Status
	Reason  string    // "404.1", "404.2", "401", "403", "429", "503", "timeout", the server's detail for SetAside, ...
	RetryAt time.Time // Held and Retry: do not offer it again before
	Unknown bool      // Retry: the request's outcome is unknown, so it may have been stored
}

// HeldSensor is a sensor whose readings Sentilo rejected (404).
type HeldSensor struct {
	ID       string
	Sensor   string
	Reason   string // "404.1" not registered, "404.2" not online
	Detail   string // Sentilo's error detail
	Since    time.Time
	NextTry  time.Time
	Readings int // readings of it held by the last Publish that carried any
}

// Stats are the client's counters since New (readings unless named).
type Stats struct {
	Requests  uint64 // HTTP requests sent (PUT /data)
	Acked     uint64
	SetAside  uint64 // refused on their own by a 400
	Unknown   uint64 // in requests whose outcome is unknown
	Resent    uint64 // offered again after an unknown outcome
	Throttled uint64 // 429 answers
	Refused   uint64 // 401/403 answers
	Failed    uint64 // 5xx answers, timeouts, connection errors
}

// Gate tells when the next request may go and why it may not before.
type Gate struct {
	Until time.Time
	Cause string // "" when open
}

// Client delivers readings to Sentilo. Publish, Wait and CheckCatalog may be
// called from one goroutine at a time; Stats, Held and Gate from any.
type Client struct {
	cfg   Config
	base  string
	clock clockwork.Clock
	log   *slog.Logger
	hc    *http.Client

	sendMu sync.Mutex // one Publish at a time

	wake chan struct{} // Reconnect wakes Wait

	mu        sync.Mutex
	gate      Gate
	gateError bool // the gate is a backoff after a failed exchange (network, TLS, 5xx)
	errDelay  time.Duration
	authDelay time.Duration
	logged    string // cause of the last WARN about the gate, "" after recovery
	held      map[string]*HeldSensor
	heldDelay map[string]time.Duration
	unknown   map[unknownKey]struct{}
	details   map[string]bool // 400 details already logged

	requests, acked, setAside, unknownN, resent, throttled, refused, failed atomic.Uint64
}

type unknownKey struct {
	key uint64
	id  string
}

// Retry schedules.
const (
	heldFirst  = 10 * time.Second
	heldMax    = 10 * time.Minute
	authFirst  = 30 * time.Second
	authMax    = 10 * time.Minute
	errFirst   = time.Second
	errMax     = 5 * time.Minute
	resetZero  = 60 * time.Second
	maxUnknown = 1 << 16 // remembered keys for the resent count
	maxBody    = 64 << 10
)

// New returns a client for cfg (defaults applied, then validated).
func New(cfg Config) (*Client, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dialer := &net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}
	var tlsCfg *tls.Config
	var dialTLS func(ctx context.Context, network, addr string) (net.Conn, error)
	if cfg.GetTLS == nil {
		tlsCfg = httpTLS(cfg.TLS, "")
	} else {
		dialTLS = func(ctx context.Context, network, addr string) (net.Conn, error) {
			tc, err := cfg.GetTLS()
			if err != nil {
				return nil, err
			}
			host, _, _ := net.SplitHostPort(addr)
			d := &tls.Dialer{NetDialer: dialer, Config: httpTLS(tc, host)}
			return d.DialContext(ctx, network, addr)
		}
	}
	tr := &http.Transport{
		DialContext:         dialer.DialContext,
		DialTLSContext:      dialTLS,
		TLSClientConfig:     tlsCfg,
		TLSHandshakeTimeout: cfg.Timeout,
		// HTTP/1.1 keep-alive to the proxy; HTTP/2 off (an empty, non-nil map).
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
		MaxIdleConns:        2,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     30 * time.Second, // below nginx's keepalive_timeout (75 s)
		Proxy:               nil,
	}
	c := &Client{
		cfg:   cfg,
		base:  strings.TrimRight(cfg.URL, "/"),
		clock: cfg.Clock,
		log:   cfg.Logger,
		hc: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
		wake:      make(chan struct{}, 1),
		held:      map[string]*HeldSensor{},
		heldDelay: map[string]time.Duration{},
		unknown:   map[unknownKey]struct{}{},
		details:   map[string]bool{},
	}
	return c, nil
}

// httpTLS is tc for HTTP/1.1 to the proxy: TLS 1.2 at least, ALPN
// http/1.1, and (when tc names none) host as the server name, as
// http.Transport does itself when it dials.
func httpTLS(tc *tls.Config, host string) *tls.Config {
	tc = tc.Clone()
	if tc.MinVersion < tls.VersionTLS12 {
		tc.MinVersion = tls.VersionTLS12
	}
	tc.NextProtos = []string{"http/1.1"}
	if tc.ServerName == "" {
		tc.ServerName = host
	}
	return tc
}

// Config returns the client's configuration with defaults applied.
func (c *Client) Config() Config { return c.cfg }

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Reconnect is for TLS material that changed (a reload): idle connections
// are closed, so the next request makes a new one with it, and a backoff
// after failed exchanges ends now rather than at its time (up to 5 min),
// waking Wait. A 429's reset and a 401/403's backoff stand: new
// certificates change neither a quota nor the token.
func (c *Client) Reconnect() {
	c.hc.CloseIdleConnections()
	c.mu.Lock()
	if c.gateError {
		c.gate, c.gateError = Gate{}, false
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Stats returns the counters.
func (c *Client) Stats() Stats {
	return Stats{
		Requests: c.requests.Load(), Acked: c.acked.Load(), SetAside: c.setAside.Load(),
		Unknown: c.unknownN.Load(), Resent: c.resent.Load(), Throttled: c.throttled.Load(),
		Refused: c.refused.Load(), Failed: c.failed.Load(),
	}
}

// Gate returns when the next request may go (zero Until: now).
func (c *Client) Gate() Gate {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.clock.Now().Before(c.gate.Until) {
		return Gate{}
	}
	return c.gate
}

// Held returns the held sensors, sorted by id.
func (c *Client) Held() []HeldSensor {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]HeldSensor, 0, len(c.held))
	for _, h := range c.held {
		out = append(out, *h)
	}
	sortHeld(out)
	return out
}

func sortHeld(h []HeldSensor) {
	for i := 1; i < len(h); i++ {
		for j := i; j > 0 && h[j].ID < h[j-1].ID; j-- {
			h[j], h[j-1] = h[j-1], h[j]
		}
	}
}

// Wait blocks on the clock until the gate is open (a 429 reset, a backoff)
// or ctx is done.
func (c *Client) Wait(ctx context.Context) error {
	for {
		g := c.Gate()
		if g.Until.IsZero() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.wake:
		case <-c.clock.After(c.clock.Until(g.Until)):
		}
	}
}

// Publish offers readings to Sentilo and returns one outcome per reading,
// in order. It never waits for a gate: while one is closed, or a reading's
// sensor is held and not yet due, those readings come back at once with
// RetryAt. Requests carry at most BatchMax observations and MaxRequestBytes.
func (c *Client) Publish(ctx context.Context, rs []Reading) []Outcome {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	out := make([]Outcome, len(rs))
	now := c.clock.Now()
	c.mu.Lock()
	gate := c.gate
	var idx []int
	for i, r := range rs {
		if now.Before(gate.Until) {
			out[i] = Outcome{Status: Retry, Reason: gate.Cause, RetryAt: gate.Until}
			continue
		}
		if h := c.held[r.ID]; h != nil && now.Before(h.NextTry) {
			out[i] = Outcome{Status: Held, Reason: h.Reason, RetryAt: h.NextTry}
			continue
		}
		idx = append(idx, i)
	}
	c.mu.Unlock()

	for start := 0; start < len(idx); {
		n := c.chunk(rs, idx[start:])
		if !c.send(ctx, rs, idx[start:start+n], out) {
			g := c.Gate()
			for _, i := range idx[start+n:] {
				out[i] = Outcome{Status: Retry, Reason: g.Cause, RetryAt: g.Until}
			}
			break
		}
		start += n
	}

	// Count held readings per sensor for status.
	counts := map[string]int{}
	for i, o := range out {
		if o.Status == Held {
			counts[rs[i].ID]++
		}
	}
	c.mu.Lock()
	for id, n := range counts {
		if h := c.held[id]; h != nil {
			h.Readings = n
		}
	}
	c.mu.Unlock()
	return out
}

// chunk returns how many of idx go into the next request: at most BatchMax,
// and (but for the first) within MaxRequestBytes by a safe estimate.
func (c *Client) chunk(rs []Reading, idx []int) int {
	size := 16
	seen := map[string]bool{}
	n := 0
	for _, i := range idx {
		if n == c.cfg.BatchMax {
			break
		}
		r := rs[i]
		est := 64 + len(c.cfg.OccupiedValue) + len(c.cfg.FreeValue) + 2*len(r.ID)
		if r.Location != nil {
			est += 100
		}
		if !seen[r.ID] {
			est += 64 + 2*len(r.ID)
			seen[r.ID] = true
		}
		if n > 0 && size+est > MaxRequestBytes {
			break
		}
		size += est
		n++
	}
	return n
}

// body builds {"sensors":[...]} for rs[idx], one element per sensor id in
// order of first appearance (SensorsMessage.java, SensorMessage.java,
// ObservationMessage.java).
func (c *Client) body(rs []Reading, idx []int) []byte {
	order := []string{}
	groups := map[string][]int{}
	for _, i := range idx {
		id := rs[i].ID
		if _, ok := groups[id]; !ok {
			order = append(order, id)
		}
		groups[id] = append(groups[id], i)
	}
	b := make([]byte, 0, 256+len(idx)*72)
	b = append(b, `{"sensors":[`...)
	for k, id := range order {
		if k > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"sensor":`...)
		b = appendJSONString(b, id)
		var loc *[2]float64
		for _, i := range groups[id] {
			if rs[i].Location != nil {
				loc = rs[i].Location
				break
			}
		}
		b = append(b, `,"observations":[`...)
		for j, i := range groups[id] {
			r := rs[i]
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"value":`...)
			if r.Value.IsBool {
				v := c.cfg.FreeValue
				if r.Value.Bool {
					v = c.cfg.OccupiedValue
				}
				b = appendJSONString(b, v)
			} else {
				b = append(b, '"')
				b = AppendNumber(b, r.Value.Num, r.Float32)
				b = append(b, '"')
			}
			b = append(b, `,"timestamp":"`...)
			b = AppendTime(b, r.Time)
			b = append(b, '"')
			if r.Location != nil && loc != nil && *r.Location != *loc {
				b = append(b, `,"location":"`...)
				b = appendLocation(b, *r.Location)
				b = append(b, '"')
			}
			b = append(b, '}')
		}
		b = append(b, ']')
		if loc != nil {
			b = append(b, `,"location":"`...)
			b = appendLocation(b, *loc)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '"' || ch == '\\':
			dst = append(dst, '\\', ch)
		case ch < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[ch>>4], hex[ch&0xf])
		default:
			dst = append(dst, ch)
		}
	}
	return append(dst, '"')
}

// answer is one HTTP exchange's result.
type answer struct {
	status  int
	header  http.Header
	msg     string
	details []string
	raw     []byte
	err     error
	written bool // the whole request reached the proxy
}

// send delivers rs[idx] in one request (bisecting on 400) and fills out.
// It returns false when the gate closed: the caller stops.
func (c *Client) send(ctx context.Context, rs []Reading, idx []int, out []Outcome) bool {
	c.countResent(rs, idx)
	a := c.do(ctx, c.cfg.URL, c.body(rs, idx))
	now := c.clock.Now()
	switch {
	case a.err != nil:
		unknown := a.written
		cause := "network: " + c.redact(a.err.Error())
		if errors.Is(a.err, context.DeadlineExceeded) && ctx.Err() == nil {
			cause = "timeout"
		}
		if ctx.Err() != nil { // shutting down: no backoff, no log
			c.retryAll(rs, idx, out, Outcome{Status: Retry, Reason: "canceled", RetryAt: now, Unknown: unknown})
			return false
		}
		c.failed.Add(1)
		until := c.backoffError(now, cause)
		c.retryAll(rs, idx, out, Outcome{Status: Retry, Reason: cause, RetryAt: until, Unknown: unknown})
		return false
	case a.status >= 200 && a.status < 300:
		c.recovered()
		for _, i := range idx {
			out[i] = Outcome{Status: Acked}
			c.release(rs[i].ID)
		}
		c.acked.Add(uint64(len(idx)))
		return true
	case a.status == http.StatusNotFound:
		return c.partial(ctx, rs, idx, out, a, now)
	case a.status == http.StatusBadRequest:
		c.recovered()
		if len(idx) == 1 {
			detail := c.redact(strings.Join(append([]string{a.msg}, a.details...), " "))
			out[idx[0]] = Outcome{Status: SetAside, Reason: detail}
			c.setAside.Add(1)
			c.mu.Lock()
			first := !c.details[detail] && len(c.details) < 256
			if first {
				c.details[detail] = true
			}
			c.mu.Unlock()
			if first {
				c.log.Warn("sentilo: observation refused by the server, set aside (further ones with this detail are only counted)",
					"sensor", rs[idx[0]].Sensor, "id", rs[idx[0]].ID, "detail", detail)
			}
			return true
		}
		h := len(idx) / 2
		if !c.send(ctx, rs, idx[:h], out) {
			g := c.Gate()
			c.retryAll(rs, idx[h:], out, Outcome{Status: Retry, Reason: g.Cause, RetryAt: g.Until})
			return false
		}
		return c.send(ctx, rs, idx[h:], out)
	case a.status == http.StatusUnauthorized || a.status == http.StatusForbidden:
		c.refused.Add(1)
		until := c.backoffAuth(now, a)
		c.retryAll(rs, idx, out, Outcome{Status: Retry, Reason: strconv.Itoa(a.status), RetryAt: until})
		return false
	case a.status == http.StatusTooManyRequests:
		c.throttled.Add(1)
		until := c.throttle(now, a)
		c.retryAll(rs, idx, out, Outcome{Status: Retry, Reason: "429", RetryAt: until})
		return false
	default:
		// 503 (starting), 500 SIE99..., 502/504 from the proxy and anything
		// unexpected. Only 503 and the 4xx are known to store nothing: a 500
		// or a proxy's 502/504 may come after some observations were stored.
		unknown := a.status >= 500 && a.status != http.StatusServiceUnavailable
		c.failed.Add(1)
		cause := fmt.Sprintf("%d %s", a.status, c.redact(a.msg))
		until := c.backoffError(now, strings.TrimSpace(cause))
		c.retryAll(rs, idx, out, Outcome{Status: Retry, Reason: strconv.Itoa(a.status), RetryAt: until, Unknown: unknown})
		return false
	}
}

func (c *Client) retryAll(rs []Reading, idx []int, out []Outcome, o Outcome) {
	for _, i := range idx {
		out[i] = o
	}
	if o.Unknown {
		c.unknownN.Add(uint64(len(idx)))
		c.mu.Lock()
		if len(c.unknown)+len(idx) > maxUnknown {
			clear(c.unknown) // bounded memory; the resent count becomes a lower bound
		}
		for _, i := range idx {
			c.unknown[unknownKey{rs[i].Key, rs[i].ID}] = struct{}{}
		}
		c.mu.Unlock()
	}
}

func (c *Client) countResent(rs []Reading, idx []int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.unknown) == 0 {
		return
	}
	for _, i := range idx {
		k := unknownKey{rs[i].Key, rs[i].ID}
		if _, ok := c.unknown[k]; ok {
			delete(c.unknown, k)
			c.resent.Add(1)
		}
	}
}

// partial handles a 404: EventRejectedException names the rejected sensors
// in its message ("Events associated with resources [a,b] have been
// rejected...") and one detail per sensor ("Sensor [a] not found on Sentilo
// (404.1).", "Sensor [b] is not online (404.2).")
// (sentilo-platform-common/.../exception/EventRejectedException.java,
// RejectedResourcesContext.java, ResourceNotFoundException.java,
// ResourceOfflineException.java). Every other observation of the request
// was stored (sentilo-platform-service/.../impl/DataServiceImpl.java).
func (c *Client) partial(ctx context.Context, rs []Reading, idx []int, out []Outcome, a answer, now time.Time) bool {
	rejected := parseRejected(a.msg)
	inRequest := map[string]bool{}
	for _, i := range idx {
		inRequest[rs[i].ID] = true
	}
	any := false
	for id := range rejected {
		if inRequest[id] {
			any = true
		}
	}
	if !any {
		// Not Sentilo's partial accept (e.g. the proxy's 404 for a wrong
		// path): nothing was stored.
		c.failed.Add(1)
		until := c.backoffError(now, "404 "+c.redact(a.msg)+" (check sentilo.url)")
		c.retryAll(rs, idx, out, Outcome{Status: Retry, Reason: "404", RetryAt: until})
		return false
	}
	c.recovered()
	reasons := map[string][2]string{} // id → reason, detail
	for _, d := range a.details {
		id, reason := parseDetail(d)
		if id != "" {
			reasons[id] = [2]string{reason, c.redact(d)}
		}
	}
	var nAcked uint64
	for _, i := range idx {
		id := rs[i].ID
		if !rejected[id] {
			out[i] = Outcome{Status: Acked}
			nAcked++
			c.release(id)
			continue
		}
		rd := reasons[id]
		if rd[0] == "" {
			rd[0] = "404"
		}
		next := c.hold(id, rs[i].Sensor, rd[0], rd[1], now)
		out[i] = Outcome{Status: Held, Reason: rd[0], RetryAt: next}
	}
	c.acked.Add(nAcked)
	return true
}

func parseRejected(msg string) map[string]bool {
	const prefix = "resources ["
	i := strings.Index(msg, prefix)
	if i < 0 {
		return nil
	}
	rest := msg[i+len(prefix):]
	j := strings.IndexByte(rest, ']')
	if j < 0 {
		return nil
	}
	set := map[string]bool{}
	for _, id := range strings.Split(rest[:j], ",") {
		if id = strings.TrimSpace(id); id != "" {
			set[id] = true
		}
	}
	return set
}

// parseDetail reads "Sensor [ID] not found on Sentilo (404.1)." and
// "Sensor [ID] is not online (404.2).".
func parseDetail(d string) (id, reason string) {
	i := strings.IndexByte(d, '[')
	j := strings.IndexByte(d, ']')
	if i < 0 || j < i {
		return "", ""
	}
	id = d[i+1 : j]
	if k := strings.LastIndex(d, "(404."); k >= 0 {
		if e := strings.IndexByte(d[k:], ')'); e > 0 {
			reason = d[k+1 : k+e]
		}
	}
	return id, reason
}

// hold marks id as rejected and returns when to try it again: 10 s,
// doubling to 10 min while it stays rejected.
func (c *Client) hold(id, sensor, reason, detail string, now time.Time) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.held[id]
	d := c.heldDelay[id]
	if h != nil && !now.Before(h.NextTry) {
		d = min(2*d, heldMax)
	}
	if h == nil || d == 0 {
		d = heldFirst
	}
	if h == nil {
		h = &HeldSensor{ID: id, Sensor: sensor, Since: now}
		c.held[id] = h
	}
	if h.Reason != reason {
		c.log.Warn("sentilo: sensor rejected by the city's catalog; its readings are held and retried",
			"sensor", sensor, "id", id, "reason", reason, "detail", detail, "retry_in", d)
	}
	h.Reason, h.Detail = reason, detail
	h.NextTry = now.Add(d)
	c.heldDelay[id] = d
	return h.NextTry
}

// release forgets a held sensor once Sentilo accepts its readings.
func (c *Client) release(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if h := c.held[id]; h != nil {
		c.log.Info("sentilo: sensor accepted again; held readings are being delivered", "sensor", h.Sensor, "id", id)
		delete(c.held, id)
		delete(c.heldDelay, id)
	}
}

// recovered opens the gate's backoffs after an answer from Sentilo itself.
func (c *Client) recovered() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errDelay, c.authDelay = 0, 0
	if c.logged != "" {
		c.log.Info("sentilo: delivering again", "after", c.logged)
		c.logged = ""
	}
}

// closeGate sets the gate and logs once per change of cause. Called with mu.
func (c *Client) closeGate(until time.Time, cause, hint string, level slog.Level) {
	c.gate, c.gateError = Gate{Until: until, Cause: cause}, false
	if cause == c.logged {
		return
	}
	c.logged = cause
	args := []any{"cause", cause, "retry_at", until.UTC().Format(time.RFC3339)}
	if hint != "" {
		args = append(args, "hint", hint)
	}
	c.log.Log(context.Background(), level, "sentilo: not delivering", args...)
}

// backoffError: 1 s doubling to 5 min, each wait uniform in [d/2, d].
func (c *Client) backoffError(now time.Time, cause string) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.errDelay == 0 {
		c.errDelay = errFirst
	} else {
		c.errDelay = min(2*c.errDelay, errMax)
	}
	half := c.errDelay / 2
	wait := half + time.Duration(c.cfg.Rand.Int64N(int64(c.errDelay-half)+1))
	until := now.Add(wait)
	c.closeGate(until, cause, "", slog.LevelWarn)
	c.gateError = true
	return until
}

// credentialNullHint names the usual cause of "Invalid credential null":
// the IDENTITY_KEY header never reached Sentilo (CredentialInterceptor.java
// reads it; AuthenticationServiceImpl.java answers "Invalid credential " +
// the value, "null" when absent).
const credentialNullHint = "the IDENTITY_KEY header did not reach Sentilo: a proxy drops headers with underscores; in nginx set `underscores_in_headers on;` in the server block"

// backoffAuth: 30 s doubling to 10 min.
func (c *Client) backoffAuth(now time.Time, a answer) time.Time {
	msg := c.redact(a.msg)
	hint := ""
	switch {
	case strings.Contains(a.msg, "Invalid credential null"):
		hint = credentialNullHint
	case a.status == http.StatusUnauthorized:
		hint = "the token in sentilo.token_file is not one Sentilo knows"
	case strings.Contains(strings.ToLower(a.msg), "https") || strings.Contains(strings.ToLower(a.msg), "ssl"):
		hint = "the provider requires HTTPS: the proxy must set X-Forwarded-Proto https"
	default:
		hint = "the token's entity has no write permission on sentilo.provider"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.authDelay == 0 {
		c.authDelay = authFirst
	} else {
		c.authDelay = min(2*c.authDelay, authMax)
	}
	until := now.Add(c.authDelay)
	c.closeGate(until, strings.TrimSpace(fmt.Sprintf("%d %s", a.status, msg)), hint, slog.LevelError)
	return until
}

// throttle: nothing before the reset the headers give, in minutes
// (X-RateLimit-Inbound-Reset, X-RateLimit-Global-Inbound-Reset:
// sentilo-common/.../enums/HttpHeader.java, set by SentiloRequestHandler.java
// from QuotaContext.getMinutesToReset); 0 or absent: 60 s.
func (c *Client) throttle(now time.Time, a answer) time.Time {
	mins := 0
	for _, h := range []string{"X-RateLimit-Inbound-Reset", "X-RateLimit-Global-Inbound-Reset"} {
		if v, err := strconv.Atoi(strings.TrimSpace(a.header.Get(h))); err == nil && v > mins {
			mins = v
		}
	}
	wait := time.Duration(mins) * time.Minute
	if wait <= 0 {
		wait = resetZero
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	until := now.Add(wait)
	c.closeGate(until, "429 "+c.redact(a.msg), "", slog.LevelWarn)
	return until
}

// redact removes the token from text Sentilo sent back: a 401 answers
// "Invalid credential <token as sent>".
func (c *Client) redact(s string) string {
	if c.cfg.Token != "" {
		s = strings.ReplaceAll(s, c.cfg.Token, "[token]")
	}
	const p = "Invalid credential "
	if i := strings.Index(s, p); i >= 0 {
		rest := s[i+len(p):]
		if !strings.HasPrefix(rest, "null") {
			end := strings.IndexAny(rest, " \"")
			if end < 0 {
				end = len(rest)
			}
			s = s[:i+len(p)] + "[token]" + rest[end:]
		}
	}
	return s
}

// do sends one request. Error bodies are read as {"code","message","errorDetails"}
// (sentilo-platform-server/.../dto/ErrorMessage.java).
func (c *Client) do(ctx context.Context, url string, body []byte) answer {
	return c.exchange(ctx, http.MethodPut, url+"/data/"+c.cfg.Provider, body)
}

func (c *Client) exchange(ctx context.Context, method, url string, body []byte) answer {
	var a answer
	rctx, cancel := clockwork.WithTimeout(ctx, c.clock, c.cfg.Timeout)
	defer cancel()
	var written atomic.Bool
	rctx = httptrace.WithClientTrace(rctx, &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				written.Store(true)
			}
		},
	})
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(rctx, method, url, rd)
	if err != nil {
		a.err = err
		return a
	}
	// Set directly: Header.Set would canonicalise it to "Identity_key".
	req.Header["IDENTITY_KEY"] = []string{c.cfg.Token}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if method == http.MethodPut {
		c.requests.Add(1)
	}
	resp, err := c.hc.Do(req)
	a.written = written.Load()
	if err != nil {
		a.err = err
		return a
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	a.status, a.header, a.raw = resp.StatusCode, resp.Header, raw
	if err != nil && resp.StatusCode/100 == 2 && method == http.MethodPut {
		// The status line said stored; the body's loss changes nothing.
		return a
	}
	if resp.StatusCode/100 != 2 {
		var em struct {
			Code    int      `json:"code"`
			Message string   `json:"message"`
			Details []string `json:"errorDetails"`
		}
		if json.Unmarshal(raw, &em) == nil && em.Message != "" {
			a.msg, a.details = em.Message, em.Details
		} else {
			a.msg = strings.TrimSpace(http.StatusText(resp.StatusCode))
		}
	}
	return a
}

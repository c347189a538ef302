// Package sentilotest is a stand-in for a Sentilo 2.0.0 API server
// (github.com/sentilo/sentilo) for tests: the part of its contract the
// agent's Sentilo output meets, written from Sentilo's source. Every rule
// names the file it comes from (paths under sentilo-platform/ unless they
// start with sentilo-common/ or docs/). It is a model of facts, not a port:
// no Sentilo code is in it.
//
// Like Sentilo it speaks plain HTTP and leaves TLS to the reverse proxy in
// front of it (scripts/nginxtest); Options.TLS serves TLS directly for
// in-process benchmarks.
package sentilotest

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// Options configure a Server.
type Options struct {
	Provider string   // the provider the token may write to
	Token    string   // the provider's token
	Sensors  []string // registered and online at start
	// RequireHTTPS: the provider's "REST HTTPS" flag; requests that did not
	// come through a proxy setting X-Forwarded-Proto: https get 403.
	RequireHTTPS bool
	// TLS, when set, makes the server speak TLS itself (benchmarks only;
	// Sentilo never does).
	TLS *tls.Config
}

// Observation is one stored observation.
type Observation struct {
	Provider, Sensor, Value, Timestamp, Location string
	Time                                         time.Time // Timestamp parsed
	Request                                      int       // the PUT that stored it (1-based)
}

// Server is a running stand-in.
type Server struct {
	URL  string // http://127.0.0.1:PORT (https:// with Options.TLS)
	Addr string

	opts Options
	srv  *http.Server
	ln   net.Listener

	mu       sync.Mutex
	state    map[string]string // sensor → "online" | "offline"; absent: not registered
	stored   []Observation
	puts     int
	answers  map[int]int // status → count
	throttle []throttleRule
	fail     []int // statuses to answer the next PUTs with
	lose     int   // next PUTs stored, then the connection closed with no answer
	refuse   map[string]string
}

type throttleRule struct {
	reset  string
	global bool
}

// Start runs a stand-in on 127.0.0.1 until the end of the test.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatalf("sentilotest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// New runs a stand-in on 127.0.0.1; Close stops it.
func New(opts Options) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, ln: ln, Addr: ln.Addr().String(),
		state: map[string]string{}, answers: map[int]int{}, refuse: map[string]string{}}
	for _, id := range opts.Sensors {
		s.state[id] = "online"
	}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	// The API server closes the connection after every request: "This
	// disable persistent connections from clients because always close
	// them" (sentilo-platform-server/.../SentiloHttpRequestTask.java), and
	// reads with a 5 s socket timeout (sentilo.server.api.socket.timeout-ms,
	// .../http/RequestListenerThread.java).
	s.srv.SetKeepAlivesEnabled(false)
	s.srv.ReadTimeout = 5 * time.Second
	if opts.TLS != nil {
		s.URL = "https://" + s.Addr
		s.srv.SetKeepAlivesEnabled(true) // benchmarks measure the client, not the handshake
		go s.srv.Serve(tls.NewListener(ln, opts.TLS))
	} else {
		s.URL = "http://" + s.Addr
		go s.srv.Serve(ln)
	}
	return s, nil
}

// Close stops the server.
func (s *Server) Close() { _ = s.srv.Close() }

// Register adds id as an online sensor (an administrator's POST /catalog).
func (s *Server) Register(id string) { s.set(id, "online") }

// Unregister removes id from the catalog.
func (s *Server) Unregister(id string) { s.set(id, "") }

// SetOffline puts id in the offline state (catalog web app).
func (s *Server) SetOffline(id string) { s.set(id, "offline") }

func (s *Server) set(id, st string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st == "" {
		delete(s.state, id)
	} else {
		s.state[id] = st
	}
}

// Throttle answers the next n PUTs with 429 and the reset header
// (minutes, as text; "" leaves the header out). global selects the
// instance quota's header instead of the account's.
func (s *Server) Throttle(n int, reset string, global bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.throttle = append(s.throttle, throttleRule{reset, global})
	}
}

// Fail answers the next PUTs with the given statuses, storing nothing.
func (s *Server) Fail(statuses ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = append(s.fail, statuses...)
}

// LoseResponses makes the next n PUTs store their observations and then
// close the connection without an answer: the client cannot know.
func (s *Server) LoseResponses(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lose += n
}

// RefuseValue makes every observation with this value a field error (400),
// as Sentilo answers an unparseable field of one observation.
func (s *Server) RefuseValue(value, detail string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuse[value] = detail
}

// Observations returns what was stored, in order.
func (s *Server) Observations() []Observation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Observation(nil), s.stored...)
}

// Puts returns how many PUT /data requests arrived.
func (s *Server) Puts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.puts
}

// Answers returns how many times each status was answered.
func (s *Server) Answers() map[int]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[int]int, len(s.answers))
	for k, v := range s.answers {
		m[k] = v
	}
	return m
}

// errorBody is {"code","message","errorDetails"}, errorDetails left out
// when empty (.../dto/ErrorMessage.java; written by
// .../request/SentiloRequestHandler.java buildErrorResponse).
func (s *Server) answer(w http.ResponseWriter, code int, msg string, details []string) {
	s.answers[code]++
	body := map[string]any{"code": code, "message": msg}
	if len(details) > 0 {
		body["errorDetails"] = details
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.answer(w, http.StatusBadRequest, "unreadable body", nil)
		return
	}
	// CredentialInterceptor.java reads header IDENTITY_KEY;
	// AuthenticationServiceImpl.java (sentilo-platform-server/.../auth/impl/)
	// refuses an unknown one with UnauthorizedException("Invalid credential "
	// + credential): the token as sent, or "null" when the header is absent.
	cred, ok := r.Header["Identity_key"] // Go's canonical form of IDENTITY_KEY
	credential := "null"
	if ok && len(cred) > 0 {
		credential = cred[0]
	}
	if credential != s.opts.Token {
		s.answer(w, http.StatusUnauthorized, "Invalid credential "+credential, nil)
		return
	}
	// SSLAccessInterceptor.java: a provider with REST HTTPS set needs
	// X-Forwarded-Proto: https, else SSLRequiredException (403).
	if s.opts.RequireHTTPS && r.Header.Get("X-Forwarded-Proto") != "https" {
		s.answer(w, http.StatusForbidden, "This request requires a SSL connection (403.4)", nil)
		return
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/catalog":
		s.catalog(w)
	case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/data/"):
		s.put(w, r, body)
	default:
		// SentiloRequestHandler.java lookupHandlerForRequest.
		s.answer(w, http.StatusNotFound, "handler not found to process request "+r.URL.Path, nil)
	}
}

// catalog answers GET /catalog: the providers the entity may use with
// their permission and ONLINE sensors only
// (docs/api_docs/services/catalog/retrieve_authorized_entities.rst).
func (s *Server) catalog(w http.ResponseWriter) {
	type sensor struct {
		Sensor   string `json:"sensor"`
		DataType string `json:"dataType"`
		State    string `json:"state"`
	}
	sensors := []sensor{}
	for id, st := range s.state {
		if st == "online" {
			sensors = append(sensors, sensor{id, "NUMBER", st})
		}
	}
	sort.Slice(sensors, func(i, j int) bool { return sensors[i].Sensor < sensors[j].Sensor })
	s.answers[200]++
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"providers": []any{map[string]any{
		"provider": s.opts.Provider, "permission": "WRITE", "sensors": sensors}}})
}

// Sentilo's wire form of a publish (.../dto/SensorsMessage.java,
// SensorMessage.java, ObservationMessage.java). Jackson's default
// ObjectMapper (sentilo-common/.../converter/BaseJsonMessageConverter.java)
// fails on unknown properties: DisallowUnknownFields.
type sensorsMessage struct {
	Sensors []struct {
		Sensor       string `json:"sensor"`
		Location     string `json:"location"`
		Observations []struct {
			Value     *string `json:"value"`
			Timestamp string  `json:"timestamp"`
			Location  string  `json:"location"`
			Time      *int64  `json:"time"`
		} `json:"observations"`
	} `json:"sensors"`
}

// "lat lng" (SentiloUtils.isValidLocationFormat via
// .../converter/PlatformJsonMessageConverter.java parseLocation).
var locationRE = regexp.MustCompile(`^-?\d+(\.\d+)? -?\d+(\.\d+)?$`)

// parseTimestamp reads dd/MM/yyyy'T'HH:mm:ssZ non-leniently, as
// sentilo-common/.../utils/DateUtils.java does: exactly two digits for day,
// month, hour, minute and second, one to four for the year (a 2-digit year
// is year 00xx), and the zone as +hhmm or -hhmm; a missing zone is read as
// UTC (DateUtils.formatToUTC appends "+0000"). By hand rather than with a
// regular expression: the stand-in parses every observation of a drain
// benchmark, and there the expression cost more than the client measured.
func parseTimestamp(ts string) (time.Time, bool) {
	i := 0
	num := func(min, max int) (int, bool) {
		start, v := i, 0
		for i < len(ts) && i-start < max && ts[i] >= '0' && ts[i] <= '9' {
			v = v*10 + int(ts[i]-'0')
			i++
		}
		return v, i-start >= min
	}
	lit := func(c byte) bool {
		if i < len(ts) && ts[i] == c {
			i++
			return true
		}
		return false
	}
	day, ok1 := num(2, 2)
	ok2 := lit('/')
	month, ok3 := num(2, 2)
	ok4 := lit('/')
	year, ok5 := num(1, 4)
	ok6 := lit('T')
	hour, ok7 := num(2, 2)
	ok8 := lit(':')
	minute, ok9 := num(2, 2)
	ok10 := lit(':')
	sec, ok11 := num(2, 2)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7 && ok8 && ok9 && ok10 && ok11) {
		return time.Time{}, false
	}
	off := 0
	if i < len(ts) {
		neg := ts[i] == '-'
		if !lit('+') && !lit('-') {
			return time.Time{}, false
		}
		hhmm, ok := num(4, 4)
		if !ok {
			return time.Time{}, false
		}
		off = hhmm/100*3600 + hhmm%100*60
		if neg {
			off = -off
		}
	}
	if i != len(ts) {
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, 0, time.FixedZone("", off))
	// Non-lenient: 31/02 or 25:00 is an error, not a rollover.
	if t.Day() != day || int(t.Month()) != month || t.Hour() != hour || t.Minute() != minute || t.Second() != sec {
		return time.Time{}, false
	}
	return t.UTC(), true
}

// put handles PUT /data/{provider} (.../handler/impl/DataHandler.java
// onPut → .../converter/DataConverter.java parsePutRequest →
// .../validation/DataValidator.java → DataServiceImpl.setObservations).
func (s *Server) put(w http.ResponseWriter, r *http.Request, body []byte) {
	s.puts++
	req := s.puts
	// RateLimiterInterceptor.java: InboundRateLimiterException (429,
	// sentilo-platform-common/.../exception/InboundRateLimiterException.java)
	// with the X-RateLimit-*-Reset headers in minutes
	// (SentiloRequestHandler.java addExtraResponseHeaders,
	// sentilo-common/.../enums/HttpHeader.java).
	if len(s.throttle) > 0 {
		rule := s.throttle[0]
		s.throttle = s.throttle[1:]
		name, msg := "X-RateLimit-Inbound", "Sent quota exceeded. You are only allowed to send 100 requests per hour on this site. Try again later."
		if rule.global {
			name, msg = "X-RateLimit-Global-Inbound", "Global inbound requests quota exceeded. Service only accepts 100 requests per hour. Try again later."
		}
		w.Header().Set(name+"-Limit", "100")
		w.Header().Set(name+"-Remaining", "0")
		if rule.reset != "" {
			w.Header().Set(name+"-Reset", rule.reset)
		}
		s.answer(w, http.StatusTooManyRequests, msg, nil)
		return
	}
	if len(s.fail) > 0 {
		code := s.fail[0]
		s.fail = s.fail[1:]
		s.answer(w, code, fmt.Sprintf("Internal server error (SIE99-%d)", req), nil)
		return
	}
	provider := strings.TrimPrefix(r.URL.Path, "/data/")
	if provider == "" || strings.Contains(provider, "/") {
		s.answer(w, http.StatusBadRequest, "Bad request: resource path", nil)
		return
	}
	// AbstractHandler.validateWriteAccess: ForbiddenAccessException (403).
	if provider != s.opts.Provider {
		s.answer(w, http.StatusForbidden, fmt.Sprintf("You are not authorized to write on resource %s", provider), nil)
		return
	}
	var msg sensorsMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&msg); err != nil {
		s.answer(w, http.StatusBadRequest, "Bad request data: could not read JSON payload. Please review the following error and try again", []string{err.Error()})
		return
	}
	var all []Observation
	for _, sm := range msg.Sensors {
		for _, o := range sm.Observations {
			// DataValidator.java: value mandatory.
			if o.Value == nil {
				s.answer(w, http.StatusBadRequest, "To publish data is mandatory to fill in the value field", nil)
				return
			}
			if detail, bad := s.refuse[*o.Value]; bad {
				s.answer(w, http.StatusBadRequest, "Bad request data: could not read JSON payload. Please review the following error and try again", []string{detail})
				return
			}
			t, ok := parseTimestamp(o.Timestamp)
			if !ok {
				// PlatformJsonMessageConverter.java buildJsonFieldError.
				s.answer(w, http.StatusBadRequest, "Bad request data: could not read JSON payload. Please review the following error and try again",
					[]string{"Wrong timestamp value: " + o.Timestamp})
				return
			}
			// DataConverter.java: an observation's own location, else the sensor's.
			loc := o.Location
			if loc == "" {
				loc = sm.Location
			}
			if loc != "" && !locationRE.MatchString(loc) {
				s.answer(w, http.StatusBadRequest, "Bad request data: could not read JSON payload. Please review the following error and try again",
					[]string{"Wrong location value: " + loc})
				return
			}
			all = append(all, Observation{Provider: provider, Sensor: sm.Sensor, Value: *o.Value, Timestamp: o.Timestamp, Location: loc, Time: t, Request: req})
		}
	}
	if len(all) == 0 {
		s.answer(w, http.StatusBadRequest, "To publish data is mandatory to fill in the observations field", nil)
		return
	}
	// DataServiceImpl.setObservations: observation by observation, a
	// registered online sensor's is stored; an unknown one is rejected
	// with "Sensor [id] not found on Sentilo (404.1)."
	// (ResourceNotFoundException.java), an offline one with "Sensor [id] is
	// not online (404.2)." (ResourceOfflineException.java); one detail per
	// resource (RejectedResourcesContext.java). Any rejection makes the
	// answer EventRejectedException (404) AFTER the others were stored.
	var rejected []string
	details := map[string]string{}
	for _, o := range all {
		switch s.state[o.Sensor] {
		case "online":
			s.stored = append(s.stored, o)
		case "offline":
			if _, dup := details[o.Sensor]; !dup {
				rejected = append(rejected, o.Sensor)
				details[o.Sensor] = fmt.Sprintf("Sensor [%s] is not online (404.2).", o.Sensor)
			}
		default:
			if _, dup := details[o.Sensor]; !dup {
				rejected = append(rejected, o.Sensor)
				details[o.Sensor] = fmt.Sprintf("Sensor [%s] not found on Sentilo (404.1).", o.Sensor)
			}
		}
	}
	if s.lose > 0 {
		s.lose--
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return
			}
		}
	}
	if len(rejected) > 0 {
		ds := make([]string, 0, len(rejected))
		for _, id := range rejected {
			ds = append(ds, details[id])
		}
		s.answer(w, http.StatusNotFound, fmt.Sprintf(
			"Events associated with resources [%s] have been rejected. See the error details to know about what went wrong in each case",
			strings.Join(rejected, ",")), ds)
		return
	}
	// SentiloRequestHandler.applyPostHandle: 200; DataHandler writes no body.
	s.answers[200]++
	w.WriteHeader(http.StatusOK)
}

package remote

import (
	"encoding/json"
	"time"
)

// Result is the answer published on <topic_prefix>/cmd/result (QoS 1, not
// retained):
//
//	{"jti":"…","cmd":"…","ok":true,"result":{…},"time":"2026-11-25T10:00:00Z"}
//	{"jti":"…","cmd":"…","ok":false,"error":"…","reason":"expired","time":"…"}
//
// "error" is present when ok is false; "reason" when the command was
// rejected before it ran (a [Reason]); "result" when the handler returned
// one.
type Result struct {
	JTI    string          `json:"jti"`
	Cmd    string          `json:"cmd"`
	OK     bool            `json:"ok"`
	Error  string          `json:"error,omitempty"`
	Reason Reason          `json:"reason,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Time   time.Time       `json:"-"`
}

type wireResult struct {
	JTI    string          `json:"jti"`
	Cmd    string          `json:"cmd"`
	OK     bool            `json:"ok"`
	Error  string          `json:"error,omitempty"`
	Reason Reason          `json:"reason,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Time   string          `json:"time"`
}

// MarshalJSON writes the contract's form, with time in RFC 3339 UTC.
func (r Result) MarshalJSON() ([]byte, error) {
	return json.Marshal(wireResult{JTI: r.JTI, Cmd: r.Cmd, OK: r.OK, Error: r.Error, Reason: r.Reason,
		Result: r.Result, Time: r.Time.UTC().Format(time.RFC3339)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *Result) UnmarshalJSON(b []byte) error {
	var w wireResult
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	t, err := time.Parse(time.RFC3339, w.Time)
	if err != nil {
		return err
	}
	*r = Result{JTI: w.JTI, Cmd: w.Cmd, OK: w.OK, Error: w.Error, Reason: w.Reason, Result: w.Result, Time: t}
	return nil
}

package guidance

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// TimeFormat is how the zone message and the Smart Data Models documents
// write a time: UTC with milliseconds, "2026-12-03T10:00:00.123Z".
const TimeFormat = "2006-01-02T15:04:05.000Z"

// FormatTime writes t as TimeFormat in UTC.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeFormat) }

// zoneJSON fixes the zone message's fields and their order.
type zoneJSON struct {
	Zone     string `json:"zone"`
	Free     int    `json:"free"`
	Occupied int    `json:"occupied"`
	Unknown  int    `json:"unknown"`
	Total    int    `json:"total"`
	Changed  string `json:"changed"`
	Seq      uint64 `json:"seq"`
}

// MarshalJSON writes the zone message, exactly
// {"zone":"z1","free":3,"occupied":5,"unknown":0,"total":8,"changed":"2026-12-03T10:00:00.123Z","seq":42}.
func (z ZoneState) MarshalJSON() ([]byte, error) {
	return json.Marshal(zoneJSON{z.Zone, z.Free, z.Occupied, z.Unknown, z.Total, FormatTime(z.Changed), z.Seq})
}

// UnmarshalJSON reads a zone message and checks that its counts add up.
func (z *ZoneState) UnmarshalJSON(b []byte) error {
	var j zoneJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	t, err := time.Parse(TimeFormat, j.Changed)
	if err != nil {
		return fmt.Errorf("zone message: changed: %w", err)
	}
	if j.Free < 0 || j.Occupied < 0 || j.Unknown < 0 || j.Free+j.Occupied+j.Unknown != j.Total {
		return fmt.Errorf("zone message: free %d + occupied %d + unknown %d is not total %d", j.Free, j.Occupied, j.Unknown, j.Total)
	}
	*z = ZoneState{j.Zone, j.Free, j.Occupied, j.Unknown, j.Total, t, j.Seq}
	return nil
}

// Sign texts.
const (
	// SignWidth is the number of characters a sign shows.
	SignWidth = 4
	// SignFull is shown when no bay is free and at least one is known.
	SignFull = "FULL"
	// SignUnknown is shown when every bay is unknown, and by every sign
	// when the agent stops.
	SignUnknown = "----"
	// signMax is the largest count that fits the sign.
	signMax = 9999
)

// Sign is what the zone's signs show: the free count right-aligned in
// SignWidth characters (9999 at most), SignFull when no bay is free and at
// least one is known, SignUnknown when every bay is unknown.
func (z ZoneState) Sign() string {
	switch {
	case z.Unknown == z.Total:
		return SignUnknown
	case z.Free == 0:
		return SignFull
	}
	n := strconv.Itoa(min(z.Free, signMax))
	return fmt.Sprintf("%*s", SignWidth, n)
}

// Lamp reports whether a zone's lamp is on: exactly when the sign shows
// SignFull.
func (z ZoneState) Lamp() bool { return z.Sign() == SignFull }

// ZoneTopic is where a zone's message is published, retained, QoS 1:
// <topic_prefix>/zones/<zone>.
func ZoneTopic(prefix, zone string) string { return prefix + "/zones/" + zone }

// EntityTopic is where a Smart Data Models document is published,
// retained: <topic_prefix>/ngsi-ld/<entity id>.
func EntityTopic(prefix, id string) string { return prefix + "/ngsi-ld/" + id }

package guidance

import (
	"encoding/json"
	"fmt"
	"slices"
)

// Entity is one Smart Data Models document in keyValues form, to publish
// retained at <topic_prefix>/ngsi-ld/<ID>.
type Entity struct {
	ID  string
	Doc []byte // JSON
}

// ParkingGroupID is the entity id of a zone: urn:ngsi-ld:ParkingGroup:<agent id>:<zone>.
func ParkingGroupID(agentID, zone string) string {
	return "urn:ngsi-ld:ParkingGroup:" + agentID + ":" + zone
}

// ParkingSpotID is the entity id of a bay: urn:ngsi-ld:ParkingSpot:<agent id>:<sensor>.
func ParkingSpotID(agentID, sensor string) string {
	return "urn:ngsi-ld:ParkingSpot:" + agentID + ":" + sensor
}

type parkingGroup struct {
	ID                  string    `json:"id"`
	Type                string    `json:"type"`
	Category            []string  `json:"category"`
	RefParkingSite      string    `json:"refParkingSite"`
	TotalSpotNumber     int       `json:"totalSpotNumber"`
	AvailableSpotNumber int       `json:"availableSpotNumber"`
	Location            *Location `json:"location,omitempty"`
	DateModified        string    `json:"dateModified"`
}

type parkingSpot struct {
	ID              string    `json:"id"`
	Type            string    `json:"type"`
	Status          string    `json:"status"`
	Category        []string  `json:"category"`
	RefParkingSite  string    `json:"refParkingSite"`
	RefParkingGroup string    `json:"refParkingGroup"`
	Location        *Location `json:"location"`
	DateModified    string    `json:"dateModified"`
}

// ParkingGroup returns the ParkingGroup document of a zone state:
// totalSpotNumber, availableSpotNumber = free (unknown bays are never
// available), refParkingSite, category, location when configured,
// dateModified = when the counts changed.
func (m *Model) ParkingGroup(z ZoneState) (Entity, error) {
	m.mu.Lock()
	zn, ok := m.byName[z.Zone]
	m.mu.Unlock()
	if !ok {
		return Entity{}, fmt.Errorf("guidance: no zone %q", z.Zone)
	}
	id := ParkingGroupID(m.cfg.AgentID, z.Zone)
	doc, err := json.Marshal(parkingGroup{
		ID:                  id,
		Type:                "ParkingGroup",
		Category:            zn.category(),
		RefParkingSite:      m.site(zn),
		TotalSpotNumber:     z.Total,
		AvailableSpotNumber: z.Free,
		Location:            zn.cfg.Location,
		DateModified:        FormatTime(z.Changed),
	})
	return Entity{ID: id, Doc: doc}, err
}

// ParkingSpot returns the ParkingSpot document of a bay state: status,
// category (onStreet unless the zone says offStreet), refParkingSite,
// refParkingGroup, location (the model requires it), dateModified = when the
// bay took its state.
func (m *Model) ParkingSpot(b BayState) (Entity, error) {
	m.mu.Lock()
	bay, ok := m.bays[b.Sensor]
	m.mu.Unlock()
	if !ok {
		return Entity{}, fmt.Errorf("guidance: sensor %q is no bay", b.Sensor)
	}
	if bay.loc == nil {
		return Entity{}, fmt.Errorf("guidance: bay %q has no location, which the ParkingSpot model requires", b.Sensor)
	}
	z := bay.zone
	cat := []string{"onStreet"}
	if slices.Contains(z.cfg.Category, "offStreet") {
		cat = []string{"offStreet"}
	}
	id := ParkingSpotID(m.cfg.AgentID, b.Sensor)
	doc, err := json.Marshal(parkingSpot{
		ID:              id,
		Type:            "ParkingSpot",
		Status:          b.State.String(),
		Category:        cat,
		RefParkingSite:  m.site(z),
		RefParkingGroup: ParkingGroupID(m.cfg.AgentID, z.cfg.Name),
		Location:        bay.loc,
		DateModified:    FormatTime(b.Changed),
	})
	return Entity{ID: id, Doc: doc}, err
}

func (z *zone) category() []string {
	if z.cfg.Category == nil {
		return DefaultCategory
	}
	return z.cfg.Category
}

// site is a zone's parking site: its own, else agent.site, else the agent id.
func (m *Model) site(z *zone) string {
	switch {
	case z.cfg.Site != "":
		return z.cfg.Site
	case m.cfg.Site != "":
		return m.cfg.Site
	}
	return m.cfg.AgentID
}

package sentilo

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
)

// CatalogReport is the outcome of CheckCatalog, for --diagnose.
type CatalogReport struct {
	Level   string   // "PASS", "WARN" or "FAIL"
	Detail  string   // one line for the operator; never the token
	Missing []string // ids not listed (not registered, or not online)
}

// CheckCatalog asks Sentilo which providers and sensors the token may use
// (GET /catalog: providers with "permission" and their online sensors;
// docs/api_docs/services/catalog/retrieve_authorized_entities.rst). PASS
// when sentilo.provider is listed with WRITE (or ADMIN) and every id in ids
// is listed; WARN naming each missing id (the readings of those are held
// until the city registers or enables them); FAIL when the provider is
// missing or read-only. An error means Sentilo could not be asked.
func (c *Client) CheckCatalog(ctx context.Context, ids []string) (CatalogReport, error) {
	a := c.exchange(ctx, http.MethodGet, c.base+"/catalog", nil)
	if a.err != nil {
		return CatalogReport{}, fmt.Errorf("sentilo: GET /catalog: %s", c.redact(a.err.Error()))
	}
	if a.status != http.StatusOK {
		msg := fmt.Sprintf("sentilo: GET /catalog: %d %s", a.status, c.redact(a.msg))
		if strings.Contains(a.msg, "Invalid credential null") {
			msg += "; " + credentialNullHint
		}
		return CatalogReport{}, fmt.Errorf("%s", msg)
	}
	var cat struct {
		Providers []struct {
			Provider   string `json:"provider"`
			Permission string `json:"permission"`
			Sensors    []struct {
				Sensor string `json:"sensor"`
			} `json:"sensors"`
		} `json:"providers"`
	}
	if err := json.Unmarshal(a.raw, &cat); err != nil {
		return CatalogReport{}, fmt.Errorf("sentilo: GET /catalog: unreadable answer: %w", err)
	}
	for _, p := range cat.Providers {
		if p.Provider != c.cfg.Provider {
			continue
		}
		if perm := strings.ToUpper(p.Permission); perm != "WRITE" && perm != "ADMIN" {
			return CatalogReport{Level: "FAIL", Detail: fmt.Sprintf("provider %q is listed with permission %q: the token may not publish", p.Provider, p.Permission)}, nil
		}
		listed := make(map[string]bool, len(p.Sensors))
		for _, s := range p.Sensors {
			listed[s.Sensor] = true
		}
		var missing []string
		for _, id := range ids {
			if !listed[id] {
				missing = append(missing, id)
			}
		}
		sort.Strings(missing)
		if len(missing) > 0 {
			return CatalogReport{Level: "WARN", Missing: missing, Detail: fmt.Sprintf(
				"provider %q may write; %d of %d ids not registered or not online (their readings are held until they are): %s",
				p.Provider, len(missing), len(ids), strings.Join(missing, ", "))}, nil
		}
		return CatalogReport{Level: "PASS", Detail: fmt.Sprintf("provider %q may write; all %d ids are registered and online", p.Provider, len(ids))}, nil
	}
	return CatalogReport{Level: "FAIL", Detail: fmt.Sprintf("provider %q is not among the providers the token may use", c.cfg.Provider)}, nil
}

// CatalogSensor describes one id for the administrator's registration.
type CatalogSensor struct {
	ID          string
	Description string
	Type        string // Sentilo sensor type, e.g. the quantity ("temperature")
	Boolean     bool   // dataType BOOLEAN (occupancy), else NUMBER
	Unit        string
	Component   string      // e.g. our sensor or zone name, as a Sentilo id
	Parking     bool        // componentType "parking" (bays and zones), else "generic"
	Location    *[2]float64 // [lon, lat]; nil: none (a mobile component)
}

// CatalogBody is the body of POST /catalog/{provider} that registers every
// sensor (docs/api_docs/services/catalog/create_sensors.rst), for
// cityedge --sentilo-catalog. No network.
func CatalogBody(sensors []CatalogSensor) ([]byte, error) {
	type entry struct {
		Sensor        string `json:"sensor"`
		Description   string `json:"description,omitempty"`
		Type          string `json:"type"`
		DataType      string `json:"dataType"`
		Unit          string `json:"unit,omitempty"`
		Component     string `json:"component"`
		ComponentType string `json:"componentType"`
		Location      string `json:"location,omitempty"`
	}
	body := struct {
		Sensors []entry `json:"sensors"`
	}{Sensors: make([]entry, 0, len(sensors))}
	for _, s := range sensors {
		if !validID(s.ID) {
			return nil, fmt.Errorf("sentilo: catalog: id %q: only letters, digits, '_' and '-'", s.ID)
		}
		if !validID(s.Component) {
			return nil, fmt.Errorf("sentilo: catalog: id %q: component %q: only letters, digits, '_' and '-'", s.ID, s.Component)
		}
		if s.Type == "" {
			return nil, fmt.Errorf("sentilo: catalog: id %q: no type", s.ID)
		}
		e := entry{Sensor: s.ID, Description: s.Description, Type: s.Type, DataType: "NUMBER", Unit: s.Unit,
			Component: s.Component, ComponentType: "generic"}
		if s.Boolean {
			e.DataType = "BOOLEAN"
		}
		if s.Parking {
			e.ComponentType = "parking"
		}
		if s.Location != nil {
			e.Location = FormatLocation(*s.Location)
		}
		body.Sensors = append(body.Sensors, e)
	}
	return json.MarshalIndent(body, "", "  ")
}

package guidance

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

const commonSchemaURL = "https://smart-data-models.github.io/data-models/common-schema.json"

// sdmDir finds the official Smart Data Models schemas: shared/ sits beside
// the repository (CI clones the repository with shared/ next to it).
func sdmDir(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = up
	}
	sdm := filepath.Join(dir, "..", "shared", "smart-data-models")
	if _, err := os.Stat(filepath.Join(sdm, "common-schema.json")); err != nil {
		t.Fatalf("the Smart Data Models schemas must be at %s (shared/ beside the repository): %v", sdm, err)
	}
	return sdm
}

func readJSON(t *testing.T, path string) any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

// schemas compiles the official ParkingGroup and ParkingSpot schemas
// (draft 2020-12, formats asserted), with common-schema.json registered
// under its URL: nothing is fetched.
func schemas(t *testing.T) map[string]*jsonschema.Schema {
	t.Helper()
	dir := sdmDir(t)
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource(commonSchemaURL, readJSON(t, filepath.Join(dir, "common-schema.json"))); err != nil {
		t.Fatal(err)
	}
	out := map[string]*jsonschema.Schema{}
	for _, model := range []string{"ParkingGroup", "ParkingSpot"} {
		doc := readJSON(t, filepath.Join(dir, model, "schema.json"))
		id, _ := doc.(map[string]any)["$id"].(string)
		if id == "" {
			t.Fatalf("%s/schema.json has no $id", model)
		}
		if err := c.AddResource(id, doc); err != nil {
			t.Fatal(err)
		}
		s, err := c.Compile(id)
		if err != nil {
			t.Fatalf("compile %s: %v", model, err)
		}
		out[model] = s
	}
	return out
}

func validate(t *testing.T, s *jsonschema.Schema, doc []byte) error {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		t.Fatalf("%s: %v", doc, err)
	}
	return s.Validate(v)
}

// The validator is the real one: the models' own examples pass, and
// documents broken in the ways a bug would break them fail.
func TestSchemasRejectBrokenDocuments(t *testing.T) {
	sch := schemas(t)
	dir := sdmDir(t)
	for _, model := range []string{"ParkingGroup", "ParkingSpot"} {
		b, err := os.ReadFile(filepath.Join(dir, model, "example.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := validate(t, sch[model], b); err != nil {
			t.Errorf("the official %s example fails: %v", model, err)
		}
	}
	spot := `{"id":"urn:ngsi-ld:ParkingSpot:gw:b1","type":"ParkingSpot","status":"free","category":["onStreet"],"refParkingSite":"gw","location":{"type":"Point","coordinates":[2.1,41.3]},"dateModified":"2026-12-03T10:00:00.123Z"}`
	if err := validate(t, sch["ParkingSpot"], []byte(spot)); err != nil {
		t.Fatalf("the unbroken spot fails: %v", err)
	}
	broken := []struct{ model, from, to string }{
		{"ParkingSpot", `"status":"free"`, `"status":"nope"`},
		{"ParkingSpot", `"category":["onStreet"]`, `"category":["onstreet"]`},
		{"ParkingSpot", `,"location":{"type":"Point","coordinates":[2.1,41.3]}`, ``},
		{"ParkingSpot", `"dateModified":"2026-12-03T10:00:00.123Z"`, `"dateModified":"yesterday"`},
		{"ParkingSpot", `"type":"ParkingSpot"`, `"type":"ParkingGroup"`},
	}
	for _, b := range broken {
		doc := strings.Replace(spot, b.from, b.to, 1)
		if doc == spot {
			t.Fatalf("the case %q → %q breaks nothing", b.from, b.to)
		}
		if err := validate(t, sch[b.model], []byte(doc)); err == nil {
			t.Errorf("%s with %s accepted", b.model, b.to)
		}
	}
	group := `{"id":"g","type":"ParkingGroup","category":["onStreet"],"refParkingSite":"s","totalSpotNumber":1,"availableSpotNumber":0}`
	if err := validate(t, sch["ParkingGroup"], []byte(group)); err != nil {
		t.Fatalf("the unbroken group fails: %v", err)
	}
	for _, b := range [][2]string{{`"category":["onStreet"]`, `"category":["street"]`}, {`"totalSpotNumber":1`, `"totalSpotNumber":0`}, {`"availableSpotNumber":0`, `"availableSpotNumber":-1`}, {`,"refParkingSite":"s"`, ``}} {
		if err := validate(t, sch["ParkingGroup"], []byte(strings.Replace(group, b[0], b[1], 1))); err == nil {
			t.Errorf("ParkingGroup with %s accepted", b[1])
		}
	}
}

// Every document the model produces, in every state a street goes
// through, validates against the official schema, and says what the
// model's state says.
func TestDocumentsValidate(t *testing.T) {
	sch := schemas(t)
	cfg := street(time.Second, 4, "z1", "garage", "plaza")
	cfg.SmartDataModels = true
	cfg.Site = "urn:ngsi-ld:OnStreetParking:barcelona:eixample-42"
	cfg.Zones[1].Category = []string{"offStreet", "completeFloor", "feeCharged"}
	cfg.Zones[1].Site = "garage-7"
	cfg.Zones[2].Location = &Location{Ring: [][2]float64{{2.15, 41.39}, {2.151, 41.39}, {2.151, 41.391}, {2.15, 41.39}}}
	cfg.Zones[0].Location = &Location{Point: [2]float64{2.15, 41.39}}
	clock := clockwork.NewFakeClockAt(t0)
	m, err := New(cfg, clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	checked := map[string]int{}
	check := func(zs []ZoneState, bs []BayState) {
		for _, z := range zs {
			e, err := m.ParkingGroup(z)
			if err != nil {
				t.Fatal(err)
			}
			if err := validate(t, sch["ParkingGroup"], e.Doc); err != nil {
				t.Fatalf("%s: %v", e.Doc, err)
			}
			var d map[string]any
			json.Unmarshal(e.Doc, &d)
			if e.ID != "urn:ngsi-ld:ParkingGroup:gw-7:"+z.Zone || d["id"] != e.ID || d["availableSpotNumber"] != float64(z.Free) ||
				d["totalSpotNumber"] != float64(z.Total) || d["dateModified"] != FormatTime(z.Changed) {
				t.Fatalf("%+v → %s", z, e.Doc)
			}
			checked["group"]++
		}
		for _, b := range bs {
			e, err := m.ParkingSpot(b)
			if err != nil {
				t.Fatal(err)
			}
			if err := validate(t, sch["ParkingSpot"], e.Doc); err != nil {
				t.Fatalf("%s: %v", e.Doc, err)
			}
			var d map[string]any
			json.Unmarshal(e.Doc, &d)
			if e.ID != "urn:ngsi-ld:ParkingSpot:gw-7:"+b.Sensor || d["status"] != b.State.String() ||
				d["refParkingGroup"] != "urn:ngsi-ld:ParkingGroup:gw-7:"+b.Zone || d["dateModified"] != FormatTime(b.Changed) {
				t.Fatalf("%+v → %s", b, e.Doc)
			}
			checked["spot "+b.State.String()]++
		}
	}
	check(m.Zones(), m.Bays())
	for i, b := range m.Bays() {
		clock.Advance(100 * time.Millisecond)
		u := m.Opened(b.Sensor)
		u2 := m.Reading(b.Sensor, i%2 == 0, clock.Now())
		check(append(u.Zones, u2.Zones...), append(u.Bays, u2.Bays...))
	}
	clock.Advance(10 * time.Second)
	u := m.Tick()
	check(u.Zones, u.Bays)
	for _, k := range []string{"group", "spot free", "spot occupied", "spot unknown"} {
		if checked[k] == 0 {
			t.Errorf("no %s document was checked", k)
		}
	}

	// What the configuration says reaches the documents.
	docs := map[string]map[string]any{}
	for _, z := range m.Zones() {
		e, _ := m.ParkingGroup(z)
		var d map[string]any
		json.Unmarshal(e.Doc, &d)
		docs[z.Zone] = d
	}
	for _, b := range []string{"z1-b0", "garage-b0"} {
		e, _ := m.ParkingSpot(BayState{Sensor: b, Zone: strings.Split(b, "-")[0], State: Free, Changed: t0})
		var d map[string]any
		json.Unmarshal(e.Doc, &d)
		docs[b] = d
	}
	for _, c := range []struct {
		doc, key, want string
	}{
		{"z1", "refParkingSite", cfg.Site},
		{"z1", "category", "[onStreet]"},
		{"z1", "location", "map[coordinates:[2.15 41.39] type:Point]"},
		{"garage", "refParkingSite", "garage-7"},
		{"garage", "category", "[offStreet completeFloor feeCharged]"},
		{"garage", "location", "<nil>"},
		{"plaza", "location", "map[coordinates:[[[2.15 41.39] [2.151 41.39] [2.151 41.391] [2.15 41.39]]] type:Polygon]"},
		{"z1-b0", "category", "[onStreet]"},
		{"z1-b0", "location", "map[coordinates:[2.15 41.39] type:Point]"},
		{"garage-b0", "category", "[offStreet]"},
		{"garage-b0", "refParkingSite", "garage-7"},
	} {
		if got := fmtAny(docs[c.doc][c.key]); got != c.want {
			t.Errorf("%s %s = %s, want %s", c.doc, c.key, got, c.want)
		}
	}
	cfg.Site = ""
	m2, _ := New(cfg, clock, nil)
	if e, _ := m2.ParkingGroup(m2.Zones()[0]); !bytes.Contains(e.Doc, []byte(`"refParkingSite":"gw-7"`)) {
		t.Errorf("without agent.site the site is the agent id: %s", e.Doc)
	}
}

func fmtAny(v any) string {
	if v == nil {
		return "<nil>"
	}
	return sprint(v)
}

// sprint writes a decoded JSON value compactly, map keys sorted.
func sprint(v any) string {
	switch x := v.(type) {
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = sprint(e)
		}
		return "[" + strings.Join(parts, " ") + "]"
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + ":" + sprint(x[k])
		}
		return "map[" + strings.Join(parts, " ") + "]"
	case string:
		return x
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// The categories Check accepts are exactly the schema's.
func TestCategoriesAreTheSchemas(t *testing.T) {
	doc := readJSON(t, filepath.Join(sdmDir(t), "ParkingGroup", "schema.json"))
	var enum []string
	for _, part := range doc.(map[string]any)["allOf"].([]any) {
		props, _ := part.(map[string]any)["properties"].(map[string]any)
		if cat, ok := props["category"].(map[string]any); ok {
			for _, e := range cat["items"].(map[string]any)["enum"].([]any) {
				enum = append(enum, e.(string))
			}
		}
	}
	if len(enum) == 0 || !slices.Equal(enum, Categories) {
		t.Errorf("Categories = %q,\nthe schema says %q", Categories, enum)
	}
}

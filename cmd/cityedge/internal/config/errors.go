package config

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// Errors is every problem found in one configuration file, in the order of
// the file's lines. Parse returns a lone *ConfigError when there is one
// problem and Errors when there are several; AllErrors reads either.
type Errors []*ConfigError

func (e Errors) Error() string {
	lines := make([]string, len(e))
	for i, ce := range e {
		lines[i] = ce.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As find the first *ConfigError.
func (e Errors) Unwrap() []error {
	out := make([]error, len(e))
	for i, ce := range e {
		out[i] = ce
	}
	return out
}

// AllErrors lists the configuration problems in err (nil when err holds
// none).
func AllErrors(err error) []*ConfigError {
	var all Errors
	if errors.As(err, &all) {
		return all
	}
	var ce *ConfigError
	if errors.As(err, &ce) {
		return []*ConfigError{ce}
	}
	return nil
}

// Fail records one problem with key and returns it. Every section's
// validation takes a Fail and carries on after a problem where it can, so
// that one run lists everything that is wrong in the file; Parse gathers
// what was recorded. The return value is there for code that cannot go on
// (it has already been recorded: do not record it again).
type Fail func(key, format string, args ...any) error

// collector gathers the problems of one file.
type collector struct {
	path string
	pos  keyIndex
	errs Errors
	seen map[string]bool // key+message, so that a problem is listed once
}

func (col *collector) fail(key, format string, args ...any) error {
	return col.add(&ConfigError{File: col.path, Line: col.pos.line(key), Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (col *collector) add(ce *ConfigError) error {
	if col.seen == nil {
		col.seen = map[string]bool{}
	}
	if id := ce.Key + "\x00" + ce.Msg; !col.seen[id] {
		col.seen[id] = true
		col.errs = append(col.errs, ce)
	}
	return ce
}

// err is nil, the lone problem, or all of them ordered by line (problems
// without a line last, in the order found).
func (col *collector) err() error {
	switch len(col.errs) {
	case 0:
		return nil
	case 1:
		return col.errs[0]
	}
	sort.SliceStable(col.errs, func(i, j int) bool {
		a, b := col.errs[i].Line, col.errs[j].Line
		if a == 0 || b == 0 {
			return a != 0 && b == 0
		}
		return a < b
	})
	return col.errs
}

// tables are the top-level keys of the file and the Go type each decodes
// into (the element type for arrays of tables), read from Config's tags so
// that a section added to Config is known here without a list to update.
func tables() map[string]reflect.Type {
	out := map[string]reflect.Type{"sensors": nil} // sensors: decoded per driver
	t := reflect.TypeFor[Config]()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		out[tag] = ft
	}
	return out
}

// tagsOf lists the toml keys of a struct type.
func tagsOf(t reflect.Type) []string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	var out []string
	for i := 0; i < t.NumField(); i++ {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ","); tag != "" && tag != "-" {
			out = append(out, tag)
		}
	}
	return out
}

// unknownKey words an unknown key, suggesting the nearest known key when
// the difference looks like a typing slip.
func unknownKey(key []string) string {
	var known []string
	tabs := tables()
	if len(key) == 1 {
		for t := range tabs {
			known = append(known, t)
		}
	} else if t, ok := tabs[key[0]]; ok {
		known = tagsOf(t)
	}
	dotted := strings.Join(key, ".")
	if s := nearest(key[len(key)-1], known); s != "" {
		return fmt.Sprintf("unknown key %q: did you mean `%s`?", dotted, s)
	}
	return fmt.Sprintf("unknown key %q (check the spelling against the configuration reference in README)", dotted)
}

// nearest returns the known word within a small edit distance of w (one
// slip for short words, two for longer ones), or "".
func nearest(w string, known []string) string {
	best, bestD := "", 1<<30
	limit := 1
	if len(w) > 4 {
		limit = 2
	}
	sort.Strings(known)
	for _, k := range known {
		if d := editDistance(strings.ToLower(w), k); d <= limit && d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the Damerau-Levenshtein distance (optimal string
// alignment): insertions, deletions, substitutions and swaps of neighbours.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// checkTypes compares each value of a table with the type its key takes and
// words every mismatch for a person (go-toml would name a Go struct field,
// and stop at the first). A key whose value has the wrong type is removed
// from raw, so that decoding goes on and its default applies meanwhile.
// Numbers are refused where a duration or size string belongs: go-toml would
// otherwise read `debounce = 200` as 200 nanoseconds.
func checkTypes(raw map[string]any, target any, prefix string, fail Fail) {
	t, ok := target.(reflect.Type)
	if !ok {
		t = reflect.TypeOf(target)
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct || raw == nil {
		return
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		v, ok := raw[key]
		if !ok || key == "" || key == "-" {
			continue
		}
		if why := typeMismatch(f.Type, v); why != "" {
			fail(prefix+key, "%s", why)
			delete(raw, key)
		}
	}
}

// typeMismatch says why v cannot be a value of type t ("" when it can).
func typeMismatch(t reflect.Type, v any) string {
	_, isStr := v.(string)
	switch {
	case t == reflect.TypeFor[Duration]():
		if !isStr {
			return fmt.Sprintf("must be a duration string with its unit, e.g. \"200ms\" or \"10s\", not %s", tomlValue(v))
		}
	case t == reflect.TypeFor[Size]():
		if !isStr {
			return fmt.Sprintf("must be a size string, e.g. \"256MiB\", not %s", tomlValue(v))
		}
	case reflect.PointerTo(t).Implements(textUnmarshaler):
		if !isStr {
			return fmt.Sprintf("must be a string in quotes, not %s", tomlValue(v))
		}
	}
	if s, ok := v.(string); ok && reflect.PointerTo(t).Implements(textUnmarshaler) {
		if err := reflect.New(t).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			return err.Error()
		}
		return ""
	}
	switch t.Kind() {
	case reflect.String:
		if !isStr {
			return fmt.Sprintf("must be a string in quotes, not %s", tomlValue(v))
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return fmt.Sprintf("must be true or false, not %s", tomlValue(v))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(int64)
		if !ok {
			return fmt.Sprintf("must be a whole number written without quotes or decimals (e.g. 100), not %s", tomlValue(v))
		}
		if t.Kind() < reflect.Uint && reflect.Zero(t).OverflowInt(n) || t.Kind() >= reflect.Uint && (n < 0 || reflect.Zero(t).OverflowUint(uint64(n))) {
			return fmt.Sprintf("%d is far too large for this key", n)
		}
	case reflect.Float32, reflect.Float64:
		switch v.(type) {
		case float64, int64:
		default:
			return fmt.Sprintf("must be a number, not %s", tomlValue(v))
		}
	case reflect.Slice:
		list, ok := v.([]any)
		if !ok {
			if t.Elem().Kind() == reflect.Struct {
				return ""
			}
			return fmt.Sprintf("must be a list in brackets, e.g. [\"a\", \"b\"], not %s", tomlValue(v))
		}
		for j, e := range list {
			if why := typeMismatch(t.Elem(), e); why != "" && t.Elem().Kind() != reflect.Struct {
				return fmt.Sprintf("item %d %s", j+1, why)
			}
		}
	}
	return ""
}

// tomlValue names a value's TOML type and shows it, e.g. "the float 1e+12".
func tomlValue(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", x)
	case int64:
		return fmt.Sprintf("the whole number %d", x)
	case float64:
		return fmt.Sprintf("the decimal number %g", x)
	case bool:
		return fmt.Sprintf("%t", x)
	}
	return tomlType(v)
}

// KeyError is a problem with key found after loading (a directory, a
// file the key names), worded like any other configuration problem: file,
// line and key.
func (c *Config) KeyError(key, format string, args ...any) *ConfigError {
	return &ConfigError{File: c.path, Line: c.pos.line(key), Key: key, Msg: fmt.Sprintf(format, args...)}
}

package recipe

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strings"
)

// The typed configurations below are the schema: checkValue walks a raw
// config against their reflect types (json tags name the keys, a
// `recipe:"required"` tag makes one required), so the keys a connector
// reads and the keys validation accepts cannot drift apart.

// Pattern is DataHub's AllowDenyPattern: a name is kept when it matches one
// of Allow (default: everything) and none of Deny. Like DataHub (Python's
// re.match) a regex is anchored at the start only; IgnoreCase defaults to
// true.
type Pattern struct {
	Allow      []string `json:"allow,omitempty"`
	Deny       []string `json:"deny,omitempty"`
	IgnoreCase *bool    `json:"ignoreCase,omitempty"`
}

func (p *Pattern) check(path string, f *faults) {
	if p == nil {
		return
	}
	for _, l := range []struct {
		name string
		res  []string
	}{{"allow", p.Allow}, {"deny", p.Deny}} {
		for i, re := range l.res {
			if _, err := regexp.Compile(re); err != nil {
				f.add(fmt.Sprintf("%s.%s[%d]", path, l.name, i), "invalid regex: %v", err)
			}
		}
	}
}

func checkURL(path, u string, f *faults) {
	if strings.Contains(u, "${") {
		return // checked on the runner, once resolved
	}
	if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		f.add(path, "must be an http:// or https:// URL")
	}
}

func checkCounts(path string, f *faults, counts map[string]int) {
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		if counts[k] < 0 {
			f.add(path+"."+k, "must not be negative")
		}
	}
}

// checker is a config with rules beyond its types.
type checker interface {
	check(path string, f *faults)
}

type spec struct {
	new func() any
}

func (s spec) configType() reflect.Type { return reflect.TypeOf(s.new()).Elem() }

type registry map[string]spec

func (r registry) names() []string { return slices.Sorted(maps.Keys(r)) }

func (r registry) kind() string {
	switch {
	case r["postgres"].new != nil:
		return "source"
	case r["file"].new != nil:
		return "sink"
	}
	return "transformer"
}

// TransformerTypes lists the supported transformer types.
func TransformerTypes() []string { return transformers.names() }

// SourceTypes lists the supported source types.
func SourceTypes() []string { return sources.names() }

// SinkTypes lists the supported sink types.
func SinkTypes() []string { return sinks.names() }

// DecodeConfig decodes a section's config (normally after its references
// were resolved) into its typed configuration: a source's
// (*PostgresSource, *MySQLSource), a sink's (*FileSink, *ConsoleSink,
// *OutpostSink, *HTTPSink, *DataHubRESTSink) or a transformer's.
func DecodeConfig(s Section) (any, error) {
	sp, ok := sources[s.Type]
	if !ok {
		sp, ok = sinks[s.Type]
	}
	if !ok {
		sp, ok = transformers[s.Type]
	}
	if !ok {
		return nil, fmt.Errorf("%w: unknown type %q", ErrInvalid, s.Type)
	}
	var f faults
	checkValue("config", s.Config, sp.configType(), &f)
	if err := f.err(); err != nil {
		return nil, err
	}
	return decodeInto(s.Config, sp.configType())
}

func decodeInto(cfg map[string]any, t reflect.Type) (any, error) {
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	out := reflect.New(t).Interface()
	if err := json.Unmarshal(raw, out); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return out, nil
}

// fields maps json keys to the fields of struct type t, embedded structs
// flattened.
func fields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := range t.NumField() {
		sf := t.Field(i)
		if sf.Anonymous {
			maps.Copy(out, fields(sf.Type))
			continue
		}
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		out[name] = sf
	}
	return out
}

var patternType = reflect.TypeOf(Pattern{})

// noEffect is the notice of a key accepted without effect.
const noEffect = "accepted, has no effect here"

// Struct tags beside json: `recipe:"required"` makes a key required;
// `recipe:"noeffect"` accepts it with a notice, the reason in `why:"..."`.

// lenient is a config type that, like DataHub's, ignores keys it does not
// know (with a notice) instead of refusing them.
type lenient interface{ lenient() }

var lenientType = reflect.TypeOf((*lenient)(nil)).Elem()

// checkValue reports where v does not fit type t.
func checkValue(path string, v any, t reflect.Type, f *faults) {
	if t.Kind() == reflect.Interface {
		return // any value: a key accepted without effect
	}
	if t.Kind() == reflect.Pointer {
		if v == nil {
			return // DataHub's Optional: null is the default
		}
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			f.add(path, "must be a mapping, not %s", kindOf(v))
			return
		}
		fs := fields(t)
		known := slices.Sorted(maps.Keys(fs))
		for _, k := range slices.Sorted(maps.Keys(m)) {
			sf, ok := fs[k]
			if !ok {
				switch {
				case reflect.PointerTo(t).Implements(lenientType):
					f.notice(join(path, k), "unknown key, ignored (as DataHub ignores it)")
				case len(known) == 0:
					f.add(join(path, k), "unknown key (this section takes no keys)")
				case t == patternType:
					f.add(join(path, k), "unknown pattern key, not supported by this runner (known: %s)", strings.Join(known, ", "))
				default:
					f.add(join(path, k), "unknown key, not supported by this runner (known: %s)", strings.Join(known, ", "))
				}
				continue
			}
			switch sf.Tag.Get("recipe") {
			case "noeffect":
				msg := noEffect
				if why := sf.Tag.Get("why"); why != "" {
					msg += " (" + why + ")"
				}
				f.notice(join(path, k), "%s", msg)
			}
			checkValue(join(path, k), m[k], sf.Type, f)
		}
		for _, k := range known {
			if fs[k].Tag.Get("recipe") == "required" {
				if s, present := m[k]; !present || s == nil || s == "" {
					f.add(join(path, k), "required")
				}
			}
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			f.add(path, "must be a string, not %s", kindOf(v))
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			f.add(path, "must be true or false, not %s", kindOf(v))
		}
	case reflect.Int:
		if _, ok := v.(int64); !ok {
			f.add(path, "must be a whole number, not %s", kindOf(v))
		}
	case reflect.Float64:
		switch x := v.(type) {
		case int64:
		case float64:
			if math.IsNaN(x) || math.IsInf(x, 0) {
				f.add(path, "must be a finite number")
			}
		default:
			f.add(path, "must be a number, not %s", kindOf(v))
		}
	case reflect.Slice:
		list, ok := v.([]any)
		if !ok {
			f.add(path, "must be a list, not %s", kindOf(v))
			return
		}
		for i, e := range list {
			checkValue(fmt.Sprintf("%s[%d]", path, i), e, t.Elem(), f)
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			f.add(path, "must be a mapping, not %s", kindOf(v))
			return
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			checkValue(join(path, k), m[k], t.Elem(), f)
		}
	}
}

// Matcher is a compiled Pattern.
type Matcher struct {
	allow, deny []*regexp.Regexp
}

// Compile compiles p; a nil Pattern allows everything.
func (p *Pattern) Compile() (*Matcher, error) {
	m := &Matcher{}
	if p == nil {
		return m, nil
	}
	prefix := "(?i)"
	if p.IgnoreCase != nil && !*p.IgnoreCase {
		prefix = ""
	}
	for _, l := range []struct {
		res []string
		out *[]*regexp.Regexp
	}{{p.Allow, &m.allow}, {p.Deny, &m.deny}} {
		for _, s := range l.res {
			re, err := regexp.Compile(prefix + "^(?:" + s + ")")
			if err != nil {
				return nil, fmt.Errorf("%w: regex %q: %w", ErrInvalid, s, err)
			}
			*l.out = append(*l.out, re)
		}
	}
	return m, nil
}

// Allowed tells whether name passes the pattern.
func (m *Matcher) Allowed(name string) bool {
	for _, re := range m.deny {
		if re.MatchString(name) {
			return false
		}
	}
	if len(m.allow) == 0 {
		return true
	}
	for _, re := range m.allow {
		if re.MatchString(name) {
			return true
		}
	}
	return false
}

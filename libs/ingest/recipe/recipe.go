// Package recipe parses and validates ingestion recipes in the DataHub shape
// (source {type, config}, optional transformers, sink {type, config},
// pipeline_name), written in YAML or JSON.
//
// It is pure: no secret is resolved and nothing is dialled, so the
// scheduler validates a recipe on submit with the same rules the runner
// applies before it runs one. ${NAME} references stay as written; the
// runner resolves them (see Resolve) and decodes the typed configuration
// afterwards with DecodeConfig.
package recipe

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ErrMalformed is returned (wrapped) for text that is not valid YAML or
// JSON, or whose top level is not a mapping.
var ErrMalformed = errors.New("malformed recipe")

// ErrInvalid is returned (wrapped, through *ValidationError) for a recipe
// that parses but breaks a rule: a missing or unknown key, a wrong type, an
// unknown source or sink type, a bad regex.
var ErrInvalid = errors.New("invalid recipe")

// Format says how recipe text is written.
type Format int

// Formats. FormatAuto takes JSON when the text starts with "{", YAML
// otherwise (YAML is a superset of JSON, but the JSON decoder gives better
// messages for JSON).
const (
	FormatAuto Format = iota
	FormatYAML
	FormatJSON
)

// DefaultSink is the sink of a recipe without one: the records go back to
// the control plane. (DataHub's CLI defaults to datahub-rest, which has no
// meaning without a server address.)
const DefaultSink = "outpost"

// Section is a source, sink or transformer: a type and its raw config, a
// tree of map[string]any, []any, string, bool, int64 and float64.
type Section struct {
	Type   string
	Config map[string]any
}

// Recipe is a validated recipe, its ${NAME} references unresolved.
type Recipe struct {
	PipelineName string
	// RunID is DataHub's run_id: empty when the recipe sets none (the
	// runner then names the run after the job).
	RunID        string
	Source       Section
	Transformers []Section
	Sink         Section
	// Pipeline holds the other top-level keys (datahub_api, flags, ...).
	Pipeline Pipeline
	// Notices name the keys accepted without effect here, each with why;
	// the runner writes them to the job log as warnings.
	Notices []FieldError
	// Order lists the keys of every mapping of the recipe in the order
	// they were written, by path ("transformers[0].config.tag_pattern.rules"):
	// DataHub's pattern rules apply the first that matches.
	Order map[string][]string
	// top holds the top-level keys other than the sections, as written.
	top map[string]any
}

// FieldError is one fault, with the path of the value at fault
// ("source.config.host_port").
type FieldError struct {
	Path    string
	Message string
}

func (e FieldError) Error() string { return e.Path + ": " + e.Message }

// ValidationError lists every fault of a recipe, so a user fixes it in
// one go. It wraps ErrInvalid.
type ValidationError struct {
	Faults []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Faults))
	for i, f := range e.Faults {
		parts[i] = f.Error()
	}
	return "invalid recipe: " + strings.Join(parts, "; ")
}

// Unwrap makes errors.Is(err, ErrInvalid) hold.
func (e *ValidationError) Unwrap() error { return ErrInvalid }

// faults collects FieldErrors, and the notices of keys accepted without
// effect.
type faults struct {
	list    []FieldError
	notices []FieldError
}

func (f *faults) add(path, format string, args ...any) {
	f.list = append(f.list, FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (f *faults) notice(path, format string, args ...any) {
	f.notices = append(f.notices, FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (f *faults) err() error {
	if len(f.list) == 0 {
		return nil
	}
	return &ValidationError{Faults: f.list}
}

// sectionKeys are the top-level keys holding sections; the others are
// checked against Pipeline.
var sectionKeys = []string{"source", "transformers", "sink"}

// Parse decodes and validates a recipe.
func Parse(text []byte, format Format) (*Recipe, error) {
	tree, err := decode(text, format)
	if err != nil {
		return nil, err
	}
	var f faults
	r := &Recipe{Order: keyOrders(text), top: map[string]any{}}
	known := append(slices.Collect(maps.Keys(fields(pipelineType))), sectionKeys...)
	slices.Sort(known)
	for _, k := range slices.Sorted(maps.Keys(tree)) {
		switch {
		case slices.Contains(sectionKeys, k):
		case slices.Contains(known, k):
			r.top[k] = tree[k]
		default:
			f.add(k, "unknown key (known: %s)", strings.Join(known, ", "))
		}
	}
	before := len(f.list)
	checkValue("", r.top, pipelineType, &f)
	if len(f.list) == before {
		if p, err := decodeInto(r.top, pipelineType); err == nil {
			r.Pipeline = *p.(*Pipeline)
		}
	}
	r.PipelineName, r.RunID = r.Pipeline.PipelineName, r.Pipeline.RunID
	if v, ok := tree["source"]; ok {
		r.Source = section("source", v, sources, &f)
	} else {
		f.add("source", "required")
	}
	if v, ok := tree["sink"]; ok {
		r.Sink = section("sink", v, sinks, &f)
	} else {
		r.Sink = Section{Type: DefaultSink, Config: map[string]any{}}
	}
	if v, ok := tree["transformers"]; ok && v != nil {
		list, isList := v.([]any)
		if !isList {
			f.add("transformers", "must be a list, not %s", kindOf(v))
		}
		for i, t := range list {
			r.Transformers = append(r.Transformers, section(fmt.Sprintf("transformers[%d]", i), t, transformers, &f))
		}
	}
	if err := f.err(); err != nil {
		return nil, err
	}
	r.Notices = f.notices
	return r, nil
}

// ParseSource decodes and validates a lone source section ({type, config}),
// the source of an assertion task.
func ParseSource(text []byte, format Format) (Section, error) {
	tree, err := decode(text, format)
	if err != nil {
		return Section{}, err
	}
	var f faults
	s := section("source", tree, sources, &f)
	return s, f.err()
}

// sourceExtras are DataHub's keys of a source section beside type and
// config (SourceConfig): accepted, without effect.
var sourceExtras = []string{"extractor", "extractor_config"}

// section validates {type, config} against the registry of its kind.
func section(path string, v any, reg registry, f *faults) Section {
	m, ok := v.(map[string]any)
	if !ok {
		f.add(path, "must be a mapping with type and config, not %s", kindOf(v))
		return Section{}
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		switch {
		case k == "type" || k == "config":
		case reg.kind() == "source" && slices.Contains(sourceExtras, k):
			f.notice(path+"."+k, noEffect)
		default:
			f.add(path+"."+k, "unknown key (known: type, config)")
		}
	}
	typ, _ := m["type"].(string)
	if typ == "" {
		f.add(path+".type", "required (supported: %s)", strings.Join(reg.names(), ", "))
		return Section{}
	}
	cfg := map[string]any{}
	if raw, ok := m["config"]; ok && raw != nil {
		c, isMap := raw.(map[string]any)
		if !isMap {
			f.add(path+".config", "must be a mapping, not %s", kindOf(raw))
			return Section{Type: typ}
		}
		cfg = c
	}
	spec, ok := reg[typ]
	if !ok {
		if why, refused := refusedTypes[reg.kind()][typ]; refused {
			f.add(path+".type", "%s", why)
		} else {
			f.add(path+".type", "unknown %s type %q (supported: %s)", reg.kind(), typ, strings.Join(reg.names(), ", "))
		}
		return Section{Type: typ, Config: cfg}
	}
	before := len(f.list)
	checkValue(path+".config", cfg, spec.configType(), f)
	if len(f.list) == before {
		// Semantic checks (regexes, ranges) need a well-typed config.
		if c, err := decodeInto(cfg, spec.configType()); err == nil {
			if ch, ok := c.(checker); ok {
				ch.check(path+".config", f)
			}
		}
	}
	return Section{Type: typ, Config: cfg}
}

// Decode turns recipe text into its tree (map[string]any, []any, string,
// bool, int64, float64) without validating it: the command task hands
// recipes to external tools, whose sources this package does not know.
func Decode(text []byte, format Format) (map[string]any, error) { return decode(text, format) }

// Tree is the recipe as a tree again, for re-encoding once resolved.
func (r *Recipe) Tree() map[string]any {
	t := map[string]any{
		"source": map[string]any{"type": r.Source.Type, "config": r.Source.Config},
		"sink":   map[string]any{"type": r.Sink.Type, "config": r.Sink.Config},
	}
	for k, v := range r.top {
		t[k] = v
	}
	if len(r.Transformers) > 0 {
		ts := make([]any, len(r.Transformers))
		for i, s := range r.Transformers {
			ts[i] = map[string]any{"type": s.Type, "config": s.Config}
		}
		t["transformers"] = ts
	}
	return t
}

// MapStrings returns a copy of tree v with fn applied to every string
// value (never to keys), given the path of each ("source.config.password").
// The runner resolves ${NAME} references with it.
func MapStrings(path string, v any, fn func(path, s string) (string, error)) (any, error) {
	switch x := v.(type) {
	case string:
		return fn(path, x)
	case map[string]any:
		out := make(map[string]any, len(x))
		for _, k := range slices.Sorted(maps.Keys(x)) {
			p := k
			if path != "" {
				p = path + "." + k
			}
			n, err := MapStrings(p, x[k], fn)
			if err != nil {
				return nil, err
			}
			out[k] = n
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			n, err := MapStrings(fmt.Sprintf("%s[%d]", path, i), e, fn)
			if err != nil {
				return nil, err
			}
			out[i] = n
		}
		return out, nil
	}
	return v, nil
}

// decode turns text into a tree with string keys only.
func decode(text []byte, format Format) (map[string]any, error) {
	if format == FormatAuto {
		format = FormatYAML
		if t := bytes.TrimSpace(text); len(t) > 0 && t[0] == '{' {
			format = FormatJSON
		}
	}
	if len(bytes.TrimSpace(text)) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrMalformed)
	}
	var raw any
	switch format {
	case FormatJSON:
		dec := json.NewDecoder(bytes.NewReader(text))
		dec.UseNumber()
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("%w: JSON: %w", ErrMalformed, err)
		}
		if dec.More() {
			return nil, fmt.Errorf("%w: JSON: text after the recipe object", ErrMalformed)
		}
	default:
		var doc yaml.Node
		if err := yaml.Unmarshal(text, &doc); err != nil {
			return nil, fmt.Errorf("%w: YAML: %w", ErrMalformed, err)
		}
		timestampsAsText(&doc)
		if err := doc.Decode(&raw); err != nil {
			return nil, fmt.Errorf("%w: YAML: %w", ErrMalformed, err)
		}
	}
	norm, err := normalize(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	m, ok := norm.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: the top level must be a mapping, not %s", ErrMalformed, kindOf(norm))
	}
	return m, nil
}

// timestampsAsText makes every timestamp of a YAML document a string as
// written: "2024-01-01" is text to every section (and to the external tools
// a recipe is handed to), not a time.Time re-encoded another way.
func timestampsAsText(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!timestamp" {
		n.Tag = "!!str"
	}
	for _, c := range n.Content {
		timestampsAsText(c)
	}
}

// normalize makes YAML's and JSON's trees alike: string keys, int64 and
// float64 numbers.
func normalize(v any) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			n, err := normalize(e)
			if err != nil {
				return nil, err
			}
			x[k] = n
		}
		return x, nil
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			ks, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("key %v is not a string", k)
			}
			n, err := normalize(e)
			if err != nil {
				return nil, err
			}
			out[ks] = n
		}
		return out, nil
	case []any:
		for i, e := range x {
			n, err := normalize(e)
			if err != nil {
				return nil, err
			}
			x[i] = n
		}
		return x, nil
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i, nil
		}
		return x.Float64()
	case int:
		return int64(x), nil
	case uint64:
		// Past int64, a number is a float64, as JSON's are.
		if x > math.MaxInt64 {
			return float64(x), nil
		}
		return int64(x), nil
	default:
		return v, nil
	}
}

func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int64, float64:
		return "a number"
	}
	return fmt.Sprintf("%T", v)
}

// keyOrders records the order of the keys of every mapping of a YAML (or
// JSON) text, by path. Aliases are not followed: a mapping reached through
// one keeps its keys sorted.
func keyOrders(text []byte) map[string][]string {
	var doc yaml.Node
	if err := yaml.Unmarshal(text, &doc); err != nil {
		return nil
	}
	out := map[string][]string{}
	var walk func(path string, n *yaml.Node, depth int)
	walk = func(path string, n *yaml.Node, depth int) {
		if depth > maxOrderDepth {
			return
		}
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(path, c, depth+1)
			}
		case yaml.MappingNode:
			var keys []string
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i].Value
				keys = append(keys, k)
				walk(join(path, k), n.Content[i+1], depth+1)
			}
			out[path] = keys
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(fmt.Sprintf("%s[%d]", path, i), c, depth+1)
			}
		}
	}
	walk("", &doc, 0)
	return out
}

// maxOrderDepth bounds keyOrders on deeply nested text.
const maxOrderDepth = 64

// join appends a key to a path.
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// Ordered returns the keys of m in the order they were written at path in
// r, then any others sorted (a key added after parsing, or order unknown).
func Ordered[V any](r *Recipe, path string, m map[string]V) []string {
	var out []string
	seen := map[string]bool{}
	if r != nil {
		for _, k := range r.Order[path] {
			if _, ok := m[k]; ok && !seen[k] {
				out = append(out, k)
				seen[k] = true
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if !seen[k] {
			out = append(out, k)
		}
	}
	return out
}

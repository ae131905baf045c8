// Package transform applies DataHub's dataset transformers, by DataHub's
// names and config shapes, to the aspects of the datasets a source emits:
// each transformer takes the aspect the previous ones left (none when the
// source emits none) and sets it again, in the order of the recipe.
package transform

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/outposthq/outpost/libs/ingest/recipe"
)

// Aspects are a dataset's aspects by name, each a JSON-like tree.
type Aspects map[string]map[string]any

// step is one transformer.
type step func(urn string, a Aspects)

// Chain is the transformers of a recipe, in order.
type Chain struct {
	steps []step
}

// Len is the number of transformers.
func (c *Chain) Len() int {
	if c == nil {
		return 0
	}
	return len(c.steps)
}

// New builds the chain of r's transformers from their sections (resolved
// or not; only their configs are read). now stamps glossaryTerms.
func New(r *recipe.Recipe, sections []recipe.Section, now func() time.Time) (*Chain, error) {
	c := &Chain{}
	for i, s := range sections {
		path := fmt.Sprintf("transformers[%d].config", i)
		cfg, err := recipe.DecodeConfig(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		st, err := build(r, path, cfg, now)
		if err != nil {
			return nil, err
		}
		c.steps = append(c.steps, st)
	}
	return c, nil
}

// Apply runs the chain on a dataset's aspects.
func (c *Chain) Apply(urn string, a Aspects) {
	if c == nil {
		return
	}
	for _, st := range c.steps {
		st(urn, a)
	}
}

func build(r *recipe.Recipe, path string, cfg any, now func() time.Time) (step, error) {
	switch c := cfg.(type) {
	case *recipe.SimpleAddDatasetTags:
		return tags(c.Semantics, func(string) []string { return c.TagURNs }), nil
	case *recipe.PatternAddDatasetTags:
		m, err := compile(r, path+".tag_pattern", c.TagPattern)
		return tags(c.Semantics, m.values), err
	case *recipe.SimpleAddDatasetOwnership:
		return ownership(c.Ownership, func(string) []string { return c.OwnerURNs }), nil
	case *recipe.PatternAddDatasetOwnership:
		m, err := compile(r, path+".owner_pattern", c.OwnerPattern)
		return ownership(c.Ownership, m.values), err
	case *recipe.SimpleRemoveDatasetOwnership:
		return func(_ string, a Aspects) {
			if o, ok := a["ownership"]; ok {
				o["owners"] = []any{}
			}
		}, nil
	case *recipe.SimpleAddDatasetTerms:
		return terms(c.Semantics, now, func(string) []string { return c.TermURNs }), nil
	case *recipe.PatternAddDatasetTerms:
		m, err := compile(r, path+".term_pattern", c.TermPattern)
		return terms(c.Semantics, now, m.values), err
	case *recipe.SetDatasetBrowsePath:
		return browsePaths(c), nil
	case *recipe.SimpleAddDatasetProperties:
		return properties(c), nil
	}
	return nil, fmt.Errorf("%s: %w: %T is not a transformer", path, recipe.ErrInvalid, cfg)
}

// list returns a[aspect][key] as a list, or an empty one.
func list(a Aspects, aspect, key string) []any {
	if m, ok := a[aspect]; ok {
		if l, ok := m[key].([]any); ok {
			return l
		}
	}
	return nil
}

// kept is what an aspect's list keeps of what came before: nothing with
// replace_existing.
func kept(s recipe.Semantics, a Aspects, aspect, key string) []any {
	if s.ReplaceExisting {
		return nil
	}
	return slices.Clone(list(a, aspect, key))
}

func tags(s recipe.Semantics, values func(urn string) []string) step {
	return func(urn string, a Aspects) {
		out := kept(s, a, "globalTags", "tags")
		for _, t := range values(urn) {
			out = append(out, map[string]any{"tag": t})
		}
		a["globalTags"] = map[string]any{"tags": nonNil(out)}
	}
}

func ownership(o recipe.Ownership, values func(urn string) []string) step {
	typ, typeURN := "DATAOWNER", ""
	switch {
	case strings.HasPrefix(o.OwnershipType, "urn:li:"):
		typ, typeURN = "CUSTOM", o.OwnershipType
	case o.OwnershipType != "":
		typ = strings.ToUpper(o.OwnershipType)
	}
	return func(urn string, a Aspects) {
		out := kept(o.Semantics, a, "ownership", "owners")
		for _, u := range values(urn) {
			owner := map[string]any{"owner": u, "type": typ}
			if typeURN != "" {
				owner["typeUrn"] = typeURN
			}
			out = append(out, owner)
		}
		a["ownership"] = map[string]any{"owners": nonNil(out)}
	}
}

func terms(s recipe.Semantics, now func() time.Time, values func(urn string) []string) step {
	return func(urn string, a Aspects) {
		out := kept(s, a, "glossaryTerms", "terms")
		stamp := map[string]any{"time": now().UnixMilli(), "actor": "urn:li:corpuser:restEmitter"}
		if prev, ok := a["glossaryTerms"]["auditStamp"].(map[string]any); ok && !s.ReplaceExisting {
			stamp = prev
		}
		for _, t := range values(urn) {
			out = append(out, map[string]any{"urn": t})
		}
		a["glossaryTerms"] = map[string]any{"terms": nonNil(out), "auditStamp": stamp}
	}
}

func browsePaths(c *recipe.SetDatasetBrowsePath) step {
	return func(urn string, a Aspects) {
		platform, name, env, ok := splitDatasetURN(urn)
		if !ok {
			return
		}
		out := kept(c.Semantics, a, "browsePaths", "paths")
		for _, tpl := range c.PathTemplates {
			p := strings.ReplaceAll(tpl, "PLATFORM", platform)
			p = strings.ReplaceAll(p, "DATASET_PARTS", strings.ReplaceAll(name, ".", "/"))
			out = append(out, strings.ReplaceAll(p, "ENV", strings.ToLower(env)))
		}
		a["browsePaths"] = map[string]any{"paths": nonNil(out)}
	}
}

func properties(c *recipe.SimpleAddDatasetProperties) step {
	return func(_ string, a Aspects) {
		props, ok := a["datasetProperties"]
		if !ok {
			props = map[string]any{}
			a["datasetProperties"] = props
		}
		custom, _ := props["customProperties"].(map[string]any)
		if custom == nil || c.ReplaceExisting {
			custom = map[string]any{}
		}
		for _, k := range slices.Sorted(maps.Keys(c.Properties)) {
			custom[k] = c.Properties[k]
		}
		props["customProperties"] = custom
	}
}

// splitDatasetURN splits urn:li:dataset:(urn:li:dataPlatform:p,name,ENV).
func splitDatasetURN(urn string) (platform, name, env string, ok bool) {
	inner, found := strings.CutPrefix(urn, "urn:li:dataset:(urn:li:dataPlatform:")
	if !found || !strings.HasSuffix(inner, ")") {
		return "", "", "", false
	}
	parts := strings.Split(strings.TrimSuffix(inner, ")"), ",")
	if len(parts) != 3 {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

func nonNil(l []any) []any {
	if l == nil {
		return []any{}
	}
	return l
}

// matcher is a compiled KeyValuePattern.
type matcher struct {
	rules     []*regexp.Regexp
	vals      [][]string
	firstOnly bool
}

func compile(r *recipe.Recipe, path string, p recipe.KeyValuePattern) (*matcher, error) {
	m := &matcher{firstOnly: p.FirstMatchOnly == nil || *p.FirstMatchOnly}
	for _, k := range recipe.Ordered(r, path+".rules", p.Rules) {
		// Python's re.match: anchored at the start only.
		re, err := regexp.Compile("^(?:" + k + ")")
		if err != nil {
			return nil, fmt.Errorf("%s.rules: %w: regex %q: %w", path, recipe.ErrInvalid, k, err)
		}
		m.rules = append(m.rules, re)
		m.vals = append(m.vals, p.Rules[k])
	}
	return m, nil
}

func (m *matcher) values(urn string) []string {
	var out []string
	for i, re := range m.rules {
		if re.MatchString(urn) {
			out = append(out, m.vals[i]...)
			if m.firstOnly {
				break
			}
		}
	}
	return out
}

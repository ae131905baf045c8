package recipe

import (
	"fmt"
	"regexp"
	"strings"
)

// Semantics are DataHub's TransformerSemanticsConfigModel keys. OVERWRITE
// is honoured; PATCH merges with what the DataHub server holds, which this
// runner does not read, so it is refused.
type Semantics struct {
	ReplaceExisting bool   `json:"replace_existing,omitempty"`
	Semantics       string `json:"semantics,omitempty"`
}

func (s *Semantics) check(path string, f *faults) {
	switch upper(s.Semantics) {
	case "", "OVERWRITE":
	case "PATCH":
		f.add(path+".semantics", "PATCH merges with the aspects on the DataHub server, which this runner does not read; use OVERWRITE (the default)")
	default:
		f.add(path+".semantics", "unknown value %q (supported: OVERWRITE, PATCH)", s.Semantics)
	}
}

// KeyValuePattern is DataHub's: rules map a regex, matched against the
// dataset URN from its start, to values; the values of the first rule that
// matches apply (of every rule when first_match_only is false). The rules
// apply in the order written (Recipe.Ordered).
type KeyValuePattern struct {
	Rules          map[string][]string `json:"rules,omitempty"`
	FirstMatchOnly *bool               `json:"first_match_only,omitempty"`
	Alphabet       any                 `json:"alphabet,omitempty" recipe:"noeffect"`
}

func (p *KeyValuePattern) check(path string, f *faults, prefixes ...string) {
	for re, vals := range p.Rules {
		if _, err := regexp.Compile(re); err != nil {
			f.add(fmt.Sprintf("%s.rules.%s", path, re), "invalid regex: %v", err)
		}
		checkURNs(path+".rules."+re, vals, f, prefixes...)
	}
}

func checkURNs(path string, urns []string, f *faults, prefixes ...string) {
	for i, u := range urns {
		ok := false
		for _, p := range prefixes {
			ok = ok || strings.HasPrefix(u, p)
		}
		if !ok {
			f.add(fmt.Sprintf("%s[%d]", path, i), "%q is not a URN starting with %s", u, strings.Join(prefixes, " or "))
		}
	}
}

// URN prefixes the transformers take.
var (
	tagPrefixes   = []string{"urn:li:tag:"}
	termPrefixes  = []string{"urn:li:glossaryTerm:"}
	ownerPrefixes = []string{"urn:li:corpuser:", "urn:li:corpGroup:"}
)

// OwnershipTypes are DataHub's OwnershipType values; an
// "urn:li:ownershipType:..." names a custom one.
var OwnershipTypes = []string{"CUSTOM", "TECHNICAL_OWNER", "BUSINESS_OWNER", "DATA_STEWARD", "NONE",
	"DEVELOPER", "DATAOWNER", "DELEGATE", "PRODUCER", "CONSUMER", "STAKEHOLDER"}

// Ownership holds the keys of the ownership transformers.
type Ownership struct {
	Semantics
	OwnershipType string `json:"ownership_type,omitempty"`
	DefaultActor  any    `json:"default_actor,omitempty" recipe:"noeffect"`
}

func (o *Ownership) check(path string, f *faults) {
	o.Semantics.check(path, f)
	if o.OwnershipType != "" && !strings.HasPrefix(o.OwnershipType, "urn:li:") {
		oneOf(path+".ownership_type", o.OwnershipType, OwnershipTypes, f)
	}
}

// SimpleAddDatasetTags adds tag_urns to every dataset's globalTags.
type SimpleAddDatasetTags struct {
	Semantics
	TagURNs []string `json:"tag_urns" recipe:"required"`
}

func (t *SimpleAddDatasetTags) check(path string, f *faults) {
	t.Semantics.check(path, f)
	checkURNs(path+".tag_urns", t.TagURNs, f, tagPrefixes...)
}

// PatternAddDatasetTags adds the tags of the rules matching a dataset's URN.
type PatternAddDatasetTags struct {
	Semantics
	TagPattern KeyValuePattern `json:"tag_pattern" recipe:"required"`
}

func (t *PatternAddDatasetTags) check(path string, f *faults) {
	t.Semantics.check(path, f)
	t.TagPattern.check(path+".tag_pattern", f, tagPrefixes...)
}

// SimpleAddDatasetOwnership adds owner_urns to every dataset's ownership.
type SimpleAddDatasetOwnership struct {
	Ownership
	OwnerURNs []string `json:"owner_urns" recipe:"required"`
}

func (t *SimpleAddDatasetOwnership) check(path string, f *faults) {
	t.Ownership.check(path, f)
	checkURNs(path+".owner_urns", t.OwnerURNs, f, ownerPrefixes...)
}

// PatternAddDatasetOwnership adds the owners of the rules matching a
// dataset's URN.
type PatternAddDatasetOwnership struct {
	Ownership
	OwnerPattern KeyValuePattern `json:"owner_pattern" recipe:"required"`
}

func (t *PatternAddDatasetOwnership) check(path string, f *faults) {
	t.Ownership.check(path, f)
	t.OwnerPattern.check(path+".owner_pattern", f, ownerPrefixes...)
}

// SimpleRemoveDatasetOwnership clears the owners of the ownership aspect
// emitted so far.
type SimpleRemoveDatasetOwnership struct{}

// SimpleAddDatasetTerms adds term_urns to every dataset's glossaryTerms.
type SimpleAddDatasetTerms struct {
	Semantics
	TermURNs []string `json:"term_urns" recipe:"required"`
}

func (t *SimpleAddDatasetTerms) check(path string, f *faults) {
	t.Semantics.check(path, f)
	checkURNs(path+".term_urns", t.TermURNs, f, termPrefixes...)
}

// PatternAddDatasetTerms adds the terms of the rules matching a dataset's
// URN.
type PatternAddDatasetTerms struct {
	Semantics
	TermPattern KeyValuePattern `json:"term_pattern" recipe:"required"`
}

func (t *PatternAddDatasetTerms) check(path string, f *faults) {
	t.Semantics.check(path, f)
	t.TermPattern.check(path+".term_pattern", f, termPrefixes...)
}

// SetDatasetBrowsePath adds a browse path per template: ENV (lower case),
// PLATFORM and DATASET_PARTS (the dataset name, "/" for ".") are replaced.
type SetDatasetBrowsePath struct {
	Semantics
	PathTemplates []string `json:"path_templates" recipe:"required"`
}

func (t *SetDatasetBrowsePath) check(path string, f *faults) { t.Semantics.check(path, f) }

// SimpleAddDatasetProperties adds properties to every dataset's
// datasetProperties.customProperties.
type SimpleAddDatasetProperties struct {
	Semantics
	Properties map[string]string `json:"properties" recipe:"required"`
}

func (t *SimpleAddDatasetProperties) check(path string, f *faults) { t.Semantics.check(path, f) }

var transformers = registry{
	"simple_add_dataset_tags":         {func() any { return &SimpleAddDatasetTags{} }},
	"pattern_add_dataset_tags":        {func() any { return &PatternAddDatasetTags{} }},
	"simple_add_dataset_ownership":    {func() any { return &SimpleAddDatasetOwnership{} }},
	"pattern_add_dataset_ownership":   {func() any { return &PatternAddDatasetOwnership{} }},
	"simple_remove_dataset_ownership": {func() any { return &SimpleRemoveDatasetOwnership{} }},
	"simple_add_dataset_terms":        {func() any { return &SimpleAddDatasetTerms{} }},
	"pattern_add_dataset_terms":       {func() any { return &PatternAddDatasetTerms{} }},
	"set_dataset_browse_path":         {func() any { return &SetDatasetBrowsePath{} }},
	"simple_add_dataset_properties":   {func() any { return &SimpleAddDatasetProperties{} }},
}

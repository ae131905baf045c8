package api

import (
	"errors"
	"strings"
)

// labelTerm is one term of a label selector: the key must be present and,
// when hasValue, hold value.
type labelTerm struct {
	key, value string
	hasValue   bool
}

// labelSelector is the conjunction of its terms; the empty selector
// matches every job.
type labelSelector []labelTerm

// parseLabelSelector reads the label query parameters: each is key=value
// or key, several separated by commas.
func parseLabelSelector(params []string) (labelSelector, error) {
	var sel labelSelector
	for _, p := range params {
		for term := range strings.SplitSeq(p, ",") {
			k, v, hasValue := strings.Cut(term, "=")
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			if k == "" {
				return nil, errors.New("each term is key=value or key, separated by commas")
			}
			sel = append(sel, labelTerm{key: k, value: v, hasValue: hasValue})
		}
	}
	return sel, nil
}

func (s labelSelector) matches(labels map[string]string) bool {
	for _, t := range s {
		v, ok := labels[t.key]
		if !ok || (t.hasValue && v != t.value) {
			return false
		}
	}
	return true
}

package secrets

import (
	"context"
	"fmt"

	"github.com/outposthq/outpost/libs/ingest/recipe"
)

// ExpandTree resolves the references in every string value of a recipe
// tree (never in keys). An error names the path of the value, never the
// value: "source.config.password: unknown secret \"PG_PASSWORD\"".
func (s *Session) ExpandTree(ctx context.Context, path string, tree any) (any, error) {
	return recipe.MapStrings(path, tree, func(p, v string) (string, error) {
		out, err := s.Expand(ctx, v)
		if err != nil {
			return "", fmt.Errorf("%s: %w", p, err)
		}
		return out, nil
	})
}

// ExpandSection resolves a recipe section's config.
func (s *Session) ExpandSection(ctx context.Context, path string, sec recipe.Section) (recipe.Section, error) {
	cfg, err := s.ExpandTree(ctx, path+".config", sec.Config)
	if err != nil {
		return recipe.Section{}, err
	}
	return recipe.Section{Type: sec.Type, Config: cfg.(map[string]any)}, nil
}

// TreeReferences returns the names referenced in the string values of a
// recipe tree, as ExpandTree would look them up, without resolving any.
func TreeReferences(path string, tree any) ([]string, error) {
	var names []string
	_, err := recipe.MapStrings(path, tree, func(p, v string) (string, error) {
		refs, err := References(v)
		if err != nil {
			return "", fmt.Errorf("%s: %w", p, err)
		}
		names = append(names, refs...)
		return v, nil
	})
	if err != nil {
		return nil, err
	}
	return names, nil
}

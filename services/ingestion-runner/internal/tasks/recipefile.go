package tasks

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"go.yaml.in/yaml/v3"

	"github.com/outposthq/outpost/libs/ingest/recipe"
	ingestv1 "github.com/outposthq/outpost/proto/outpost/ingest/v1"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/secrets"
)

// RecipeFileVar names the environment variable (and the ${NAME} usable in
// arguments) holding the path of a command task's resolved recipe.
const RecipeFileVar = "OUTPOST_RECIPE_FILE"

// writeRecipe resolves the recipe's references and writes it, in its own
// format, to a 0600 file in dir. The recipe is decoded but not validated
// against Outpost's connectors: the external tool may know sources this
// runner does not. Values are resolved in the decoded tree, not in the
// text, so a password with quotes or a colon cannot break the YAML.
func writeRecipe(ctx context.Context, sess *secrets.Session, rt *ingestv1.IngestTask, dir string) (string, error) {
	format := recipe.FormatAuto
	switch rt.GetFormat() {
	case ingestv1.RecipeFormat_RECIPE_FORMAT_JSON:
		format = recipe.FormatJSON
	case ingestv1.RecipeFormat_RECIPE_FORMAT_YAML:
		format = recipe.FormatYAML
	}
	tree, err := recipe.Decode([]byte(rt.GetRecipe()), format)
	if err != nil {
		return "", Permanent(fmt.Errorf("recipe: %w", err))
	}
	resolved, err := sess.ExpandTree(ctx, "", tree)
	if err != nil {
		return "", expandErr("recipe", err)
	}
	var raw []byte
	name := "recipe.yml"
	if format == recipe.FormatJSON || (format == recipe.FormatAuto && isJSON(rt.GetRecipe())) {
		name = "recipe.json"
		raw, err = json.MarshalIndent(resolved, "", "  ")
	} else {
		raw, err = yaml.Marshal(resolved)
	}
	if err != nil {
		return "", fmt.Errorf("encode recipe: %w", err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return "", fmt.Errorf("write recipe file: %w", err)
	}
	return path, nil
}

func isJSON(s string) bool {
	for _, c := range s {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c == '{'
	}
	return false
}

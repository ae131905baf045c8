package jobs

import (
	"errors"
	"strings"

	"github.com/outposthq/outpost/libs/ingest/recipe"
	ingestv1 "github.com/outposthq/outpost/proto/outpost/ingest/v1"
)

// Recipes are validated with the runner's own rules (libs/ingest/recipe:
// structure, known source and sink types, their config keys and types), so
// a recipe the runner would refuse is a 400 on submit rather than a FAILED
// job; the runner checks again before it runs anything. Secrets stay
// unresolved: the package resolves nothing and dials nothing.

// maxFaults bounds the faults quoted in one error message.
const maxFaults = 5

// ValidateRecipe checks the text of an ingest recipe; path is the JSON path
// of the recipe field, to which the first fault's path within the recipe
// is appended (task.ingest.recipe.source.type).
func ValidateRecipe(text string, format ingestv1.RecipeFormat, path string) error {
	_, err := recipe.Parse([]byte(text), libFormat(format))
	return recipeError(err, path)
}

// ValidateSource checks the source section ({type, config}) of an
// assertion task.
func ValidateSource(text string, format ingestv1.RecipeFormat, path string) error {
	_, err := recipe.ParseSource([]byte(text), libFormat(format))
	if err == nil {
		return nil
	}
	// ParseSource names the section "source"; here it is the field itself.
	if ve, ok := errors.AsType[*recipe.ValidationError](err); ok {
		for i, f := range ve.Faults {
			ve.Faults[i].Path = strings.TrimPrefix(strings.TrimPrefix(f.Path, "source"), ".")
		}
	}
	return recipeError(err, path)
}

// ValidateCommandRecipe checks a recipe handed to an external tool: it must
// parse, but its source and sink types are the tool's business.
func ValidateCommandRecipe(text string, format ingestv1.RecipeFormat, path string) error {
	_, err := recipe.Decode([]byte(text), libFormat(format))
	return recipeError(err, path)
}

func libFormat(f ingestv1.RecipeFormat) recipe.Format {
	if f == ingestv1.RecipeFormat_RECIPE_FORMAT_JSON {
		return recipe.FormatJSON
	}
	return recipe.FormatYAML
}

// recipeError turns the package's errors into a *FieldError naming the
// first fault by its full path; the others are quoted in the message, so
// a user fixes them in one go.
func recipeError(err error, path string) error {
	if err == nil {
		return nil
	}
	ve, ok := errors.AsType[*recipe.ValidationError](err)
	if !ok || len(ve.Faults) == 0 {
		return fieldErr(path, "%s", err.Error())
	}
	first := ve.Faults[0]
	msg := first.Message
	if n := len(ve.Faults) - 1; n > 0 {
		var more []string
		for _, f := range ve.Faults[1:min(len(ve.Faults), maxFaults+1)] {
			more = append(more, join(path, f.Path)+": "+f.Message)
		}
		msg += " (also " + strings.Join(more, "; ")
		if n > maxFaults {
			msg += "; ..."
		}
		msg += ")"
	}
	return fieldErr(join(path, first.Path), "%s", msg)
}

func join(path, key string) string {
	if key == "" {
		return path
	}
	if strings.HasPrefix(key, "[") {
		return path + key
	}
	return path + "." + key
}

package jobs

import (
	"fmt"
	"strings"
	"time"

	ingestv1 "github.com/outposthq/outpost/proto/outpost/ingest/v1"
)

// Bounds of ingest and assertion tasks.
const (
	// MaxRecipeBytes bounds a recipe's text: it travels in the job record
	// and in every JobDispatched, both under the broker's 1 MiB message
	// limit with the rest of the spec.
	MaxRecipeBytes = 256 << 10
	maxChecks      = 256
	maxCheckName   = 256
	maxQueryBytes  = 64 << 10
)

// Recipe formats as the API and the record write them.
const (
	FormatYAML = "yaml"
	FormatJSON = "json"
)

// IngestTask runs a metadata ingestion recipe (the DataHub recipe shape)
// on the runner. The recipe is kept as written, with its ${NAME}
// references unresolved.
type IngestTask struct {
	Recipe string `json:"recipe"`
	// Format is "yaml" (the default; it reads JSON too) or "json".
	Format string `json:"format,omitempty"`
}

// AssertionTask runs data-quality checks against a source written in the
// recipe shape's source section ({type, config}).
type AssertionTask struct {
	Source string  `json:"source"`
	Format string  `json:"format,omitempty"`
	Checks []Check `json:"checks"`
}

// Check is one assertion: a name and exactly one kind.
type Check struct {
	Name      string          `json:"name"`
	RowCount  *RowCountCheck  `json:"row_count,omitempty"`
	Freshness *FreshnessCheck `json:"freshness,omitempty"`
	SQL       *SQLCheck       `json:"sql,omitempty"`
	Column    *ColumnCheck    `json:"column,omitempty"`
}

// RowCountCheck passes when the table's row count is within [Min, Max].
type RowCountCheck struct {
	Table string `json:"table"`
	Min   *int64 `json:"min,omitempty"`
	Max   *int64 `json:"max,omitempty"`
}

// FreshnessCheck passes when the newest value of Column is younger than
// MaxAge (a Go duration string).
type FreshnessCheck struct {
	Table  string `json:"table"`
	Column string `json:"column"`
	MaxAge string `json:"max_age"`
}

// SQLCheck passes when Query returns true (one boolean cell) or no rows.
type SQLCheck struct {
	Query string `json:"query"`
}

// ColumnCheck passes when Column has no NULLs (NotNull) and/or no
// duplicates (Unique).
type ColumnCheck struct {
	Table   string `json:"table"`
	Column  string `json:"column"`
	NotNull bool   `json:"not_null,omitempty"`
	Unique  bool   `json:"unique,omitempty"`
}

// ParseFormat reads a recipe format name; "" is YAML.
func ParseFormat(s string) (ingestv1.RecipeFormat, bool) {
	switch strings.ToLower(s) {
	case "", FormatYAML, "yml":
		return ingestv1.RecipeFormat_RECIPE_FORMAT_YAML, true
	case FormatJSON:
		return ingestv1.RecipeFormat_RECIPE_FORMAT_JSON, true
	}
	return ingestv1.RecipeFormat_RECIPE_FORMAT_UNSPECIFIED, false
}

func formatName(f ingestv1.RecipeFormat) string {
	if f == ingestv1.RecipeFormat_RECIPE_FORMAT_JSON {
		return FormatJSON
	}
	return FormatYAML
}

// Proto converts t; the format must have been checked with ParseFormat.
func (t *IngestTask) Proto() *ingestv1.IngestTask {
	if t == nil {
		return nil
	}
	f, _ := ParseFormat(t.Format)
	return &ingestv1.IngestTask{Recipe: t.Recipe, Format: f}
}

func ingestFromProto(t *ingestv1.IngestTask) *IngestTask {
	if t == nil {
		return nil
	}
	return &IngestTask{Recipe: t.GetRecipe(), Format: formatName(t.GetFormat())}
}

// Proto converts t; the format must have been checked with ParseFormat.
func (t *AssertionTask) Proto() *ingestv1.AssertionTask {
	if t == nil {
		return nil
	}
	f, _ := ParseFormat(t.Format)
	out := &ingestv1.AssertionTask{Source: t.Source, Format: f}
	for _, c := range t.Checks {
		pc := &ingestv1.Check{Name: c.Name}
		switch {
		case c.RowCount != nil:
			pc.Kind = &ingestv1.Check_RowCount{RowCount: &ingestv1.RowCountCheck{Table: c.RowCount.Table, Min: c.RowCount.Min, Max: c.RowCount.Max}}
		case c.Freshness != nil:
			pc.Kind = &ingestv1.Check_Freshness{Freshness: &ingestv1.FreshnessCheck{Table: c.Freshness.Table, Column: c.Freshness.Column, MaxAge: c.Freshness.MaxAge}}
		case c.SQL != nil:
			pc.Kind = &ingestv1.Check_Sql{Sql: &ingestv1.SQLCheck{Query: c.SQL.Query}}
		case c.Column != nil:
			pc.Kind = &ingestv1.Check_Column{Column: &ingestv1.ColumnCheck{Table: c.Column.Table, Column: c.Column.Column, NotNull: c.Column.NotNull, Unique: c.Column.Unique}}
		}
		out.Checks = append(out.Checks, pc)
	}
	return out
}

func assertionFromProto(t *ingestv1.AssertionTask) *AssertionTask {
	if t == nil {
		return nil
	}
	out := &AssertionTask{Source: t.GetSource(), Format: formatName(t.GetFormat()), Checks: []Check{}}
	for _, pc := range t.GetChecks() {
		c := Check{Name: pc.GetName()}
		switch k := pc.GetKind().(type) {
		case *ingestv1.Check_RowCount:
			c.RowCount = &RowCountCheck{Table: k.RowCount.GetTable(), Min: k.RowCount.Min, Max: k.RowCount.Max}
		case *ingestv1.Check_Freshness:
			c.Freshness = &FreshnessCheck{Table: k.Freshness.GetTable(), Column: k.Freshness.GetColumn(), MaxAge: k.Freshness.GetMaxAge()}
		case *ingestv1.Check_Sql:
			c.SQL = &SQLCheck{Query: k.Sql.GetQuery()}
		case *ingestv1.Check_Column:
			c.Column = &ColumnCheck{Table: k.Column.GetTable(), Column: k.Column.GetColumn(), NotNull: k.Column.GetNotNull(), Unique: k.Column.GetUnique()}
		}
		out.Checks = append(out.Checks, c)
	}
	return out
}

// checkIngest validates an ingest task (or, with command set, a
// command's recipe, for a tool of its own) at path.
func checkIngest(t *ingestv1.IngestTask, path string, command bool) error {
	if t == nil || strings.TrimSpace(t.Recipe) == "" {
		return fieldErr(path+".recipe", "is required")
	}
	if len(t.Recipe) > MaxRecipeBytes {
		return fieldErr(path+".recipe", "must be at most %d bytes", MaxRecipeBytes)
	}
	if t.Format == ingestv1.RecipeFormat_RECIPE_FORMAT_UNSPECIFIED {
		t.Format = ingestv1.RecipeFormat_RECIPE_FORMAT_YAML
	}
	if _, ok := ingestv1.RecipeFormat_name[int32(t.Format)]; !ok {
		return fieldErr(path+".format", "must be yaml or json")
	}
	if command {
		return ValidateCommandRecipe(t.Recipe, t.Format, path+".recipe")
	}
	return ValidateRecipe(t.Recipe, t.Format, path+".recipe")
}

// checkAssertion validates an assertion task.
func checkAssertion(t *ingestv1.AssertionTask) error {
	const path = "task.assertion"
	if t == nil || strings.TrimSpace(t.Source) == "" {
		return fieldErr(path+".source", "is required")
	}
	if len(t.Source) > MaxRecipeBytes {
		return fieldErr(path+".source", "must be at most %d bytes", MaxRecipeBytes)
	}
	if t.Format == ingestv1.RecipeFormat_RECIPE_FORMAT_UNSPECIFIED {
		t.Format = ingestv1.RecipeFormat_RECIPE_FORMAT_YAML
	}
	if _, ok := ingestv1.RecipeFormat_name[int32(t.Format)]; !ok {
		return fieldErr(path+".format", "must be yaml or json")
	}
	if err := ValidateSource(t.Source, t.Format, path+".source"); err != nil {
		return err
	}
	switch {
	case len(t.Checks) == 0:
		return fieldErr(path+".checks", "at least one check is required")
	case len(t.Checks) > maxChecks:
		return fieldErr(path+".checks", "must have at most %d entries", maxChecks)
	}
	names := map[string]int{}
	for i, c := range t.Checks {
		p := fmt.Sprintf("%s.checks[%d]", path, i)
		switch {
		case c == nil || strings.TrimSpace(c.Name) == "":
			return fieldErr(p+".name", "is required")
		case len(c.Name) > maxCheckName:
			return fieldErr(p+".name", "must be at most %d bytes", maxCheckName)
		}
		if j, dup := names[c.Name]; dup {
			return fieldErr(p+".name", "%q is also the name of checks[%d]: results are reported by name", c.Name, j)
		}
		names[c.Name] = i
		if err := checkCheck(c, p); err != nil {
			return err
		}
	}
	return nil
}

func checkCheck(c *ingestv1.Check, p string) error {
	switch k := c.GetKind().(type) {
	case *ingestv1.Check_RowCount:
		r := k.RowCount
		switch {
		case r.GetTable() == "":
			return fieldErr(p+".row_count.table", "is required")
		case r.Min == nil && r.Max == nil:
			return fieldErr(p+".row_count", "min, max or both are required")
		case r.Min != nil && *r.Min < 0:
			return fieldErr(p+".row_count.min", "must not be negative")
		case r.Min != nil && r.Max != nil && *r.Max < *r.Min:
			return fieldErr(p+".row_count.max", "must be at least min (%d)", *r.Min)
		}
	case *ingestv1.Check_Freshness:
		f := k.Freshness
		switch {
		case f.GetTable() == "":
			return fieldErr(p+".freshness.table", "is required")
		case f.GetColumn() == "":
			return fieldErr(p+".freshness.column", "is required")
		}
		if d, err := time.ParseDuration(f.GetMaxAge()); err != nil || d <= 0 {
			return fieldErr(p+".freshness.max_age", "must be a positive duration such as \"24h\"")
		}
	case *ingestv1.Check_Sql:
		q := k.Sql.GetQuery()
		switch {
		case strings.TrimSpace(q) == "":
			return fieldErr(p+".sql.query", "is required")
		case len(q) > maxQueryBytes:
			return fieldErr(p+".sql.query", "must be at most %d bytes", maxQueryBytes)
		}
	case *ingestv1.Check_Column:
		col := k.Column
		switch {
		case col.GetTable() == "":
			return fieldErr(p+".column.table", "is required")
		case col.GetColumn() == "":
			return fieldErr(p+".column.column", "is required")
		case !col.GetNotNull() && !col.GetUnique():
			return fieldErr(p+".column", "not_null, unique or both must be true")
		}
	default:
		return fieldErr(p, "exactly one of row_count, freshness, sql, column is required")
	}
	return nil
}

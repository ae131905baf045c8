package ingest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/outposthq/outpost/libs/ingest/recipe"
)

// Defaults of DataHub's profiling keys.
const (
	defaultSampleValues   = 20
	expensiveOffMaxFields = 10
	bytesPerGB            = 1 << 30
	// maxSampleValue bounds one sample value, in characters, so that a
	// table of long texts keeps its record within a broker message.
	maxSampleValue            = 200
	profileAlias, medianAlias = "s", "s2"
)

// profileQuerier runs the profile's statements: one row of text values
// (nil for NULL), or up to max rows. A statement stopped by the time
// budget returns errBudget.
type profileQuerier interface {
	row(ctx context.Context, q string, deadline time.Time, args ...any) ([]*string, error)
	rows(ctx context.Context, q string, deadline time.Time, max int, args ...any) ([][]*string, error)
}

// errBudget marks a statement stopped because the time budget was spent.
var errBudget = errors.New("profiling time budget spent")

// profileDialect is how a server spells what the profile needs.
type profileDialect struct {
	quote func(string) string
	// text casts an expression to text; the identity where the driver
	// reads every value as text anyway.
	text func(string) string
	// numeric tells whether a native type gets min, max, mean, median
	// and stddev.
	numeric func(nativeType string) bool
	// distinct is the expression COUNT(DISTINCT ...) counts.
	distinct func(col string, numeric bool) string
	// median of a column over src (aliased medianAlias).
	median func(col, src string) string
	// limit is a LIMIT/OFFSET clause for limit (nil: none) and offset.
	limit func(limit, offset *int) string
	// estimates reads the server's row count and size estimates.
	estimates string
}

// profiler computes DataHub's datasetProfile of each table of a run.
type profiler struct {
	cfg      recipe.Profiling
	pattern  *recipe.Matcher
	dialect  profileDialect
	deadline time.Time // zero: no time budget
	em       Emitter
	skipped  int // tables not profiled once the budget was spent
}

func newProfiler(c *recipe.SQLSource, d profileDialect, now time.Time, em Emitter) (*profiler, error) {
	p := c.Profiling
	if !p.Enabled {
		return nil, nil
	}
	if o := p.OperationConfig; o != nil && o.LowerFreqProfileEnabled {
		weekday := (int(now.Weekday()) + 6) % 7 // Monday is 0, as Python's
		if (o.ProfileDayOfWeek != nil && *o.ProfileDayOfWeek != weekday) ||
			(o.ProfileDateOfMonth != nil && *o.ProfileDateOfMonth != now.Day()) {
			em.Note("profiling: not today (profiling.operation_config)")
			return nil, nil
		}
	}
	m, err := c.ProfilePattern.Compile()
	if err != nil {
		return nil, err
	}
	pr := &profiler{cfg: p, pattern: m, dialect: d, em: em}
	if p.TimeBudgetSec != nil {
		// The budget runs on the real clock, whatever the schedule's is.
		pr.deadline = time.Now().Add(time.Duration(*p.TimeBudgetSec) * time.Second)
	}
	return pr, nil
}

func on(v *bool, def bool) bool {
	if v == nil {
		return def
	}
	return *v
}

func (p *profiler) dropped(format string, args ...any) {
	if p.cfg.ReportDropped {
		p.em.Note("profiling: " + fmt.Sprintf(format, args...))
	}
}

// done reports the tables the time budget left out.
func (p *profiler) done() {
	if p != nil && p.skipped > 0 {
		p.em.Warn(fmt.Sprintf("profiling: time budget of %ds spent; %d tables not profiled", *p.cfg.TimeBudgetSec, p.skipped))
	}
}

// profile sets t.Profile, or leaves it nil with the reason logged. Only
// a cancelled run is an error.
func (p *profiler) profile(ctx context.Context, q profileQuerier, t *Table, fullName string, estimateArgs ...any) error {
	if !p.pattern.Allowed(fullName) {
		p.dropped("%s not profiled: profile_pattern", fullName)
		return nil
	}
	if !p.deadline.IsZero() && !time.Now().Before(p.deadline) {
		p.skipped++
		return nil
	}
	table := p.tableRef(t)
	var estRows, estBytes *int64
	if p.cfg.TableRowLimit != nil || p.cfg.TableSizeLimit != nil || p.cfg.RowCountEstimateOnly {
		vals, err := q.row(ctx, p.dialect.estimates, p.deadline, estimateArgs...)
		if err != nil {
			return p.failed(ctx, fullName, err)
		}
		estRows, estBytes = parseInt(vals[0]), parseInt(vals[1])
		if estRows != nil && *estRows < 0 {
			estRows = nil // never analyzed
		}
		if l := p.cfg.TableRowLimit; l != nil && estRows != nil && *estRows > int64(*l) {
			p.dropped("%s not profiled: about %d rows, over profile_table_row_limit %d", fullName, *estRows, *l)
			return nil
		}
		if l := p.cfg.TableSizeLimit; l != nil && estBytes != nil && *estBytes > int64(*l)*bytesPerGB {
			p.dropped("%s not profiled: %d bytes, over profile_table_size_limit %d GB", fullName, *estBytes, *l)
			return nil
		}
	}
	cols := p.columns(t, fullName)
	src := table
	limited := p.cfg.Limit != nil || p.cfg.Offset != nil
	if limited {
		src = "(SELECT * FROM " + table + p.dialect.limit(p.cfg.Limit, p.cfg.Offset) + ")"
	}
	d := p.dialect
	sel := []string{d.text("COUNT(*)")}
	if limited {
		sel = append(sel, d.text("(SELECT COUNT(*) FROM "+table+")"))
	}
	for _, c := range cols {
		qc := d.quote(c.Name)
		num := d.numeric(c.Type)
		sel = append(sel, d.text("COUNT("+qc+")"), d.text("COUNT(DISTINCT "+d.distinct(qc, num)+")"))
		if num {
			sel = append(sel, d.text("MIN("+qc+")"), d.text("MAX("+qc+")"), d.text("AVG("+qc+")"),
				d.text("STDDEV_SAMP("+qc+")"), d.text(d.median(qc, src+" "+medianAlias)))
		}
	}
	vals, err := q.row(ctx, "SELECT "+strings.Join(sel, ", ")+" FROM "+src+" "+profileAlias, p.deadline)
	if err != nil {
		return p.failed(ctx, fullName, err)
	}
	n := *parseInt(vals[0])
	prof := &Profile{RowCount: n}
	i := 1
	if limited {
		prof.RowCount = *parseInt(vals[1])
		i++
	}
	if p.cfg.RowCountEstimateOnly && estRows != nil {
		prof.RowCount = *estRows
	}
	for _, c := range cols {
		nonNull, unique := *parseInt(vals[i]), *parseInt(vals[i+1])
		i += 2
		fp := FieldProfile{Path: c.Name}
		if on(p.cfg.NullCount, true) {
			nulls := n - nonNull
			fp.NullCount = &nulls
			if n > 0 {
				prop := float64(nulls) / float64(n)
				fp.NullProportion = &prop
			}
		}
		if on(p.cfg.DistinctCount, true) {
			fp.UniqueCount = &unique
			if nonNull > 0 {
				prop := float64(unique) / float64(nonNull)
				fp.UniqueProp = &prop
			}
		}
		if d.numeric(c.Type) {
			fp.Min = pick(p.cfg.MinValue, vals[i], false)
			fp.Max = pick(p.cfg.MaxValue, vals[i+1], false)
			fp.Mean = pick(p.cfg.MeanValue, vals[i+2], true)
			fp.Stdev = pick(p.cfg.StddevValue, vals[i+3], true)
			fp.Median = pick(p.cfg.MedianValue, vals[i+4], true)
			i += 5
		}
		prof.Fields = append(prof.Fields, fp)
	}
	if len(cols) > 0 && on(p.cfg.SampleValues, !p.cfg.TurnOffExpensive) {
		if err := p.samples(ctx, q, prof, cols, src); err != nil {
			return p.failed(ctx, fullName, err)
		}
	}
	t.Profile = prof
	return nil
}

func (p *profiler) tableRef(t *Table) string {
	if t.Schema != "" {
		return p.dialect.quote(t.Schema) + "." + p.dialect.quote(t.Name)
	}
	return p.dialect.quote(t.Database) + "." + p.dialect.quote(t.Name)
}

// columns are the columns profiled: none at table level only; else those
// profile_pattern allows (db[.schema].table.column), at most
// max_number_of_fields_to_profile of them.
func (p *profiler) columns(t *Table, fullName string) []Column {
	if p.cfg.ProfileTableLevelOnly {
		return nil
	}
	max := -1
	if p.cfg.MaxFields != nil {
		max = *p.cfg.MaxFields
	} else if p.cfg.TurnOffExpensive {
		max = expensiveOffMaxFields
	}
	var out []Column
	for _, c := range t.Columns {
		switch {
		case !p.pattern.Allowed(fullName + "." + c.Name):
			p.dropped("%s.%s not profiled: profile_pattern", fullName, c.Name)
		case max >= 0 && len(out) >= max:
			p.dropped("%s.%s not profiled: max_number_of_fields_to_profile %d", fullName, c.Name, max)
		default:
			out = append(out, c)
		}
	}
	return out
}

// samples reads up to field_sample_values_limit rows and keeps each
// column's values that are not NULL.
func (p *profiler) samples(ctx context.Context, q profileQuerier, prof *Profile, cols []Column, src string) error {
	limit := defaultSampleValues
	if p.cfg.FieldSampleValuesLimit != nil {
		limit = *p.cfg.FieldSampleValuesLimit
	}
	sel := make([]string, len(cols))
	for i, c := range cols {
		sel[i] = p.dialect.text(p.dialect.quote(c.Name))
	}
	rows, err := q.rows(ctx, "SELECT "+strings.Join(sel, ", ")+" FROM "+src+" "+profileAlias+p.dialect.limit(&limit, nil), p.deadline, limit)
	if err != nil {
		return err
	}
	for i := range prof.Fields {
		prof.Fields[i].SampleValues = []string{}
		for _, r := range rows {
			if r[i] != nil {
				prof.Fields[i].SampleValues = append(prof.Fields[i].SampleValues, truncate(*r[i], maxSampleValue))
			}
		}
	}
	return nil
}

// failed turns a failed profile into a warning; a cancelled run stays an
// error.
func (p *profiler) failed(ctx context.Context, fullName string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, errBudget) {
		p.skipped++
		return nil
	}
	p.em.Warn(fmt.Sprintf("profile of %s not read: %v", fullName, err))
	return nil
}

// pick keeps a value when its include_field_ switch is on; numbers
// computed in floating point are written in their shortest form.
func pick(include *bool, v *string, float bool) *string {
	if !on(include, true) || v == nil {
		return nil
	}
	if !float {
		return v
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(*v), 64)
	if err != nil {
		return v
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if a := abs(f); a != 0 && (a >= 1e21 || a < 1e-6) {
		s = strconv.FormatFloat(f, 'g', -1, 64)
	}
	return &s
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

func parseInt(v *string) *int64 {
	if v == nil {
		return nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(*v), 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(strings.TrimSpace(*v), 64)
		if ferr != nil {
			return nil
		}
		n = int64(f)
	}
	return &n
}

// truncate keeps the first n characters of s.
func truncate(s string, n int) string {
	for i := range s {
		if n == 0 {
			return s[:i]
		}
		n--
	}
	return s
}

package ingest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/outposthq/outpost/libs/ingest/recipe"
	"github.com/outposthq/outpost/libs/queue"
	ingestv1 "github.com/outposthq/outpost/proto/outpost/ingest/v1"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/secrets"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/tasks"
)

// ErrChecksFailed is returned when at least one check found the data
// wrong. The data will not change by retrying at once, so it is permanent;
// the error names the failed checks.
var ErrChecksFailed = errors.New("checks failed")

// ErrChecksErrored is returned when no check failed but some could not run
// (the database unreachable, a query refused). It is retryable.
var ErrChecksErrored = errors.New("checks could not run")

// ErrInvalidCheck is returned (wrapped, permanent) for a check that cannot
// be run as written: no kind, no table, a bad max_age, min above max.
var ErrInvalidCheck = errors.New("invalid check")

// sqlCheckRows is how many rows of a custom query are read: enough to tell
// one row from several.
const sqlCheckRows = 2

// maxRowText bounds the first row a failed custom query shows.
const maxRowText = 200

// Assertion runs the `assertion` task kind: data-quality checks against a
// source, reported as JobRecords.checks.
type Assertion struct {
	Resolver  *secrets.Resolver
	Publisher Publisher
	Subjects  queue.Subjects
}

// Run implements tasks.Task.
func (a *Assertion) Run(ctx context.Context, in tasks.Input, out tasks.Output) tasks.Result {
	spec := in.Spec.GetTask().GetAssertion()
	if spec == nil {
		return tasks.Result{Err: tasks.Permanent(fmt.Errorf("%w: no assertion task", tasks.ErrInvalidTask))}
	}
	if a.Publisher == nil {
		return tasks.Result{Err: tasks.Permanent(fmt.Errorf("%w: assertions are not available on this runner", tasks.ErrInvalidTask))}
	}
	checks := spec.GetChecks()
	if len(checks) == 0 {
		return tasks.Result{Err: tasks.Permanent(fmt.Errorf("%w: the assertion has no checks", ErrInvalidCheck))}
	}
	for i, c := range checks {
		if err := validateCheck(c); err != nil {
			err = fmt.Errorf("check %q: %w", checkName(i, c), err)
			out.Log(err.Error())
			return tasks.Result{Err: tasks.Permanent(err)}
		}
	}
	sec, err := recipe.ParseSource([]byte(spec.GetSource()), Format(spec.GetFormat()))
	if err != nil {
		out.Log(err.Error())
		return tasks.Result{Err: tasks.Permanent(err)}
	}
	sess := a.Resolver.NewSession()
	src, err := sess.ExpandSection(ctx, "source", sec)
	out.Mask(sess.Values()...)
	if err != nil {
		return tasks.Result{Err: ResolveErr(err)}
	}
	MaskSensitive(out, src.Config)
	if err := sameAddress(sec, src); err != nil {
		return tasks.Result{Err: tasks.Permanent(fmt.Errorf("source: %w", err))}
	}
	out.Log(fmt.Sprintf("assertion: %d checks against source %s", len(checks), src.Type))

	results := make([]*ingestv1.CheckResult, len(checks))
	conn, cerr := connectChecks(ctx, src)
	for i, c := range checks {
		if cerr != nil {
			results[i] = &ingestv1.CheckResult{Name: checkName(i, c), Outcome: ingestv1.CheckOutcome_CHECK_OUTCOME_ERROR, Message: cerr.Error()}
		} else {
			results[i] = runCheck(ctx, conn, i, c)
		}
		r := results[i]
		line := fmt.Sprintf("check %s: %s", r.GetName(), strings.TrimPrefix(r.GetOutcome().String(), "CHECK_OUTCOME_"))
		if r.GetObserved() != "" {
			line += " (observed " + r.GetObserved() + ")"
		}
		if r.GetMessage() != "" {
			line += ": " + r.GetMessage()
		}
		out.Log(line)
	}
	if conn != nil {
		conn.close(ctx)
	}
	if err := PublishChecks(ctx, a.Publisher, a.Subjects, in.Tenant, in.JobID, in.Attempt, in.AttemptToken, results); err != nil {
		return tasks.Result{Err: fmt.Errorf("publish check results: %w", err), ExitCode: 1}
	}
	res := summarize(results, cerr, out)
	res.RecordBatches = 1 // the checks, published above
	return res
}

// summarize turns the results into the attempt's outcome and log line.
func summarize(results []*ingestv1.CheckResult, connErr error, out tasks.Output) tasks.Result {
	var passed, failed, errored []string
	for _, r := range results {
		switch r.GetOutcome() {
		case ingestv1.CheckOutcome_CHECK_OUTCOME_PASS:
			passed = append(passed, r.GetName())
		case ingestv1.CheckOutcome_CHECK_OUTCOME_FAIL:
			failed = append(failed, r.GetName())
		default:
			errored = append(errored, r.GetName())
		}
	}
	out.Log(fmt.Sprintf("summary: %d checks, %d passed, %d failed, %d errors", len(results), len(passed), len(failed), len(errored)))
	res := tasks.Result{Outputs: map[string]string{
		"checks": strconv.Itoa(len(results)),
		"passed": strconv.Itoa(len(passed)),
		"failed": strconv.Itoa(len(failed)),
		"errors": strconv.Itoa(len(errored)),
	}}
	switch {
	case len(failed) > 0:
		err := fmt.Errorf("%w: %s", ErrChecksFailed, strings.Join(failed, ", "))
		if len(errored) > 0 {
			err = fmt.Errorf("%w; errors: %s", err, strings.Join(errored, ", "))
		}
		res.Err, res.ExitCode = tasks.Permanent(err), 1
	case connErr != nil:
		err := fmt.Errorf("%w: %w", ErrChecksErrored, connErr)
		if errors.Is(connErr, ErrAuth) || errors.Is(connErr, ErrSourceConfig) || errors.Is(connErr, recipe.ErrInvalid) {
			err = tasks.Permanent(err)
		}
		res.Err, res.ExitCode = err, 1
	case len(errored) > 0:
		res.Err, res.ExitCode = fmt.Errorf("%w: %s", ErrChecksErrored, strings.Join(errored, ", ")), 1
	}
	return res
}

// checkName is the check's name, or its position and kind when unnamed.
func checkName(i int, c *ingestv1.Check) string {
	if c.GetName() != "" {
		return c.GetName()
	}
	kind := "check"
	if fd := c.ProtoReflect().WhichOneof(c.ProtoReflect().Descriptor().Oneofs().ByName("kind")); fd != nil {
		kind = string(fd.Name())
	}
	return fmt.Sprintf("#%d %s", i+1, kind)
}

// validateCheck refuses what no run can fix, before connecting.
func validateCheck(c *ingestv1.Check) error {
	switch k := c.GetKind().(type) {
	case *ingestv1.Check_RowCount:
		rc := k.RowCount
		if rc.GetTable() == "" {
			return fmt.Errorf("%w: row_count.table is required", ErrInvalidCheck)
		}
		if rc.Min != nil && rc.Max != nil && rc.GetMin() > rc.GetMax() {
			return fmt.Errorf("%w: row_count.min %d is above max %d", ErrInvalidCheck, rc.GetMin(), rc.GetMax())
		}
	case *ingestv1.Check_Freshness:
		f := k.Freshness
		if f.GetTable() == "" || f.GetColumn() == "" {
			return fmt.Errorf("%w: freshness.table and freshness.column are required", ErrInvalidCheck)
		}
		if d, err := time.ParseDuration(f.GetMaxAge()); err != nil || d <= 0 {
			return fmt.Errorf("%w: freshness.max_age %q must be a positive duration such as 24h", ErrInvalidCheck, f.GetMaxAge())
		}
	case *ingestv1.Check_Sql:
		if strings.TrimSpace(k.Sql.GetQuery()) == "" {
			return fmt.Errorf("%w: sql.query is required", ErrInvalidCheck)
		}
	case *ingestv1.Check_Column:
		col := k.Column
		if col.GetTable() == "" || col.GetColumn() == "" {
			return fmt.Errorf("%w: column.table and column.column are required", ErrInvalidCheck)
		}
		if !col.GetNotNull() && !col.GetUnique() {
			return fmt.Errorf("%w: column needs not_null or unique", ErrInvalidCheck)
		}
	default:
		return fmt.Errorf("%w: no check kind set", ErrInvalidCheck)
	}
	return nil
}

// runCheck runs one validated check.
func runCheck(ctx context.Context, conn checkConn, i int, c *ingestv1.Check) *ingestv1.CheckResult {
	r := &ingestv1.CheckResult{Name: checkName(i, c)}
	var err error
	switch k := c.GetKind().(type) {
	case *ingestv1.Check_RowCount:
		err = rowCount(ctx, conn, k.RowCount, r)
	case *ingestv1.Check_Freshness:
		err = freshness(ctx, conn, k.Freshness, r)
	case *ingestv1.Check_Sql:
		err = customSQL(ctx, conn, k.Sql, r)
	case *ingestv1.Check_Column:
		err = column(ctx, conn, k.Column, r)
	}
	if err != nil {
		r.Outcome, r.Message = ingestv1.CheckOutcome_CHECK_OUTCOME_ERROR, err.Error()
	}
	return r
}

func verdict(r *ingestv1.CheckResult, pass bool, msg string) {
	r.Outcome = ingestv1.CheckOutcome_CHECK_OUTCOME_FAIL
	if pass {
		r.Outcome = ingestv1.CheckOutcome_CHECK_OUTCOME_PASS
	}
	r.Message = msg
}

// one runs a query that returns one row and returns its cells.
func one(ctx context.Context, conn checkConn, q string) ([]any, error) {
	rows, _, err := conn.rows(ctx, q, 1)
	if err != nil {
		return nil, err
	}
	if len(rows) != 1 {
		return nil, fmt.Errorf("query returned %d rows, want 1", len(rows))
	}
	return rows[0], nil
}

func rowCount(ctx context.Context, conn checkConn, c *ingestv1.RowCountCheck, r *ingestv1.CheckResult) error {
	tbl, err := conn.dialect().table(c.GetTable())
	if err != nil {
		return err
	}
	row, err := one(ctx, conn, "SELECT count(*) FROM "+tbl)
	if err != nil {
		return fmt.Errorf("count rows of %s: %w", c.GetTable(), err)
	}
	n, err := toInt(row[0])
	if err != nil {
		return err
	}
	r.Observed = strconv.FormatInt(n, 10)
	lo, hi := "-inf", "+inf"
	if c.Min != nil {
		lo = strconv.FormatInt(c.GetMin(), 10)
	}
	if c.Max != nil {
		hi = strconv.FormatInt(c.GetMax(), 10)
	}
	ok := (c.Min == nil || n >= c.GetMin()) && (c.Max == nil || n <= c.GetMax())
	verdict(r, ok, fmt.Sprintf("%s has %d rows, want [%s, %s]", c.GetTable(), n, lo, hi))
	return nil
}

func freshness(ctx context.Context, conn checkConn, c *ingestv1.FreshnessCheck, r *ingestv1.CheckResult) error {
	d := conn.dialect()
	tbl, err := d.table(c.GetTable())
	if err != nil {
		return err
	}
	col, err := d.column(c.GetColumn())
	if err != nil {
		return err
	}
	maxAge, _ := time.ParseDuration(c.GetMaxAge()) // validated
	mx := "max(" + col + ")"
	row, err := one(ctx, conn, "SELECT "+d.text(mx)+", "+d.ageSeconds(mx)+" FROM "+tbl)
	if err != nil {
		return fmt.Errorf("newest %s.%s: %w", c.GetTable(), c.GetColumn(), err)
	}
	if row[0] == nil {
		verdict(r, false, fmt.Sprintf("%s.%s has no values", c.GetTable(), c.GetColumn()))
		return nil
	}
	r.Observed = cellString(row[0])
	secs, err := toFloat(row[1])
	if err != nil {
		return err
	}
	age := time.Duration(secs * float64(time.Second)).Round(time.Second)
	verdict(r, age <= maxAge, fmt.Sprintf("newest %s.%s is %s old, max_age %s", c.GetTable(), c.GetColumn(), age, maxAge))
	return nil
}

func customSQL(ctx context.Context, conn checkConn, c *ingestv1.SQLCheck, r *ingestv1.CheckResult) error {
	rows, more, err := conn.rows(ctx, c.GetQuery(), sqlCheckRows)
	if err != nil {
		return fmt.Errorf("query: %w", err)
	}
	switch {
	case len(rows) == 0:
		r.Observed = "0 rows"
		verdict(r, true, "the query returned no rows")
		return nil
	case len(rows) == 1 && len(rows[0]) == 1:
		if b, ok := asBool(rows[0][0], conn.dialect()); ok {
			r.Observed = strconv.FormatBool(b)
			verdict(r, b, "the query returned "+r.Observed)
			return nil
		}
	}
	n := strconv.Itoa(len(rows))
	if more {
		n += "+"
	}
	r.Observed = n + " rows"
	verdict(r, false, fmt.Sprintf("the query returned %s rows, first (%s); want no rows or one true cell", n, rowString(rows[0])))
	return nil
}

func column(ctx context.Context, conn checkConn, c *ingestv1.ColumnCheck, r *ingestv1.CheckResult) error {
	d := conn.dialect()
	tbl, err := d.table(c.GetTable())
	if err != nil {
		return err
	}
	col, err := d.column(c.GetColumn())
	if err != nil {
		return err
	}
	var obs, msgs []string
	ok := true
	name := c.GetTable() + "." + c.GetColumn()
	if c.GetNotNull() {
		row, err := one(ctx, conn, "SELECT count(*) FROM "+tbl+" WHERE "+col+" IS NULL")
		if err != nil {
			return fmt.Errorf("count nulls of %s: %w", name, err)
		}
		n, err := toInt(row[0])
		if err != nil {
			return err
		}
		obs = append(obs, fmt.Sprintf("%d nulls", n))
		msgs = append(msgs, fmt.Sprintf("%s has %d NULLs", name, n))
		ok = ok && n == 0
	}
	if c.GetUnique() {
		row, err := one(ctx, conn, "SELECT count(*) FROM (SELECT "+col+" FROM "+tbl+" WHERE "+col+" IS NOT NULL GROUP BY "+col+" HAVING count(*) > 1) dup")
		if err != nil {
			return fmt.Errorf("count duplicates of %s: %w", name, err)
		}
		n, err := toInt(row[0])
		if err != nil {
			return err
		}
		obs = append(obs, fmt.Sprintf("%d duplicated values", n))
		msgs = append(msgs, fmt.Sprintf("%s has %d duplicated values", name, n))
		ok = ok && n == 0
	}
	r.Observed = strings.Join(obs, ", ")
	verdict(r, ok, strings.Join(msgs, "; "))
	return nil
}

// asBool reads a boolean cell; MySQL has no boolean type, so its 0 and 1
// count as one there.
func asBool(v any, d dialect) (bool, bool) {
	if b, ok := v.(bool); ok {
		return b, true
	}
	if d.name != mysqlDialect.name {
		return false, false
	}
	n, err := toInt(v)
	if err != nil || (n != 0 && n != 1) {
		return false, false
	}
	return n == 1, true
}

func toInt(v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case int32:
		return int64(x), nil
	case int:
		return int64(x), nil
	case uint64:
		if x > math.MaxInt64 {
			return 0, fmt.Errorf("count %d out of range", x)
		}
		return int64(x), nil
	case []byte:
		return strconv.ParseInt(string(x), 10, 64)
	case string:
		return strconv.ParseInt(x, 10, 64)
	}
	return 0, fmt.Errorf("unexpected %T where a count was expected", v)
}

func toFloat(v any) (float64, error) {
	switch x := v.(type) {
	case float64:
		return x, nil
	case []byte:
		return strconv.ParseFloat(string(x), 64)
	case string:
		return strconv.ParseFloat(x, 64)
	}
	n, err := toInt(v)
	return float64(n), err
}

func cellString(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case []byte:
		return string(x)
	case time.Time:
		return x.Format(time.RFC3339Nano)
	}
	return fmt.Sprint(v)
}

func rowString(row []any) string {
	parts := make([]string, len(row))
	for i, v := range row {
		parts[i] = cellString(v)
	}
	s := strings.Join(parts, ", ")
	if len(s) > maxRowText {
		s = s[:maxRowText] + "..."
	}
	return s
}

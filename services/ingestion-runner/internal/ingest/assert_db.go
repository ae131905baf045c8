package ingest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/outposthq/outpost/libs/ingest/recipe"
)

// ErrIdentifier is returned for a table or column name that cannot be
// quoted: empty, with a NUL byte, or with more parts than the dialect
// has (schema.table on PostgreSQL, database.table on MySQL).
var ErrIdentifier = errors.New("invalid identifier")

// checkConn is what the assertion checks need of a source connection.
type checkConn interface {
	dialect() dialect
	// rows runs q in a read-only transaction and returns at most max rows,
	// and whether there were more.
	rows(ctx context.Context, q string, max int) ([][]any, bool, error)
	close(ctx context.Context)
}

// dialect is how a server quotes names and spells what the checks need.
type dialect struct {
	name string
	// quote quotes one identifier.
	quote func(string) string
	// text casts an expression to text.
	text func(expr string) string
	// ageSeconds is the age of a timestamp expression, in seconds, by the
	// server's clock.
	ageSeconds func(expr string) string
}

var (
	postgresDialect = dialect{
		name:       "postgres",
		quote:      func(s string) string { return pgx.Identifier{s}.Sanitize() },
		text:       func(e string) string { return "(" + e + ")::text" },
		ageSeconds: func(e string) string { return "EXTRACT(EPOCH FROM (now() - (" + e + ")))::float8" },
	}
	mysqlDialect = dialect{
		name:       "mysql",
		quote:      func(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" },
		text:       func(e string) string { return "CAST(" + e + " AS CHAR)" },
		ageSeconds: func(e string) string { return "TIMESTAMPDIFF(SECOND, " + e + ", NOW())" },
	}
)

// table quotes a table name, "table" or "schema.table" ("db.table" on
// MySQL): each part is quoted on its own, so no name can end the quoting.
func (d dialect) table(name string) (string, error) {
	parts := strings.Split(name, ".")
	if len(parts) > 2 {
		return "", fmt.Errorf("%w: table %q has more than two dot-separated parts", ErrIdentifier, name)
	}
	for i, p := range parts {
		q, err := d.column(p)
		if err != nil {
			return "", fmt.Errorf("%w: table %q", ErrIdentifier, name)
		}
		parts[i] = q
	}
	return strings.Join(parts, "."), nil
}

// column quotes one identifier.
func (d dialect) column(name string) (string, error) {
	if name == "" || strings.ContainsRune(name, 0) || len(name) > 128 {
		return "", fmt.Errorf("%w: %q", ErrIdentifier, name)
	}
	return d.quote(name), nil
}

// connectChecks connects to a resolved source section for assertions,
// with the ingest sources' connection code.
func connectChecks(ctx context.Context, s recipe.Section) (checkConn, error) {
	src, err := NewSource(s)
	if err != nil {
		return nil, err
	}
	switch x := src.(type) {
	case *postgresSource:
		c, err := x.connect(ctx, x.checkDatabase())
		if err != nil {
			return nil, err
		}
		return pgCheckConn{c}, nil
	case *mysqlSource:
		db, err := x.connect(ctx)
		if err != nil {
			return nil, err
		}
		return mysqlCheckConn{db}, nil
	}
	return nil, fmt.Errorf("%w: source %q cannot run assertions", recipe.ErrInvalid, s.Type)
}

type pgCheckConn struct{ c *pgx.Conn }

func (p pgCheckConn) dialect() dialect { return postgresDialect }

func (p pgCheckConn) close(ctx context.Context) { _ = p.c.Close(context.WithoutCancel(ctx)) }

func (p pgCheckConn) rows(ctx context.Context, q string, max int) ([][]any, bool, error) {
	tx, err := p.c.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, false, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	rs, err := tx.Query(ctx, q)
	if err != nil {
		return nil, false, err
	}
	defer rs.Close()
	var out [][]any
	more := false
	for rs.Next() {
		if len(out) == max {
			more = true
			break
		}
		vals, err := rs.Values()
		if err != nil {
			return nil, false, err
		}
		out = append(out, vals)
	}
	rs.Close()
	return out, more, rs.Err()
}

type mysqlCheckConn struct{ db *sql.DB }

func (m mysqlCheckConn) dialect() dialect { return mysqlDialect }

func (m mysqlCheckConn) close(context.Context) { _ = m.db.Close() }

func (m mysqlCheckConn) rows(ctx context.Context, q string, max int) ([][]any, bool, error) {
	tx, err := m.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, false, err
	}
	defer func() { _ = tx.Rollback() }()
	rs, err := tx.QueryContext(ctx, q)
	if err != nil {
		return nil, false, err
	}
	defer rs.Close()
	cols, err := rs.Columns()
	if err != nil {
		return nil, false, err
	}
	var out [][]any
	more := false
	for rs.Next() {
		if len(out) == max {
			more = true
			break
		}
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rs.Scan(ptrs...); err != nil {
			return nil, false, err
		}
		out = append(out, vals)
	}
	return out, more, rs.Err()
}

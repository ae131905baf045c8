package ingest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outposthq/outpost/libs/ingest/recipe"
)

// connectTimeout bounds the dial and handshake to a source.
const connectTimeout = 10 * time.Second

type postgresSource struct {
	cfg     *recipe.PostgresSource
	filters filters
	now     func() time.Time
	prof    *profiler
}

func (s *postgresSource) Platform() string { return "postgres" }

// connect dials with a URL built here, not a DSN the user wrote, so
// nothing is read from PG* variables of the runner.
func (s *postgresSource) connect(ctx context.Context, database string) (*pgx.Conn, error) {
	q := url.Values{}
	for _, k := range slices.Sorted(maps.Keys(s.cfg.Options)) {
		q.Set(k, s.cfg.Options[k])
	}
	u := url.URL{Scheme: "postgres", Host: s.cfg.HostPort, Path: "/" + database, RawQuery: q.Encode()}
	if s.cfg.Username != "" {
		u.User = url.UserPassword(s.cfg.Username, s.cfg.Password)
	}
	cc, err := pgx.ParseConfig(u.String())
	if err != nil {
		// The URL holds the password: never wrap the parser's text.
		return nil, fmt.Errorf("%w: postgres host_port %q or options are not valid", ErrSourceConfig, s.cfg.HostPort)
	}
	cc.ConnectTimeout = connectTimeout
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err == nil {
		return conn, nil
	}
	where := fmt.Sprintf("postgres at %s as %q", s.cfg.HostPort, s.cfg.Username)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "28P01", "28000": // invalid_password, invalid_authorization_specification
			return nil, fmt.Errorf("%w: %s: wrong username or password (%s)", ErrAuth, where, pgErr.Message)
		case "3D000": // invalid_catalog_name
			return nil, fmt.Errorf("%w: %s: database %q does not exist", ErrSourceConfig, where, database)
		}
		return nil, fmt.Errorf("connect to %s: %s (SQLSTATE %s)", where, pgErr.Message, pgErr.Code)
	}
	return nil, fmt.Errorf("%w: %s: %w", ErrUnreachable, where, unwrapConnect(err))
}

// unwrapConnect drops pgx's "failed to connect to `user=... database=...`"
// prefix, which repeats what the message says already.
func unwrapConnect(err error) error {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) && ce.Unwrap() != nil {
		return ce.Unwrap()
	}
	return err
}

// checkDatabase is the database an assertion connects to.
func (s *postgresSource) checkDatabase() string {
	if s.cfg.Database != "" {
		return s.cfg.Database
	}
	return s.initialDatabase()
}

func (s *postgresSource) initialDatabase() string {
	if s.cfg.InitialDatabase != "" {
		return s.cfg.InitialDatabase
	}
	return recipe.DefaultInitialDatabase
}

// Extract reads database, or, like DataHub when the recipe names none,
// every database the server lists that database_pattern allows.
func (s *postgresSource) Extract(ctx context.Context, em Emitter) error {
	prof, err := newProfiler(&s.cfg.SQLSource, pgProfileDialect, s.clock(), em)
	if err != nil {
		return err
	}
	s.prof = prof
	defer s.prof.done()
	if s.cfg.Database != "" {
		return s.extractDatabase(ctx, em, s.cfg.Database)
	}
	dbPattern, err := s.cfg.DatabasePattern.Compile()
	if err != nil {
		return err
	}
	conn, err := s.connect(ctx, s.initialDatabase())
	if err != nil {
		return err
	}
	dbs, err := queryStrings(ctx, conn, `SELECT datname FROM pg_database
		WHERE datallowconn AND NOT datistemplate AND datname <> 'rdsadmin' ORDER BY 1`)
	_ = conn.Close(context.WithoutCancel(ctx))
	if err != nil {
		return fmt.Errorf("list databases: %w", err)
	}
	for _, db := range dbs {
		if !dbPattern.Allowed(db) {
			continue
		}
		if err := s.extractDatabase(ctx, em, db); err != nil {
			return err
		}
	}
	return nil
}

func (s *postgresSource) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

func (s *postgresSource) extractDatabase(ctx context.Context, em Emitter, db string) error {
	conn, err := s.connect(ctx, db)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := em.Container(ctx, Container{Database: db}); err != nil {
		return err
	}
	schemas, err := queryStrings(ctx, conn, `SELECT nspname FROM pg_namespace
		WHERE nspname NOT IN ('information_schema', 'pg_catalog', 'pg_toast')
		  AND nspname NOT LIKE 'pg\_temp\_%' AND nspname NOT LIKE 'pg\_toast\_temp\_%'
		ORDER BY 1`)
	if err != nil {
		return fmt.Errorf("list schemas: %w", err)
	}
	for _, schema := range schemas {
		if !s.filters.schema.Allowed(schema) {
			continue
		}
		if err := s.extractSchema(ctx, conn, em, db, schema); err != nil {
			return err
		}
	}
	return nil
}

func (s *postgresSource) extractSchema(ctx context.Context, conn *pgx.Conn, em Emitter, db, schema string) error {
	if err := em.Container(ctx, Container{Database: db, Schema: schema}); err != nil {
		return err
	}
	emit := func(t *Table) error { return em.Table(ctx, *t) }
	if s.prof == nil {
		// One query for the whole schema, each table written as its row
		// arrives: memory holds one table, whatever the schema's size.
		_, _, err := s.readSchema(ctx, conn, db, schema, "", 0, emit)
		return err
	}
	// Profiling queries the same connection: read tableBatch tables,
	// then profile and emit them, and go on after the last name read.
	after := ""
	for {
		var page []*Table
		last, n, err := s.readSchema(ctx, conn, db, schema, after, tableBatch, func(t *Table) error {
			page = append(page, t)
			return nil
		})
		if err != nil {
			return err
		}
		for _, t := range page {
			if !t.View {
				ident := pgx.Identifier{schema, t.Name}.Sanitize()
				if err := s.prof.profile(ctx, pgQuerier{conn}, t, db+"."+schema+"."+t.Name, ident); err != nil {
					return err
				}
			}
			if err := emit(t); err != nil {
				return err
			}
		}
		if n < tableBatch {
			return nil
		}
		after = last
	}
}

// pgSchemaQuery reads the tables and views of schema $1 whose names sort
// after $2, at most $3 of them (all when NULL), in name order: one row
// each with its comment, view definition, columns (in ordinal order),
// primary and foreign key columns (primary key first, then by constraint
// name, in key order) and, with $4, what a view reads (from pg_depend on
// its rewrite rule, DataHub's view lineage query, one level).
const pgSchemaQuery = `SELECT c.relname, c.relkind::text, coalesce(d.description, ''),
	CASE WHEN c.relkind IN ('v', 'm') THEN coalesce(pg_get_viewdef(c.oid), '') ELSE '' END,
	cols.nums, cols.names, cols.types, cols.nullable, cols.comments,
	keys.names, keys.types, keys.columns, keys.ref_schemas, keys.ref_tables, keys.ref_columns,
	ups.schemas, ups.names
FROM (SELECT c.oid, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm') AND NOT c.relispartition AND c.relname > $2::name
	ORDER BY c.relname LIMIT $3) c
LEFT JOIN pg_description d ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
CROSS JOIN LATERAL (
	SELECT array_agg(a.attnum) AS nums, array_agg(a.attname::text) AS names, array_agg(a.typ) AS types,
		array_agg(a.nullable) AS nullable, array_agg(a.comment) AS comments
	FROM (SELECT a.attnum, a.attname, format_type(a.atttypid, a.atttypmod) AS typ, NOT a.attnotnull AS nullable,
			coalesce(ad.description, '') AS comment
		FROM pg_attribute a
		LEFT JOIN pg_description ad ON ad.objoid = a.attrelid AND ad.classoid = 'pg_class'::regclass AND ad.objsubid = a.attnum
		WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attnum) a) cols
CROSS JOIN LATERAL (
	SELECT array_agg(k.conname ORDER BY k.contype DESC, k.conname, k.ord) AS names,
		array_agg(k.contype ORDER BY k.contype DESC, k.conname, k.ord) AS types,
		array_agg(k.attname ORDER BY k.contype DESC, k.conname, k.ord) AS columns,
		array_agg(k.ref_schema ORDER BY k.contype DESC, k.conname, k.ord) AS ref_schemas,
		array_agg(k.ref_table ORDER BY k.contype DESC, k.conname, k.ord) AS ref_tables,
		array_agg(k.ref_column ORDER BY k.contype DESC, k.conname, k.ord) AS ref_columns
	FROM (SELECT con.conname::text, con.contype::text, k.ord,
			coalesce((SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = con.conrelid AND a.attnum = k.attnum), '') AS attname,
			coalesce(fn.nspname::text, '') AS ref_schema, coalesce(fc.relname::text, '') AS ref_table,
			coalesce((SELECT fa.attname::text FROM pg_attribute fa WHERE fa.attrelid = con.confrelid AND fa.attnum = k.fattnum), '') AS ref_column
		FROM pg_constraint con
		CROSS JOIN LATERAL unnest(con.conkey, con.confkey) WITH ORDINALITY AS k(attnum, fattnum, ord)
		LEFT JOIN pg_class fc ON fc.oid = con.confrelid
		LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace
		WHERE con.conrelid = c.oid AND con.contype IN ('p', 'f')) k) keys
LEFT JOIN LATERAL (
	SELECT array_agg(u.nspname::text ORDER BY u.nspname, u.relname) AS schemas,
		array_agg(u.relname::text ORDER BY u.nspname, u.relname) AS names
	FROM (SELECT DISTINCT sn.nspname, src.relname
		FROM pg_rewrite r
		JOIN pg_depend d ON d.objid = r.oid AND d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
		JOIN pg_class src ON src.oid = d.refobjid
		JOIN pg_namespace sn ON sn.oid = src.relnamespace
		WHERE $4 AND c.relkind IN ('v', 'm') AND r.ev_class = c.oid AND src.oid <> c.oid
		  AND src.relkind IN ('r', 'p', 'v', 'm', 'f')
		  AND sn.nspname NOT IN ('pg_catalog', 'information_schema')) u) ups ON true
ORDER BY c.relname`

// readSchema runs pgSchemaQuery and calls each with every table the
// filters keep, as its row arrives. It returns the last name read and how
// many rows were read (kept or not): fewer than limit is the end.
func (s *postgresSource) readSchema(ctx context.Context, conn *pgx.Conn, db, schema, after string, limit int, each func(*Table) error) (string, int, error) {
	var lim *int
	if limit > 0 {
		lim = &limit
	}
	fail := func(err error) (string, int, error) {
		return "", 0, fmt.Errorf("read tables of schema %s: %w", schema, err)
	}
	rows, err := conn.Query(ctx, pgSchemaQuery, schema, after, lim, s.filters.lineage)
	if err != nil {
		return fail(err)
	}
	defer rows.Close()
	var (
		name, kind, comment, def                                    string
		nums                                                        []int16
		colNames, colTypes, colComments                             []string
		colNull                                                     []bool
		keyNames, keyTypes, keyCols, refSchemas, refTables, refCols []string
		upSchemas, upNames                                          []string
		n                                                           int
	)
	for rows.Next() {
		err := rows.Scan(&name, &kind, &comment, &def, &nums, &colNames, &colTypes, &colNull, &colComments,
			&keyNames, &keyTypes, &keyCols, &refSchemas, &refTables, &refCols, &upSchemas, &upNames)
		if err != nil {
			return fail(err)
		}
		n++
		view := kind == "v" || kind == "m"
		if !s.filters.keep(db+"."+schema+"."+name, view) {
			continue
		}
		t := &Table{Database: db, Schema: schema, Name: name, View: view, Materialized: kind == "m", Comment: comment, ViewDefinition: def}
		t.Columns = make([]Column, len(colNames))
		for i := range colNames {
			t.Columns[i] = Column{Name: colNames[i], Type: colTypes[i], Nullable: colNull[i], Ordinal: int(nums[i]), Comment: colComments[i]}
		}
		// The aggregate reads an ordered subquery; make the order certain.
		slices.SortStableFunc(t.Columns, func(a, b Column) int { return a.Ordinal - b.Ordinal })
		for i := range keyNames {
			if keyTypes[i] == "p" {
				t.PrimaryKey = append(t.PrimaryKey, keyCols[i])
				continue
			}
			if k := len(t.ForeignKeys); k == 0 || t.ForeignKeys[k-1].Name != keyNames[i] {
				t.ForeignKeys = append(t.ForeignKeys, ForeignKey{Name: keyNames[i], RefDatabase: db, RefSchema: refSchemas[i], RefTable: refTables[i]})
			}
			fk := &t.ForeignKeys[len(t.ForeignKeys)-1]
			fk.Columns = append(fk.Columns, keyCols[i])
			fk.RefColumns = append(fk.RefColumns, refCols[i])
		}
		for i := range upNames {
			t.Upstreams = append(t.Upstreams, Ref{Database: db, Schema: upSchemas[i], Name: upNames[i]})
		}
		if err := each(t); err != nil {
			return "", 0, err
		}
	}
	if err := rows.Err(); err != nil {
		return fail(err)
	}
	return name, n, nil
}

// pgProfileDialect is PostgreSQL's: every value read as text.
var pgProfileDialect = profileDialect{
	quote: func(s string) string { return pgx.Identifier{s}.Sanitize() },
	text:  func(e string) string { return "(" + e + ")::text" },
	numeric: func(t string) bool {
		t = strings.ToLower(t)
		for _, p := range []string{"smallint", "integer", "bigint", "numeric", "real", "double precision"} {
			if strings.HasPrefix(t, p) && !strings.HasSuffix(t, "[]") {
				return true
			}
		}
		return false
	},
	// Every type has a text form; not every type has equality.
	distinct: func(c string, numeric bool) string {
		if numeric {
			return c
		}
		return c + "::text"
	},
	median: func(c, _ string) string { return "percentile_cont(0.5) WITHIN GROUP (ORDER BY " + c + "::float8)" },
	limit: func(limit, offset *int) string {
		out := ""
		if limit != nil {
			out += fmt.Sprintf(" LIMIT %d", *limit)
		}
		if offset != nil {
			out += fmt.Sprintf(" OFFSET %d", *offset)
		}
		return out
	},
	estimates: `SELECT c.reltuples::bigint::text, pg_table_size(c.oid)::text FROM pg_class c WHERE c.oid = to_regclass($1)`,
}

// pgQuerier runs profile statements in a read-only transaction whose
// statement_timeout is what is left of the time budget: the server stops
// the statement, and the connection stays usable.
type pgQuerier struct{ c *pgx.Conn }

func (q pgQuerier) rows(ctx context.Context, stmt string, deadline time.Time, max int, args ...any) ([][]*string, error) {
	tx, err := q.c.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if !deadline.IsZero() {
		left := time.Until(deadline).Milliseconds()
		if left <= 0 {
			return nil, errBudget
		}
		if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL statement_timeout = %d", left)); err != nil {
			return nil, err
		}
	}
	rows, err := tx.Query(ctx, stmt, args...)
	if err != nil {
		return nil, budgetErr(err)
	}
	defer rows.Close()
	var out [][]*string
	for rows.Next() && (max <= 0 || len(out) < max) {
		n := len(rows.FieldDescriptions())
		vals, dest := make([]*string, n), make([]any, n)
		for i := range vals {
			dest[i] = &vals[i]
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		out = append(out, vals)
	}
	if err := rows.Err(); err != nil {
		return nil, budgetErr(err)
	}
	return out, nil
}

func (q pgQuerier) row(ctx context.Context, stmt string, deadline time.Time, args ...any) ([]*string, error) {
	rows, err := q.rows(ctx, stmt, deadline, 1, args...)
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, errors.New("no row")
	}
	return rows[0], nil
}

// budgetErr maps a statement the server stopped (query_canceled) to
// errBudget.
func budgetErr(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "57014" {
		return errBudget
	}
	return err
}

func queryStrings(ctx context.Context, conn *pgx.Conn, q string, args ...any) ([]string, error) {
	rows, err := conn.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

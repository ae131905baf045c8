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
	rows, err := conn.Query(ctx, `SELECT c.relname, c.relkind::text FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm') AND NOT c.relispartition
		ORDER BY 1`, schema)
	if err != nil {
		return fmt.Errorf("list tables of schema %s: %w", schema, err)
	}
	rels := map[string]relation{}
	var names []string
	for rows.Next() {
		var r relation
		var kind string
		if err := rows.Scan(&r.name, &kind); err != nil {
			return fmt.Errorf("list tables of schema %s: %w", schema, err)
		}
		r.view, r.materialized = kind == "v" || kind == "m", kind == "m"
		if s.filters.keep(db+"."+schema+"."+r.name, r.view) {
			rels[r.name] = r
			names = append(names, r.name)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list tables of schema %s: %w", schema, err)
	}
	for _, batch := range chunks(names, tableBatch) {
		tables, err := s.details(ctx, conn, db, schema, batch, rels)
		if err != nil {
			return err
		}
		for _, t := range tables {
			if s.prof != nil && !t.View {
				ident := pgx.Identifier{schema, t.Name}.Sanitize()
				if err := s.prof.profile(ctx, pgQuerier{conn}, t, db+"."+schema+"."+t.Name, ident); err != nil {
					return err
				}
			}
			if err := em.Table(ctx, *t); err != nil {
				return err
			}
		}
	}
	return nil
}

// details reads comments, view definitions, columns and keys of one batch
// of tables, in three queries.
func (s *postgresSource) details(ctx context.Context, conn *pgx.Conn, db, schema string, batch []string, rels map[string]relation) ([]*Table, error) {
	byName := make(map[string]*Table, len(batch))
	out := make([]*Table, len(batch))
	for i, name := range batch {
		r := rels[name]
		out[i] = &Table{Database: db, Schema: schema, Name: name, View: r.view, Materialized: r.materialized}
		byName[name] = out[i]
	}
	fail := func(what string, err error) error {
		return fmt.Errorf("read %s of tables in schema %s: %w", what, schema, err)
	}
	rows, err := conn.Query(ctx, `SELECT c.relname, coalesce(obj_description(c.oid, 'pg_class'), ''),
			CASE WHEN c.relkind IN ('v', 'm') THEN coalesce(pg_get_viewdef(c.oid), '') ELSE '' END
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = ANY($2)`, schema, batch)
	if err != nil {
		return nil, fail("comments", err)
	}
	var name, comment, def string
	_, err = pgx.ForEachRow(rows, []any{&name, &comment, &def}, func() error {
		if t := byName[name]; t != nil {
			t.Comment, t.ViewDefinition = comment, def
		}
		return nil
	})
	if err != nil {
		return nil, fail("comments", err)
	}

	rows, err = conn.Query(ctx, `SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
			NOT a.attnotnull, a.attnum, coalesce(col_description(c.oid, a.attnum), '')
		FROM pg_attribute a
		JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = ANY($2) AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY c.relname, a.attnum`, schema, batch)
	if err != nil {
		return nil, fail("columns", err)
	}
	var col Column
	var ordinal int16
	_, err = pgx.ForEachRow(rows, []any{&name, &col.Name, &col.Type, &col.Nullable, &ordinal, &col.Comment}, func() error {
		if t := byName[name]; t != nil {
			col.Ordinal = int(ordinal)
			t.Columns = append(t.Columns, col)
		}
		return nil
	})
	if err != nil {
		return nil, fail("columns", err)
	}

	// unnest of conkey with confkey pairs each column with the one it
	// references (NULL for a primary key), in key order.
	rows, err = conn.Query(ctx, `SELECT c.relname, con.conname, con.contype::text, a.attname,
			coalesce(fn.nspname, ''), coalesce(fc.relname, ''), coalesce(fa.attname, '')
		FROM pg_constraint con
		JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		CROSS JOIN LATERAL unnest(con.conkey, con.confkey) WITH ORDINALITY AS k(attnum, fattnum, ord)
		JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
		LEFT JOIN pg_class fc ON fc.oid = con.confrelid
		LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace
		LEFT JOIN pg_attribute fa ON fa.attrelid = con.confrelid AND fa.attnum = k.fattnum
		WHERE n.nspname = $1 AND c.relname = ANY($2) AND con.contype IN ('p', 'f')
		ORDER BY c.relname, con.contype DESC, con.conname, k.ord`, schema, batch)
	if err != nil {
		return nil, fail("keys", err)
	}
	var conName, conType, column, refSchema, refTable, refColumn string
	_, err = pgx.ForEachRow(rows, []any{&name, &conName, &conType, &column, &refSchema, &refTable, &refColumn}, func() error {
		t := byName[name]
		if t == nil {
			return nil
		}
		if conType == "p" {
			t.PrimaryKey = append(t.PrimaryKey, column)
			return nil
		}
		if n := len(t.ForeignKeys); n == 0 || t.ForeignKeys[n-1].Name != conName {
			t.ForeignKeys = append(t.ForeignKeys, ForeignKey{Name: conName, RefDatabase: db, RefSchema: refSchema, RefTable: refTable})
		}
		fk := &t.ForeignKeys[len(t.ForeignKeys)-1]
		fk.Columns = append(fk.Columns, column)
		fk.RefColumns = append(fk.RefColumns, refColumn)
		return nil
	})
	if err != nil {
		return nil, fail("keys", err)
	}
	if s.filters.lineage {
		if err := s.lineage(ctx, conn, db, schema, out, byName); err != nil {
			return nil, fail("view lineage", err)
		}
	}
	return out, nil
}

// lineage reads what each view of a batch reads, from pg_depend: the
// tables and views its rewrite rule depends on (DataHub's view lineage
// query, one level).
func (s *postgresSource) lineage(ctx context.Context, conn *pgx.Conn, db, schema string, batch []*Table, byName map[string]*Table) error {
	var views []string
	for _, t := range batch {
		if t.View {
			views = append(views, t.Name)
		}
	}
	if len(views) == 0 {
		return nil
	}
	rows, err := conn.Query(ctx, `SELECT DISTINCT v.relname, sn.nspname, src.relname
		FROM pg_depend d
		JOIN pg_rewrite r ON r.oid = d.objid
		JOIN pg_class v ON v.oid = r.ev_class
		JOIN pg_namespace vn ON vn.oid = v.relnamespace
		JOIN pg_class src ON src.oid = d.refobjid
		JOIN pg_namespace sn ON sn.oid = src.relnamespace
		WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
		  AND vn.nspname = $1 AND v.relname = ANY($2) AND src.oid <> v.oid
		  AND src.relkind IN ('r', 'p', 'v', 'm', 'f')
		  AND sn.nspname NOT IN ('pg_catalog', 'information_schema')
		ORDER BY 1, 2, 3`, schema, views)
	if err != nil {
		return err
	}
	var view, upSchema, upName string
	_, err = pgx.ForEachRow(rows, []any{&view, &upSchema, &upName}, func() error {
		if t := byName[view]; t != nil {
			t.Upstreams = append(t.Upstreams, Ref{Database: db, Schema: upSchema, Name: upName})
		}
		return nil
	})
	return err
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

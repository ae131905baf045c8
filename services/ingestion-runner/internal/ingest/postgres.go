package ingest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
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
}

func (s *postgresSource) Platform() string { return "postgres" }

// connect dials with a URL built here, not a DSN the user wrote, so
// nothing is read from PG* variables of the runner.
func (s *postgresSource) connect(ctx context.Context) (*pgx.Conn, error) {
	q := url.Values{}
	for _, k := range slices.Sorted(maps.Keys(s.cfg.Options)) {
		q.Set(k, s.cfg.Options[k])
	}
	u := url.URL{Scheme: "postgres", Host: s.cfg.HostPort, Path: "/" + s.cfg.Database, RawQuery: q.Encode()}
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
			return nil, fmt.Errorf("%w: %s: database %q does not exist", ErrSourceConfig, where, s.cfg.Database)
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

func (s *postgresSource) Extract(ctx context.Context, em Emitter) error {
	conn, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	db := s.cfg.Database
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
		if err := s.extractSchema(ctx, conn, em, schema); err != nil {
			return err
		}
	}
	return nil
}

func (s *postgresSource) extractSchema(ctx context.Context, conn *pgx.Conn, em Emitter, schema string) error {
	db := s.cfg.Database
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
		tables, err := s.details(ctx, conn, schema, batch, rels)
		if err != nil {
			return err
		}
		for _, t := range tables {
			if s.filters.rowCounts && !t.View {
				var n int64
				q := "SELECT count(*) FROM " + pgx.Identifier{schema, t.Name}.Sanitize()
				if err := conn.QueryRow(ctx, q).Scan(&n); err != nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					em.Warn(fmt.Sprintf("row count of %s.%s not read: %v", schema, t.Name, err))
				} else {
					t.RowCount = &n
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
func (s *postgresSource) details(ctx context.Context, conn *pgx.Conn, schema string, batch []string, rels map[string]relation) ([]*Table, error) {
	db := s.cfg.Database
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
	return out, nil
}

func queryStrings(ctx context.Context, conn *pgx.Conn, q string, args ...any) ([]string, error) {
	rows, err := conn.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

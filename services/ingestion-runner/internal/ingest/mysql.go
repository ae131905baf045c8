package ingest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/outposthq/outpost/libs/ingest/recipe"
)

type mysqlSource struct {
	cfg     *recipe.MySQLSource
	filters filters
	now     func() time.Time
	prof    *profiler
	// viewUsage tells whether the server has
	// information_schema.VIEW_TABLE_USAGE (MySQL 8; not MariaDB).
	viewUsage *bool
}

func (s *mysqlSource) Platform() string { return "mysql" }

// mysqlSystem are the databases of the server itself, never extracted.
var mysqlSystem = map[string]bool{"mysql": true, "information_schema": true, "performance_schema": true, "sys": true}

func (s *mysqlSource) connect(ctx context.Context) (*sql.DB, error) {
	mc := mysql.NewConfig()
	mc.User, mc.Passwd = s.cfg.Username, s.cfg.Password
	mc.Net, mc.Addr, mc.DBName = "tcp", s.cfg.HostPort, s.cfg.Database
	mc.Timeout = connectTimeout
	mc.Params = s.cfg.Options
	connector, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("%w: mysql host_port %q or options are not valid", ErrSourceConfig, s.cfg.HostPort)
	}
	db := sql.OpenDB(connector)
	// One connection: the extraction is sequential, and a server that
	// counts connections per user should see one.
	db.SetMaxOpenConns(1)
	err = db.PingContext(ctx)
	if err == nil {
		return db, nil
	}
	_ = db.Close()
	where := fmt.Sprintf("mysql at %s as %q", s.cfg.HostPort, s.cfg.Username)
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1045, 1044: // access denied for user, access denied to database
			return nil, fmt.Errorf("%w: %s: wrong username or password, or no access (%s)", ErrAuth, where, me.Message)
		case 1049: // unknown database
			return nil, fmt.Errorf("%w: %s: database %q does not exist", ErrSourceConfig, where, s.cfg.Database)
		}
		return nil, fmt.Errorf("connect to %s: %s (error %d)", where, me.Message, me.Number)
	}
	return nil, fmt.Errorf("%w: %s: %w", ErrUnreachable, where, err)
}

func (s *mysqlSource) Extract(ctx context.Context, em Emitter) error {
	db, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	now := time.Now()
	if s.now != nil {
		now = s.now()
	}
	if s.prof, err = newProfiler(&s.cfg.SQLSource, mysqlProfileDialect, now, em); err != nil {
		return err
	}
	defer s.prof.done()
	var dbs []string
	if s.cfg.Database != "" {
		dbs = []string{s.cfg.Database}
	} else {
		all, err := sqlStrings(ctx, db, `SELECT schema_name FROM information_schema.schemata ORDER BY 1`)
		if err != nil {
			return fmt.Errorf("list databases: %w", err)
		}
		for _, d := range all {
			if !mysqlSystem[strings.ToLower(d)] {
				dbs = append(dbs, d)
			}
		}
	}
	for _, d := range dbs {
		if !s.filters.schema.Allowed(d) {
			continue
		}
		if err := s.extractDatabase(ctx, db, em, d); err != nil {
			return err
		}
	}
	return nil
}

func (s *mysqlSource) extractDatabase(ctx context.Context, conn *sql.DB, em Emitter, db string) error {
	if err := em.Container(ctx, Container{Database: db}); err != nil {
		return err
	}
	rows, err := conn.QueryContext(ctx, `SELECT table_name, table_type FROM information_schema.tables
		WHERE table_schema = ? ORDER BY table_name`, db)
	if err != nil {
		return fmt.Errorf("list tables of database %s: %w", db, err)
	}
	defer rows.Close()
	rels := map[string]relation{}
	var names []string
	for rows.Next() {
		var r relation
		var typ string
		if err := rows.Scan(&r.name, &typ); err != nil {
			return fmt.Errorf("list tables of database %s: %w", db, err)
		}
		r.view = typ == "VIEW"
		if typ == "SYSTEM VIEW" {
			continue
		}
		if s.filters.keep(db+"."+r.name, r.view) {
			rels[r.name] = r
			names = append(names, r.name)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list tables of database %s: %w", db, err)
	}
	_ = rows.Close()
	batchSize := mysqlBatch
	if s.prof != nil {
		batchSize = tableBatch // profiles are read between batches: fewer tables held
	}
	for _, batch := range chunks(names, batchSize) {
		tables, err := s.details(ctx, conn, db, batch, rels)
		if err != nil {
			return err
		}
		if s.filters.lineage {
			if err := s.lineage(ctx, conn, em, db, tables); err != nil {
				return err
			}
		}
		for _, t := range tables {
			if s.prof != nil && !t.View {
				if err := s.prof.profile(ctx, sqlQuerier{conn}, t, db+"."+t.Name, db, t.Name); err != nil {
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

// mysqlBatch is how many tables' columns and keys one pair of queries
// reads when nothing else needs the connection between batches: the
// server builds information_schema rows per query, so fewer, larger
// queries cost less, and a batch of this size holds a few MB.
const mysqlBatch = 1000

func quoteMySQL(ident string) string { return "`" + strings.ReplaceAll(ident, "`", "``") + "`" }

// details reads comments, view definitions, columns and keys of a batch
// of tables in two queries: columns joined with their table, and keys.
// The batch is a range of names (first to last, in the server's order):
// no list of names to send, and the tables the filters left out in it are
// skipped here.
func (s *mysqlSource) details(ctx context.Context, conn *sql.DB, db string, batch []string, rels map[string]relation) ([]*Table, error) {
	byName := make(map[string]*Table, len(batch))
	out := make([]*Table, len(batch))
	for i, name := range batch {
		out[i] = &Table{Database: db, Name: name, View: rels[name].view}
		byName[name] = out[i]
	}
	args := []any{db, batch[0], batch[len(batch)-1]}
	each := func(what, q string, scan func(*sql.Rows) error) error {
		rows, err := conn.QueryContext(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("read %s of tables in database %s: %w", what, db, err)
		}
		defer rows.Close()
		for rows.Next() {
			if err := scan(rows); err != nil {
				return fmt.Errorf("read %s of tables in database %s: %w", what, db, err)
			}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read %s of tables in database %s: %w", what, db, err)
		}
		return nil
	}
	var name string
	// A view whose tables are gone has no columns: the LEFT JOIN keeps
	// its comment and definition, with a NULL column.
	err := each("columns", `SELECT t.table_name, t.table_comment, coalesce(v.view_definition, ''),
			c.column_name, coalesce(c.column_type, ''), coalesce(c.is_nullable = 'YES', false), coalesce(c.ordinal_position, 0), coalesce(c.column_comment, '')
		FROM information_schema.tables t
		LEFT JOIN information_schema.columns c ON c.table_schema = t.table_schema AND c.table_name = t.table_name
		LEFT JOIN information_schema.views v ON v.table_schema = t.table_schema AND v.table_name = t.table_name
		WHERE t.table_schema = ? AND t.table_name BETWEEN ? AND ?
		ORDER BY t.table_name, c.ordinal_position`, func(rows *sql.Rows) error {
		var comment, def string
		var column sql.NullString
		var c Column
		if err := rows.Scan(&name, &comment, &def, &column, &c.Type, &c.Nullable, &c.Ordinal, &c.Comment); err != nil {
			return err
		}
		t := byName[name]
		if t == nil {
			return nil
		}
		if len(t.Columns) == 0 {
			if t.View && comment == "VIEW" {
				comment = "" // what MySQL puts in table_comment of every view
			}
			t.Comment, t.ViewDefinition = comment, def
		}
		if column.Valid {
			c.Name = column.String
			t.Columns = append(t.Columns, c)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = each("keys", `SELECT k.table_name, k.constraint_name, tc.constraint_type, k.column_name,
			coalesce(k.referenced_table_schema, ''), coalesce(k.referenced_table_name, ''), coalesce(k.referenced_column_name, '')
		FROM information_schema.key_column_usage k
		JOIN information_schema.table_constraints tc ON tc.constraint_schema = k.constraint_schema
			AND tc.table_name = k.table_name AND tc.constraint_name = k.constraint_name
		WHERE k.table_schema = ? AND k.table_name BETWEEN ? AND ?
			AND tc.constraint_type IN ('PRIMARY KEY', 'FOREIGN KEY')
		ORDER BY k.table_name, tc.constraint_type DESC, k.constraint_name, k.ordinal_position`, func(rows *sql.Rows) error {
		var conName, conType, column, refDB, refTable, refColumn string
		if err := rows.Scan(&name, &conName, &conType, &column, &refDB, &refTable, &refColumn); err != nil {
			return err
		}
		t := byName[name]
		if t == nil {
			return nil
		}
		if conType == "PRIMARY KEY" {
			t.PrimaryKey = append(t.PrimaryKey, column)
			return nil
		}
		if n := len(t.ForeignKeys); n == 0 || t.ForeignKeys[n-1].Name != conName {
			t.ForeignKeys = append(t.ForeignKeys, ForeignKey{Name: conName, RefDatabase: refDB, RefTable: refTable})
		}
		fk := &t.ForeignKeys[len(t.ForeignKeys)-1]
		fk.Columns = append(fk.Columns, column)
		fk.RefColumns = append(fk.RefColumns, refColumn)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// lineage reads what each view of a batch reads from
// information_schema.VIEW_TABLE_USAGE, where the server has it (MySQL
// 8.0.13 and later). MariaDB has not: its views get no upstreamLineage,
// since reading it from the view's SQL would need a SQL parser.
func (s *mysqlSource) lineage(ctx context.Context, conn *sql.DB, em Emitter, db string, batch []*Table) error {
	var views []any
	byName := map[string]*Table{}
	for _, t := range batch {
		if t.View {
			views = append(views, t.Name)
			byName[t.Name] = t
		}
	}
	if len(views) == 0 {
		return nil
	}
	if s.viewUsage == nil {
		var n int
		err := conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.tables
			WHERE table_schema = 'information_schema' AND table_name = 'VIEW_TABLE_USAGE'`).Scan(&n)
		if err != nil {
			return fmt.Errorf("look for information_schema.VIEW_TABLE_USAGE: %w", err)
		}
		has := n > 0
		s.viewUsage = &has
		if !has {
			em.Note("lineage: this server has no information_schema.VIEW_TABLE_USAGE (MariaDB): views get no upstreamLineage; reading it from their SQL is not done")
		}
	}
	if !*s.viewUsage {
		return nil
	}
	in := "(" + strings.TrimSuffix(strings.Repeat("?,", len(views)), ",") + ")"
	rows, err := conn.QueryContext(ctx, `SELECT DISTINCT view_name, table_schema, table_name
		FROM information_schema.view_table_usage
		WHERE view_schema = ? AND view_name IN `+in+` ORDER BY 1, 2, 3`, append([]any{db}, views...)...)
	if err != nil {
		return fmt.Errorf("read view lineage in database %s: %w", db, err)
	}
	defer rows.Close()
	for rows.Next() {
		var view, upDB, upName string
		if err := rows.Scan(&view, &upDB, &upName); err != nil {
			return fmt.Errorf("read view lineage in database %s: %w", db, err)
		}
		if t := byName[view]; t != nil {
			t.Upstreams = append(t.Upstreams, Ref{Database: upDB, Name: upName})
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read view lineage in database %s: %w", db, err)
	}
	return nil
}

// mysqlProfileDialect is MySQL's and MariaDB's: the driver reads every
// value as text. The median is a scalar subquery with window functions
// (MySQL 8, MariaDB 10.2), the average of the one or two middle values.
var mysqlProfileDialect = profileDialect{
	quote: quoteMySQL,
	text:  func(e string) string { return e },
	numeric: func(t string) bool {
		t = strings.ToLower(t)
		for _, p := range []string{"tinyint", "smallint", "mediumint", "int", "bigint", "decimal", "numeric", "float", "double", "real"} {
			if strings.HasPrefix(t, p) {
				return true
			}
		}
		return false
	},
	distinct: func(c string, _ bool) string { return c },
	median: func(c, src string) string {
		return "(SELECT AVG(v) FROM (SELECT " + c + " AS v, ROW_NUMBER() OVER (ORDER BY " + c + ") AS rn, COUNT(*) OVER () AS cnt FROM " +
			src + " WHERE " + c + " IS NOT NULL) m WHERE rn IN (FLOOR((cnt + 1) / 2), FLOOR((cnt + 2) / 2)))"
	},
	limit: func(limit, offset *int) string {
		switch {
		case limit != nil && offset != nil:
			return fmt.Sprintf(" LIMIT %d OFFSET %d", *limit, *offset)
		case limit != nil:
			return fmt.Sprintf(" LIMIT %d", *limit)
		case offset != nil:
			return fmt.Sprintf(" LIMIT 18446744073709551615 OFFSET %d", *offset)
		}
		return ""
	},
	estimates: `SELECT table_rows, data_length FROM information_schema.tables WHERE table_schema = ? AND table_name = ?`,
}

// sqlQuerier runs profile statements with a deadline at the end of the
// time budget; the driver drops a connection it interrupts, and the pool
// opens another.
type sqlQuerier struct{ db *sql.DB }

func (q sqlQuerier) rows(ctx context.Context, stmt string, deadline time.Time, max int, args ...any) ([][]*string, error) {
	qctx := ctx
	if !deadline.IsZero() {
		if !time.Now().Before(deadline) {
			return nil, errBudget
		}
		var cancel context.CancelFunc
		qctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	fail := func(err error) error {
		if ctx.Err() == nil && qctx.Err() != nil {
			return errBudget
		}
		return err
	}
	rows, err := q.db.QueryContext(qctx, stmt, args...)
	if err != nil {
		return nil, fail(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, fail(err)
	}
	var out [][]*string
	for rows.Next() && (max <= 0 || len(out) < max) {
		raw, dest := make([]sql.NullString, len(cols)), make([]any, len(cols))
		for i := range raw {
			dest[i] = &raw[i]
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fail(err)
		}
		vals := make([]*string, len(cols))
		for i, r := range raw {
			if r.Valid {
				vals[i] = &r.String
			}
		}
		out = append(out, vals)
	}
	if err := rows.Err(); err != nil {
		return nil, fail(err)
	}
	return out, nil
}

func (q sqlQuerier) row(ctx context.Context, stmt string, deadline time.Time, args ...any) ([]*string, error) {
	rows, err := q.rows(ctx, stmt, deadline, 1, args...)
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, errors.New("no row")
	}
	return rows[0], nil
}

func sqlStrings(ctx context.Context, db *sql.DB, q string, args ...any) ([]string, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

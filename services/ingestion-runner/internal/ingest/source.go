package ingest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/outposthq/outpost/libs/ingest/recipe"
)

// ErrAuth is returned when the source refuses the credentials. A retry
// with the same recipe cannot succeed, so the job fails at once.
var ErrAuth = errors.New("authentication failed")

// ErrUnreachable is returned when the source cannot be reached (refused,
// timed out, name not resolved). It is retryable: a database can come back.
var ErrUnreachable = errors.New("source unreachable")

// ErrSourceConfig is returned for a source configuration the server
// refuses as wrong (a database that does not exist). It is permanent.
var ErrSourceConfig = errors.New("source configuration refused")

// tableBatch is how many tables are read before their profiles, which
// query the same connection: memory is bounded by it, not by the size of
// the catalogue.
const tableBatch = 100

// Emitter receives what a source extracts, in order: a container before
// what it holds.
type Emitter interface {
	Container(ctx context.Context, c Container) error
	Table(ctx context.Context, t Table) error
	// Warn reports a problem that does not stop the run (a table whose
	// row count could not be read).
	Warn(msg string)
	// Note writes a line to the job log.
	Note(msg string)
}

// Source extracts a catalogue.
type Source interface {
	Platform() string
	Extract(ctx context.Context, em Emitter) error
}

// filters are a source's compiled patterns and switches.
type filters struct {
	schema, table, view *recipe.Matcher
	tables, views       bool
	lineage             bool
}

func newFilters(c *recipe.SQLSource, schemaPattern *recipe.Pattern) (filters, error) {
	f := filters{tables: true, views: true, lineage: true}
	if c.IncludeTables != nil {
		f.tables = *c.IncludeTables
	}
	if c.IncludeViews != nil {
		f.views = *c.IncludeViews
	}
	if c.ViewLineage != nil {
		f.lineage = *c.ViewLineage
	}
	var err error
	if f.schema, err = schemaPattern.Compile(); err != nil {
		return f, err
	}
	if f.table, err = c.TablePattern.Compile(); err != nil {
		return f, err
	}
	// Like DataHub, view_pattern is table_pattern unless set.
	vp := c.ViewPattern
	if vp == nil {
		vp = c.TablePattern
	}
	if f.view, err = vp.Compile(); err != nil {
		return f, err
	}
	return f, nil
}

// keep tells whether a relation is extracted. Like DataHub, table and view
// patterns match the full name (db.schema.table).
func (f filters) keep(fullName string, view bool) bool {
	if view {
		return f.views && f.view.Allowed(fullName)
	}
	return f.tables && f.table.Allowed(fullName)
}

// NewSource builds the source of a resolved section.
func NewSource(s recipe.Section) (Source, error) {
	cfg, err := recipe.DecodeConfig(s)
	if err != nil {
		return nil, err
	}
	switch c := cfg.(type) {
	case *recipe.PostgresSource:
		f, err := newFilters(&c.SQLSource, c.SchemaPattern)
		if err != nil {
			return nil, err
		}
		if err := applyURI(&c.SQLSource, &c.Database); err != nil {
			return nil, err
		}
		if c.HostPort == "" {
			c.HostPort = recipe.HostPort(s.Type, nil)
		}
		return &postgresSource{cfg: c, filters: f}, nil
	case *recipe.MySQLSource:
		p := c.DatabasePattern
		if p == nil {
			p = c.SchemaPattern // DataHub's older name for it
		}
		f, err := newFilters(&c.SQLSource, p)
		if err != nil {
			return nil, err
		}
		if err := applyURI(&c.SQLSource, &c.Database); err != nil {
			return nil, err
		}
		if c.HostPort == "" {
			c.HostPort = recipe.HostPort(s.Type, nil)
		}
		return &mysqlSource{cfg: c, filters: f}, nil
	}
	return nil, fmt.Errorf("%w: %q is not a source", recipe.ErrInvalid, s.Type)
}

// domainsOf compiles a source's domain key: the domain of a name
// (db[.schema][.table]) is the first, in the order written, whose pattern
// allows it; domains written by name, not URN, are left out (the recipe's
// notices say so).
func domainsOf(r *recipe.Recipe, s recipe.Section) (func(name string) string, error) {
	cfg, err := recipe.DecodeConfig(s)
	if err != nil {
		return nil, err
	}
	var d map[string]*recipe.Pattern
	switch c := cfg.(type) {
	case *recipe.PostgresSource:
		d = c.Domain
	case *recipe.MySQLSource:
		d = c.Domain
	}
	var urns []string
	var matchers []*recipe.Matcher
	for _, k := range recipe.Ordered(r, "source.config.domain", d) {
		if !strings.HasPrefix(k, "urn:li:domain:") {
			continue
		}
		m, err := d[k].Compile()
		if err != nil {
			return nil, err
		}
		urns, matchers = append(urns, k), append(matchers, m)
	}
	if len(urns) == 0 {
		return nil, nil
	}
	return func(name string) string {
		for i, m := range matchers {
			if m.Allowed(name) {
				return urns[i]
			}
		}
		return ""
	}, nil
}

// sameAddress checks that a source whose address is written literally (as
// the policy wants it) still connects there once resolved: a resolved
// password may not move it (an "@" or "/" in a sqlalchemy_uri's password).
func sameAddress(written, resolved recipe.Section) error {
	w := recipe.HostPort(written.Type, written.Config)
	if strings.Contains(w, "$") || w == recipe.HostPort(resolved.Type, resolved.Config) {
		return nil
	}
	return fmt.Errorf("%w: once its references are resolved, the source no longer connects to %s, the address written; URL-encode the values of a sqlalchemy_uri",
		ErrSourceConfig, w)
}

// applyURI takes the connection from a resolved sqlalchemy_uri, as DataHub
// does: host and port, user and password, the database when its path names
// one, and its query as options (over those of options).
func applyURI(c *recipe.SQLSource, database *string) error {
	if c.SQLAlchemyURI == "" {
		return nil
	}
	u, err := url.Parse(c.SQLAlchemyURI)
	if err != nil || u.Host == "" {
		// The URI holds the password: never show the parser's text.
		return fmt.Errorf("%w: sqlalchemy_uri is not a valid URI once resolved", ErrSourceConfig)
	}
	c.HostPort = u.Host
	if u.User != nil {
		c.Username = u.User.Username()
		if p, ok := u.User.Password(); ok {
			c.Password = p
		}
	}
	if db := strings.TrimPrefix(u.Path, "/"); db != "" {
		*database = db
	}
	if q := u.Query(); len(q) > 0 {
		opts := map[string]string{}
		for k, v := range c.Options {
			opts[k] = v
		}
		for k, v := range q {
			opts[k] = v[0]
		}
		c.Options = opts
	}
	return nil
}

// chunks splits names into batches of at most n.
func chunks(names []string, n int) [][]string {
	var out [][]string
	for len(names) > n {
		out = append(out, names[:n])
		names = names[n:]
	}
	if len(names) > 0 {
		out = append(out, names)
	}
	return out
}

// relation is a table or view listed before its details are read.
type relation struct {
	name string
	view bool
}

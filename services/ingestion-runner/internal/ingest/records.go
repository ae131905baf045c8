// Package ingest runs metadata ingestion recipes: a source (postgres,
// mysql) reads a catalogue one schema at a time, streamed or in batches of
// tables, each entity becomes a typed Record in DataHub's shape (URNs and
// aspects), and a sink (file, console, outpost, http, datahub-rest) takes
// the records in batches and encodes them once. Memory is bounded by the
// batch, not by the size of the catalogue.
package ingest

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Entity types of MetadataRecord.entity_type.
const (
	EntityDatabase = "database"
	EntitySchema   = "schema"
	EntityTable    = "table"
	EntityView     = "view"
)

// Container is a database or (PostgreSQL) a schema.
type Container struct {
	Database string
	// Schema is empty for a database.
	Schema string
}

// Table is a table or view with everything read about it.
type Table struct {
	Database, Schema, Name string // Schema is empty on MySQL
	View                   bool
	Materialized           bool
	Comment                string
	ViewDefinition         string
	Columns                []Column
	PrimaryKey             []string
	ForeignKeys            []ForeignKey
	// Profile is set when profiling is enabled (tables only).
	Profile *Profile
	// Upstreams are what a view reads (with include_view_lineage).
	Upstreams []Ref
}

// Ref names a table or view of the source.
type Ref struct {
	Database, Schema, Name string
}

// Profile is DataHub's datasetProfile of a table.
type Profile struct {
	RowCount int64
	// Fields are the column profiles, in ordinal order; none at table
	// level only.
	Fields []FieldProfile
}

// FieldProfile is one column's DatasetFieldProfile: counts always, the
// rest when computed (numbers as text, as DataHub writes them).
type FieldProfile struct {
	Path                          string
	NullCount, UniqueCount        *int64
	NullProportion, UniqueProp    *float64
	Min, Max, Mean, Median, Stdev *string
	SampleValues                  []string
}

// Column is one column, in ordinal order within its table.
type Column struct {
	Name     string
	Type     string
	Nullable bool
	Ordinal  int
	Comment  string
}

// ForeignKey is one foreign key constraint.
type ForeignKey struct {
	Name                             string
	Columns                          []string
	RefDatabase, RefSchema, RefTable string
	RefColumns                       []string
}

// namer builds DataHub names and URNs for one source.
type namer struct {
	platform string
	instance string // platform_instance, may be empty
	env      string
	now      func() time.Time
	// lowercase is DataHub's convert_urns_to_lowercase.
	lowercase bool
	// domain, when set, is the domain URN of a database, schema or table
	// by its name (db[.schema][.table]), "" for none.
	domain func(name string) string
	// transform, when set, changes a dataset's aspects before they are
	// written (the recipe's transformers).
	transform func(urn string, aspects map[string]map[string]any)
	// urns, when set, caches container URNs (an md5 each).
	urns *urnCache
}

func (n namer) platformURN() string { return "urn:li:dataPlatform:" + n.platform }

// datasetName is DataHub's dataset name: [instance.]db[.schema].table.
func (n namer) datasetName(db, schema, table string) string {
	parts := make([]string, 0, 4)
	if n.instance != "" {
		parts = append(parts, n.instance)
	}
	parts = append(parts, db)
	if schema != "" {
		parts = append(parts, schema)
	}
	return strings.Join(append(parts, table), ".")
}

func (n namer) datasetURN(db, schema, table string) string {
	name := n.datasetName(db, schema, table)
	if n.lowercase {
		name = strings.ToLower(name)
	}
	return fmt.Sprintf("urn:li:dataset:(%s,%s,%s)", n.platformURN(), name, n.env)
}

// containerURN follows DataHub's container keys: the md5 of the key's
// properties as compact JSON with sorted keys.
func (n namer) containerURN(c Container) string {
	if n.urns != nil {
		if u, ok := n.urns.get(c); ok {
			return u
		}
	}
	key := n.containerKey(c)
	raw, _ := json.Marshal(key) // map keys are sorted by encoding/json
	sum := md5.Sum(raw)
	u := "urn:li:container:" + hex.EncodeToString(sum[:])
	if n.urns != nil {
		n.urns.put(c, u)
	}
	return u
}

// containerKeyOf is the container key as containerProperties writes it.
func (n namer) containerKeyOf(c Container) containerKey {
	return containerKey{platform: n.platform, env: n.env, database: c.Database, schema: c.Schema, instance: n.instance}
}

// urnCache keeps the URNs of the last containers: every table of a schema
// names the same one.
type urnCache struct {
	keys [2]Container
	urns [2]string
	next int
}

func (c *urnCache) get(k Container) (string, bool) {
	for i := range c.keys {
		if c.urns[i] != "" && c.keys[i] == k {
			return c.urns[i], true
		}
	}
	return "", false
}

func (c *urnCache) put(k Container, urn string) {
	c.keys[c.next], c.urns[c.next] = k, urn
	c.next = (c.next + 1) % len(c.keys)
}

func (n namer) containerKey(c Container) map[string]any {
	key := map[string]any{"platform": n.platform, "env": n.env, "database": c.Database}
	if n.instance != "" {
		key["instance"] = n.instance
	}
	if c.Schema != "" {
		key["schema"] = c.Schema
	}
	return key
}

func (n namer) containerRecord(c Container) *Record {
	rec := &Record{
		URN:        n.containerURN(c),
		EntityType: EntityDatabase,
		Platform:   n.platform,
		Name:       c.Database,
	}
	subType := "Database"
	props := &containerProperties{name: c.Database, qualifiedName: c.Database, key: n.containerKeyOf(c)}
	rec.add("dataPlatformInstance", platformInstanceAspect{platform: n.platformURN()})
	if c.Schema != "" {
		rec.EntityType, rec.Name = EntitySchema, c.Database+"."+c.Schema
		subType = "Schema"
		props.name, props.qualifiedName = c.Schema, rec.Name
		rec.add("container", containerAspect{urn: n.containerURN(Container{Database: c.Database})})
	}
	rec.add("containerProperties", props)
	n.addDomain(rec, rec.Name)
	rec.add("subTypes", subTypesAspect{name: subType})
	return rec
}

func (n namer) tableRecord(t Table) *Record {
	urn := n.datasetURN(t.Database, t.Schema, t.Name)
	name := n.datasetName(t.Database, t.Schema, t.Name)
	rec := &Record{URN: urn, EntityType: EntityTable, Platform: n.platform, Name: name}
	subType := "Table"
	if t.View {
		rec.EntityType, subType = EntityView, "View"
	}
	rec.add("datasetProperties", &datasetProperties{name: t.Name, qualifiedName: name, description: t.Comment})
	rec.add("schemaMetadata", &schemaMetadata{n: n, t: &t, urn: urn, name: name})
	rec.add("subTypes", subTypesAspect{name: subType})
	rec.add("container", containerAspect{urn: n.containerURN(Container{Database: t.Database, Schema: t.Schema})})
	if t.View {
		rec.add("viewProperties", viewProperties{materialized: t.Materialized, logic: t.ViewDefinition})
	}
	if t.Profile != nil {
		rec.add("datasetProfile", &datasetProfile{at: n.now().UnixMilli(), columns: len(t.Columns), p: t.Profile})
	}
	if len(t.Upstreams) > 0 {
		ups := make([]string, len(t.Upstreams))
		for i, u := range t.Upstreams {
			ups[i] = n.datasetURN(u.Database, u.Schema, u.Name)
		}
		rec.add("upstreamLineage", upstreamLineage(ups))
	}
	n.addDomain(rec, strings.Join(nonEmpty(t.Database, t.Schema, t.Name), "."))
	if n.transform != nil {
		n.applyTransform(rec)
	}
	return rec
}

// applyTransform runs the recipe's transformers on a generic view of the
// aspects they read and write (datasetProperties and those they add); the
// other aspects stay typed.
func (n namer) applyTransform(rec *Record) {
	view := map[string]map[string]any{}
	if i := rec.index("datasetProperties"); i >= 0 {
		view["datasetProperties"] = rec.aspects[i].value.(*datasetProperties).generic()
	}
	n.transform(rec.URN, view)
	for name, a := range view {
		rec.set(name, genericAspect(a))
	}
}

// addDomain sets DataHub's domains aspect when a domain takes name.
func (n namer) addDomain(rec *Record, name string) {
	if n.domain == nil {
		return
	}
	if d := n.domain(name); d != "" {
		rec.add("domains", domainsAspect{urn: d})
	}
}

func nonEmpty(parts ...string) []string {
	out := parts[:0:0]
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

func fieldURN(dataset, column string) string {
	return fmt.Sprintf("urn:li:schemaField:(%s,%s)", dataset, column)
}

// dataHubType maps a native column type onto DataHub's SchemaFieldDataType
// union member.
func dataHubType(native string) string {
	t := strings.ToLower(strings.TrimSpace(native))
	has := func(prefixes ...string) bool {
		for _, p := range prefixes {
			if strings.HasPrefix(t, p) {
				return true
			}
		}
		return false
	}
	const ns = "com.linkedin.schema."
	switch {
	case strings.HasSuffix(t, "[]") || has("array"):
		return ns + "ArrayType"
	case has("bool"):
		return ns + "BooleanType"
	case has("int", "smallint", "bigint", "tinyint", "mediumint", "serial", "numeric", "decimal", "float", "double", "real", "money"):
		return ns + "NumberType"
	case has("date") && !has("datetime"):
		return ns + "DateType"
	case has("timestamp", "datetime", "time", "interval", "year"):
		return ns + "TimeType"
	case has("bytea", "blob", "tinyblob", "mediumblob", "longblob", "binary", "varbinary", "bit"):
		return ns + "BytesType"
	case has("enum"):
		return ns + "EnumType"
	case has("json", "jsonb"):
		return ns + "RecordType"
	case has("char", "varchar", "character", "text", "tinytext", "mediumtext", "longtext", "uuid", "citext", "name", "set", "xml", "inet", "cidr"):
		return ns + "StringType"
	}
	return ns + "NullType"
}

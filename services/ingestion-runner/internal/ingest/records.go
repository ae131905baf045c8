// Package ingest runs metadata ingestion recipes: a source (postgres,
// mysql) reads a catalogue one schema and one batch of tables at a time,
// each entity becomes a MetadataRecord in DataHub's shape (URNs and
// aspects), and a sink (file, console, outpost, http, datahub-rest) takes
// the records in batches. Memory is bounded by the batch, not by the size
// of the catalogue.
package ingest

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	ingestv1 "github.com/outposthq/outpost/proto/outpost/ingest/v1"
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
	key := n.containerKey(c)
	raw, _ := json.Marshal(key) // map keys are sorted by encoding/json
	sum := md5.Sum(raw)
	return "urn:li:container:" + hex.EncodeToString(sum[:])
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

func (n namer) containerRecord(c Container) (*ingestv1.MetadataRecord, error) {
	rec := &ingestv1.MetadataRecord{
		Urn:        n.containerURN(c),
		EntityType: EntityDatabase,
		Platform:   n.platform,
		Name:       c.Database,
	}
	subType := "Database"
	name := c.Database
	aspects := map[string]map[string]any{
		"dataPlatformInstance": {"platform": n.platformURN()},
	}
	if c.Schema != "" {
		rec.EntityType, rec.Name = EntitySchema, c.Database+"."+c.Schema
		subType, name = "Schema", c.Schema
		aspects["container"] = map[string]any{"container": n.containerURN(Container{Database: c.Database})}
	}
	custom := map[string]any{}
	for k, v := range n.containerKey(c) {
		custom[k] = v
	}
	aspects["containerProperties"] = map[string]any{"name": name, "qualifiedName": rec.Name, "customProperties": custom}
	n.addDomain(aspects, rec.Name)
	aspects["subTypes"] = map[string]any{"typeNames": []any{subType}}
	return withAspects(rec, aspects)
}

func (n namer) tableRecord(t Table) (*ingestv1.MetadataRecord, error) {
	urn := n.datasetURN(t.Database, t.Schema, t.Name)
	name := n.datasetName(t.Database, t.Schema, t.Name)
	rec := &ingestv1.MetadataRecord{Urn: urn, EntityType: EntityTable, Platform: n.platform, Name: name}
	subType := "Table"
	if t.View {
		rec.EntityType, subType = EntityView, "View"
	}
	props := map[string]any{"name": t.Name, "qualifiedName": name, "customProperties": map[string]any{}}
	if t.Comment != "" {
		props["description"] = t.Comment
	}
	keys := map[string]bool{}
	for _, k := range t.PrimaryKey {
		keys[k] = true
	}
	fields := make([]any, len(t.Columns))
	for i, c := range t.Columns {
		f := map[string]any{
			"fieldPath":      c.Name,
			"nativeDataType": c.Type,
			"type":           map[string]any{"type": map[string]any{dataHubType(c.Type): map[string]any{}}},
			"nullable":       c.Nullable,
			"recursive":      false,
			"isPartOfKey":    keys[c.Name],
		}
		if c.Comment != "" {
			f["description"] = c.Comment
		}
		fields[i] = f
	}
	schema := map[string]any{
		"schemaName":     name,
		"platform":       n.platformURN(),
		"version":        0,
		"hash":           "",
		"platformSchema": map[string]any{"com.linkedin.schema.MySqlDDL": map[string]any{"tableSchema": ""}},
		"fields":         fields,
	}
	if len(t.PrimaryKey) > 0 {
		schema["primaryKeys"] = strs(t.PrimaryKey)
	}
	if len(t.ForeignKeys) > 0 {
		fks := make([]any, len(t.ForeignKeys))
		for i, fk := range t.ForeignKeys {
			ref := n.datasetURN(fk.RefDatabase, fk.RefSchema, fk.RefTable)
			src, dst := make([]any, len(fk.Columns)), make([]any, len(fk.RefColumns))
			for j, c := range fk.Columns {
				src[j] = fieldURN(urn, c)
			}
			for j, c := range fk.RefColumns {
				dst[j] = fieldURN(ref, c)
			}
			fks[i] = map[string]any{"name": fk.Name, "foreignDataset": ref, "sourceFields": src, "foreignFields": dst}
		}
		schema["foreignKeys"] = fks
	}
	parent := Container{Database: t.Database, Schema: t.Schema}
	aspects := map[string]map[string]any{
		"datasetProperties": props,
		"schemaMetadata":    schema,
		"subTypes":          {"typeNames": []any{subType}},
		"container":         {"container": n.containerURN(parent)},
	}
	if t.View {
		aspects["viewProperties"] = map[string]any{"materialized": t.Materialized, "viewLogic": t.ViewDefinition, "viewLanguage": "SQL"}
	}
	if t.Profile != nil {
		aspects["datasetProfile"] = n.profileAspect(t)
	}
	if len(t.Upstreams) > 0 {
		ups := make([]any, len(t.Upstreams))
		for i, u := range t.Upstreams {
			ups[i] = map[string]any{
				"dataset":    n.datasetURN(u.Database, u.Schema, u.Name),
				"type":       "VIEW",
				"auditStamp": map[string]any{"time": 0, "actor": "urn:li:corpuser:unknown"},
			}
		}
		aspects["upstreamLineage"] = map[string]any{"upstreams": ups}
	}
	n.addDomain(aspects, strings.Join(nonEmpty(t.Database, t.Schema, t.Name), "."))
	if n.transform != nil {
		n.transform(urn, aspects)
	}
	return withAspects(rec, aspects)
}

func (n namer) profileAspect(t Table) map[string]any {
	p := map[string]any{
		"timestampMillis": n.now().UnixMilli(),
		"rowCount":        t.Profile.RowCount,
		"columnCount":     len(t.Columns),
	}
	if len(t.Profile.Fields) == 0 {
		return p
	}
	fps := make([]any, len(t.Profile.Fields))
	for i, f := range t.Profile.Fields {
		m := map[string]any{"fieldPath": f.Path}
		for k, v := range map[string]*int64{"nullCount": f.NullCount, "uniqueCount": f.UniqueCount} {
			if v != nil {
				m[k] = *v
			}
		}
		for k, v := range map[string]*float64{"nullProportion": f.NullProportion, "uniqueProportion": f.UniqueProp} {
			if v != nil {
				m[k] = *v
			}
		}
		for k, v := range map[string]*string{"min": f.Min, "max": f.Max, "mean": f.Mean, "median": f.Median, "stdev": f.Stdev} {
			if v != nil {
				m[k] = *v
			}
		}
		if f.SampleValues != nil {
			m["sampleValues"] = strs(f.SampleValues)
		}
		fps[i] = m
	}
	p["fieldProfiles"] = fps
	return p
}

// addDomain sets DataHub's domains aspect when a domain takes name.
func (n namer) addDomain(aspects map[string]map[string]any, name string) {
	if n.domain == nil {
		return
	}
	if d := n.domain(name); d != "" {
		aspects["domains"] = map[string]any{"domains": []any{d}}
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

func strs(in []string) []any {
	out := make([]any, len(in))
	for i, s := range in {
		out[i] = s
	}
	return out
}

func withAspects(rec *ingestv1.MetadataRecord, aspects map[string]map[string]any) (*ingestv1.MetadataRecord, error) {
	rec.Aspects = make(map[string]*structpb.Struct, len(aspects))
	for name, a := range aspects {
		s, err := structpb.NewStruct(a)
		if err != nil {
			return nil, fmt.Errorf("aspect %s of %s: %w", name, rec.GetUrn(), err)
		}
		rec.Aspects[name] = s
	}
	return rec, nil
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

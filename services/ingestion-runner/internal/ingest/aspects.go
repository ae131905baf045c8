package ingest

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	ingestv1 "github.com/outposthq/outpost/proto/outpost/ingest/v1"
)

// Record is one entity with its aspects, typed as the sources build them;
// a sink encodes it once, as JSON (file, console, http, datahub-rest) or
// as the MetadataRecord message (outpost).
type Record struct {
	URN, EntityType, Platform, Name string
	// aspects are in the order added; JSON writes them by name.
	aspects []namedAspect
}

type namedAspect struct {
	name  string
	value aspect
}

// aspect is one DataHub aspect that writes itself as JSON, keys sorted.
type aspect interface {
	writeJSON(w *jsonWriter)
}

func (r *Record) add(name string, a aspect) {
	r.aspects = append(r.aspects, namedAspect{name, a})
}

func (r *Record) index(name string) int {
	for i, a := range r.aspects {
		if a.name == name {
			return i
		}
	}
	return -1
}

// set replaces an aspect or adds it.
func (r *Record) set(name string, a aspect) {
	if i := r.index(name); i >= 0 {
		r.aspects[i].value = a
		return
	}
	r.add(name, a)
}

// sorted is the aspects by name, as protojson orders a map.
func (r *Record) sorted() []namedAspect {
	out := slices.Clone(r.aspects)
	slices.SortFunc(out, func(a, b namedAspect) int { return strings.Compare(a.name, b.name) })
	return out
}

// AppendJSON appends the record as one compact line of the file sink: the
// protojson of MetadataRecord with proto field names, as written before
// records were typed.
func (r *Record) AppendJSON(b []byte) ([]byte, error) {
	w := jsonWriter{b: b}
	w.open('{')
	for _, f := range [...][2]string{{"urn", r.URN}, {"entity_type", r.EntityType}, {"platform", r.Platform}, {"name", r.Name}} {
		if f[1] != "" { // proto3: an empty string is not written
			w.field(f[0], f[1])
		}
	}
	if len(r.aspects) > 0 {
		w.key("aspects")
		w.open('{')
		for _, a := range r.sorted() {
			w.key(a.name)
			a.value.writeJSON(&w)
		}
		w.close('}')
	}
	w.close('}')
	if w.err != nil {
		return b, fmt.Errorf("encode %s: %w", r.URN, w.err)
	}
	return w.b, nil
}

// aspectJSON is one aspect's JSON.
func aspectJSON(a aspect) ([]byte, error) {
	w := jsonWriter{}
	a.writeJSON(&w)
	return w.b, w.err
}

// Proto is the record as the outpost sink publishes it.
func (r *Record) Proto() (*ingestv1.MetadataRecord, error) {
	m := &ingestv1.MetadataRecord{Urn: r.URN, EntityType: r.EntityType, Platform: r.Platform, Name: r.Name}
	if len(r.aspects) == 0 {
		return m, nil
	}
	m.Aspects = make(map[string]*structpb.Struct, len(r.aspects))
	for _, a := range r.aspects {
		raw, err := aspectJSON(a.value)
		if err != nil {
			return nil, fmt.Errorf("aspect %s of %s: %w", a.name, r.URN, err)
		}
		s := &structpb.Struct{}
		if err := protojson.Unmarshal(raw, s); err != nil {
			return nil, fmt.Errorf("aspect %s of %s: %w", a.name, r.URN, err)
		}
		m.Aspects[a.name] = s
	}
	return m, nil
}

type platformInstanceAspect struct{ platform string }

func (a platformInstanceAspect) writeJSON(w *jsonWriter) {
	w.open('{')
	w.field("platform", a.platform)
	w.close('}')
}

type containerAspect struct{ urn string }

func (a containerAspect) writeJSON(w *jsonWriter) {
	w.open('{')
	w.field("container", a.urn)
	w.close('}')
}

type subTypesAspect struct{ name string }

func (a subTypesAspect) writeJSON(w *jsonWriter) {
	w.open('{')
	w.key("typeNames")
	w.open('[')
	w.str(a.name)
	w.close(']')
	w.close('}')
}

type domainsAspect struct{ urn string }

func (a domainsAspect) writeJSON(w *jsonWriter) {
	w.open('{')
	w.key("domains")
	w.open('[')
	w.str(a.urn)
	w.close(']')
	w.close('}')
}

// containerKey is DataHub's container key, written as containerProperties'
// customProperties.
type containerKey struct {
	platform, env, database, schema, instance string
}

type containerProperties struct {
	name, qualifiedName string
	key                 containerKey
}

func (a *containerProperties) writeJSON(w *jsonWriter) {
	w.open('{')
	w.key("customProperties")
	w.open('{')
	w.field("database", a.key.database)
	w.field("env", a.key.env)
	if a.key.instance != "" {
		w.field("instance", a.key.instance)
	}
	w.field("platform", a.key.platform)
	if a.key.schema != "" {
		w.field("schema", a.key.schema)
	}
	w.close('}')
	w.field("name", a.name)
	w.field("qualifiedName", a.qualifiedName)
	w.close('}')
}

type datasetProperties struct {
	name, qualifiedName, description string
}

func (a *datasetProperties) writeJSON(w *jsonWriter) {
	w.open('{')
	w.key("customProperties")
	w.open('{')
	w.close('}')
	if a.description != "" {
		w.field("description", a.description)
	}
	w.field("name", a.name)
	w.field("qualifiedName", a.qualifiedName)
	w.close('}')
}

// generic is the aspect as the transformers take it.
func (a *datasetProperties) generic() map[string]any {
	m := map[string]any{"name": a.name, "qualifiedName": a.qualifiedName, "customProperties": map[string]any{}}
	if a.description != "" {
		m["description"] = a.description
	}
	return m
}

// genericAspect is an aspect a transformer set: a JSON-like tree.
type genericAspect map[string]any

func (a genericAspect) writeJSON(w *jsonWriter) { w.value(map[string]any(a)) }

type viewProperties struct {
	materialized bool
	logic        string
}

func (a viewProperties) writeJSON(w *jsonWriter) {
	w.open('{')
	w.key("materialized")
	w.boolean(a.materialized)
	w.field("viewLanguage", "SQL")
	w.field("viewLogic", a.logic)
	w.close('}')
}

// upstreamLineage holds the URNs of what a view reads.
type upstreamLineage []string

func (a upstreamLineage) writeJSON(w *jsonWriter) {
	w.open('{')
	w.key("upstreams")
	w.open('[')
	for _, u := range a {
		w.open('{')
		w.key("auditStamp")
		w.open('{')
		w.field("actor", "urn:li:corpuser:unknown")
		w.key("time")
		w.num(0)
		w.close('}')
		w.field("dataset", u)
		w.field("type", "VIEW")
		w.close('}')
	}
	w.close(']')
	w.close('}')
}

// schemaMetadata is written from the table it describes.
type schemaMetadata struct {
	n         namer
	t         *Table
	urn, name string
}

func (a *schemaMetadata) writeJSON(w *jsonWriter) {
	t := a.t
	w.open('{')
	w.key("fields")
	w.open('[')
	for _, c := range t.Columns {
		w.open('{')
		if c.Comment != "" {
			w.field("description", c.Comment)
		}
		w.field("fieldPath", c.Name)
		w.key("isPartOfKey")
		w.boolean(slices.Contains(t.PrimaryKey, c.Name))
		w.field("nativeDataType", c.Type)
		w.key("nullable")
		w.boolean(c.Nullable)
		w.key("recursive")
		w.boolean(false)
		w.key("type")
		w.open('{')
		w.key("type")
		w.open('{')
		w.key(dataHubType(c.Type))
		w.open('{')
		w.close('}')
		w.close('}')
		w.close('}')
		w.close('}')
	}
	w.close(']')
	if len(t.ForeignKeys) > 0 {
		w.key("foreignKeys")
		w.open('[')
		for _, fk := range t.ForeignKeys {
			ref := a.n.datasetURN(fk.RefDatabase, fk.RefSchema, fk.RefTable)
			w.open('{')
			w.field("foreignDataset", ref)
			w.key("foreignFields")
			w.open('[')
			for _, c := range fk.RefColumns {
				w.str(fieldURN(ref, c))
			}
			w.close(']')
			w.field("name", fk.Name)
			w.key("sourceFields")
			w.open('[')
			for _, c := range fk.Columns {
				w.str(fieldURN(a.urn, c))
			}
			w.close(']')
			w.close('}')
		}
		w.close(']')
	}
	w.field("hash", "")
	w.field("platform", a.n.platformURN())
	w.key("platformSchema")
	w.open('{')
	w.key("com.linkedin.schema.MySqlDDL")
	w.open('{')
	w.field("tableSchema", "")
	w.close('}')
	w.close('}')
	if len(t.PrimaryKey) > 0 {
		w.key("primaryKeys")
		w.strs(t.PrimaryKey)
	}
	w.field("schemaName", a.name)
	w.key("version")
	w.num(0)
	w.close('}')
}

type datasetProfile struct {
	at      int64
	columns int
	p       *Profile
}

func (a *datasetProfile) writeJSON(w *jsonWriter) {
	w.open('{')
	w.key("columnCount")
	w.num(float64(a.columns))
	if len(a.p.Fields) > 0 {
		w.key("fieldProfiles")
		w.open('[')
		for _, f := range a.p.Fields {
			w.open('{')
			w.field("fieldPath", f.Path)
			optString(w, "max", f.Max)
			optString(w, "mean", f.Mean)
			optString(w, "median", f.Median)
			optString(w, "min", f.Min)
			if f.NullCount != nil {
				w.key("nullCount")
				w.num(float64(*f.NullCount))
			}
			if f.NullProportion != nil {
				w.key("nullProportion")
				w.num(*f.NullProportion)
			}
			if f.SampleValues != nil {
				w.key("sampleValues")
				w.strs(f.SampleValues)
			}
			optString(w, "stdev", f.Stdev)
			if f.UniqueCount != nil {
				w.key("uniqueCount")
				w.num(float64(*f.UniqueCount))
			}
			if f.UniqueProp != nil {
				w.key("uniqueProportion")
				w.num(*f.UniqueProp)
			}
			w.close('}')
		}
		w.close(']')
	}
	w.key("rowCount")
	w.num(float64(a.p.RowCount))
	w.key("timestampMillis")
	w.num(float64(a.at))
	w.close('}')
}

func optString(w *jsonWriter, k string, v *string) {
	if v != nil {
		w.field(k, *v)
	}
}

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"go.yaml.in/yaml/v3"
)

// Output formats of -o.
const (
	formatTable = "table"
	formatJSON  = "json"
	formatYAML  = "yaml"
)

var formats = []string{formatTable, formatJSON, formatYAML}

// column is one column of a table: its header and how a row's value is
// found (a dotted path into the JSON object, or a function).
type column struct {
	header string
	path   string
	value  func(row map[string]any) string
}

func col(header, path string) column { return column{header: header, path: path} }

// printer writes answers in the chosen format.
type printer struct {
	w      io.Writer
	format string
}

// print writes data (the API's answer, decoded) as JSON or YAML, or the
// rows as a table with cols.
func (p *printer) print(data any, rows []any, cols []column) error {
	switch p.format {
	case formatJSON:
		enc := json.NewEncoder(p.w)
		enc.SetIndent("", "  ")
		return enc.Encode(data)
	case formatYAML:
		enc := yaml.NewEncoder(p.w)
		enc.SetIndent(2)
		if err := enc.Encode(plain(data)); err != nil {
			return fmt.Errorf("encode yaml: %w", err)
		}
		return enc.Close()
	default:
		return p.table(rows, cols)
	}
}

// table writes rows under the headers of cols.
func (p *printer) table(rows []any, cols []column) error {
	tw := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	headers := make([]string, len(cols))
	for i, c := range cols {
		headers[i] = c.header
	}
	if _, err := fmt.Fprintln(tw, strings.Join(headers, "\t")); err != nil {
		return err
	}
	for _, r := range rows {
		obj, _ := r.(map[string]any)
		cells := make([]string, len(cols))
		for i, c := range cols {
			if c.value != nil {
				cells[i] = c.value(obj)
			} else {
				cells[i] = lookup(obj, c.path)
			}
			if cells[i] == "" {
				cells[i] = "-"
			}
		}
		if _, err := fmt.Fprintln(tw, strings.Join(cells, "\t")); err != nil {
			return err
		}
	}
	return tw.Flush()
}

// lookup returns the value at a dotted path of obj as text.
func lookup(obj map[string]any, path string) string {
	var cur any = obj
	for part := range strings.SplitSeq(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = m[part]
	}
	return text(cur)
}

// text renders one JSON value for a table cell.
func text(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case json.Number:
		return x.String()
	case bool:
		if x {
			return "true"
		}
		return "false"
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = text(e)
		}
		return strings.Join(parts, ",")
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + "=" + text(x[k])
		}
		return strings.Join(parts, ",")
	default:
		return fmt.Sprint(x)
	}
}

// plain turns json.Number into int64 or float64, so that YAML writes
// numbers, not strings.
func plain(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		if f, err := x.Float64(); err == nil {
			return f
		}
		return x.String()
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = plain(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = plain(e)
		}
		return out
	default:
		return v
	}
}

// list returns the array at key of an answer object (or the answer itself
// when it is an array).
func list(data any, key string) []any {
	if arr, ok := data.([]any); ok {
		return arr
	}
	if m, ok := data.(map[string]any); ok {
		if arr, ok := m[key].([]any); ok {
			return arr
		}
	}
	return nil
}

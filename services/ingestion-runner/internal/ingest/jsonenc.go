package ingest

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"unicode/utf8"
)

// errInvalidUTF8 is a string that is not UTF-8: JSON cannot carry it, and
// protojson, which wrote the records before, refused it too.
var errInvalidUTF8 = errors.New("invalid UTF-8 in string")

// jsonWriter appends compact JSON to b, written the way protojson writes a
// google.protobuf.Struct (the shape the sinks wrote before records were
// typed): object keys in the order the caller gives (every aspect writes
// them sorted, as protojson sorts a Struct's keys), numbers as float64,
// strings escaped only where JSON requires it (no HTML escaping). The
// first error sticks.
type jsonWriter struct {
	b     []byte
	err   error
	comma bool // a value was written at this level: the next one needs ","
}

// open starts an object or array.
func (w *jsonWriter) open(c byte) {
	w.sep()
	w.b = append(w.b, c)
	w.comma = false
}

// close ends an object or array.
func (w *jsonWriter) close(c byte) {
	w.b = append(w.b, c)
	w.comma = true
}

func (w *jsonWriter) sep() {
	if w.comma {
		w.b = append(w.b, ',')
	}
}

// key writes an object key; the value follows.
func (w *jsonWriter) key(k string) {
	w.sep()
	w.appendString(k)
	w.b = append(w.b, ':')
	w.comma = false
}

func (w *jsonWriter) str(s string) {
	w.sep()
	w.appendString(s)
	w.comma = true
}

func (w *jsonWriter) boolean(v bool) {
	w.sep()
	w.b = strconv.AppendBool(w.b, v)
	w.comma = true
}

// num writes a number as protojson writes a float64 (a Struct holds no
// integers): integers exactly up to 2^53.
func (w *jsonWriter) num(v float64) {
	w.sep()
	w.b = appendFloat(w.b, v)
	w.comma = true
}

func (w *jsonWriter) null() {
	w.sep()
	w.b = append(w.b, "null"...)
	w.comma = true
}

// strs writes a list of strings.
func (w *jsonWriter) strs(l []string) {
	w.open('[')
	for _, s := range l {
		w.str(s)
	}
	w.close(']')
}

// field writes "k": "v".
func (w *jsonWriter) field(k, v string) {
	w.key(k)
	w.str(v)
}

// stringMap writes a map of strings with sorted keys.
func (w *jsonWriter) stringMap(m map[string]string) {
	w.open('{')
	for _, k := range slices.Sorted(maps.Keys(m)) {
		w.field(k, m[k])
	}
	w.close('}')
}

// value writes a JSON-like tree (what transformers produce): maps with
// sorted keys, lists, strings, booleans, numbers and nil.
func (w *jsonWriter) value(v any) {
	switch x := v.(type) {
	case nil:
		w.null()
	case string:
		w.str(x)
	case bool:
		w.boolean(x)
	case int:
		w.num(float64(x))
	case int64:
		w.num(float64(x))
	case float64:
		w.num(x)
	case []any:
		w.open('[')
		for _, e := range x {
			w.value(e)
		}
		w.close(']')
	case []string:
		w.strs(x)
	case map[string]any:
		w.open('{')
		for _, k := range slices.Sorted(maps.Keys(x)) {
			w.key(k)
			w.value(x[k])
		}
		w.close('}')
	case map[string]string:
		w.stringMap(x)
	default:
		if w.err == nil {
			w.err = fmt.Errorf("cannot encode %T", v)
		}
		w.null()
	}
}

// appendString is protojson's string encoding: '"', '\\', control
// characters (below U+0020) escaped, everything else as is; invalid UTF-8 is an
// error.
func (w *jsonWriter) appendString(s string) {
	b := append(w.b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= ' ' && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			b = append(b, '\\')
			switch c {
			case '"', '\\':
				b = append(b, c)
			case '\b':
				b = append(b, 'b')
			case '\f':
				b = append(b, 'f')
			case '\n':
				b = append(b, 'n')
			case '\r':
				b = append(b, 'r')
			case '\t':
				b = append(b, 't')
			default:
				b = append(b, 'u')
				b = append(b, "0000"[1+(bits.Len32(uint32(c))-1)/4:]...)
				b = strconv.AppendUint(b, uint64(c), 16)
			}
			i++
			start = i
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			if w.err == nil {
				w.err = errInvalidUTF8
			}
		}
		i += n
	}
	b = append(b, s[start:]...)
	w.b = append(b, '"')
}

// appendFloat is protojson's (and encoding/json's) float64 format.
func appendFloat(b []byte, n float64) []byte {
	switch {
	case math.IsNaN(n):
		return append(b, `"NaN"`...)
	case math.IsInf(n, 1):
		return append(b, `"Infinity"`...)
	case math.IsInf(n, -1):
		return append(b, `"-Infinity"`...)
	}
	format := byte('f')
	if abs := math.Abs(n); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, n, format, -1, 64)
	if format == 'e' {
		// Clean up e-09 to e-9.
		if l := len(b); l >= 4 && b[l-4] == 'e' && b[l-3] == '-' && b[l-2] == '0' {
			b[l-2] = b[l-1]
			b = b[:l-1]
		}
	}
	return b
}

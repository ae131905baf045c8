package jobs

import (
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var timeType = reflect.TypeFor[time.Time]()

// fill sets every field reachable from v to a value that is not zero:
// pointers point somewhere, maps hold an entry, slices two elements.
func fill(v reflect.Value, n *int) {
	*n++
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), n)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k, n)
		fill(e, n)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		fill(s.Index(0), n)
		fill(s.Index(1), n)
		v.Set(s)
	case reflect.Struct:
		if v.Type() == timeType {
			v.Set(reflect.ValueOf(time.Date(2026, 1, 2, 3, 4, *n%60, 0, time.UTC)))
			return
		}
		for i := range v.NumField() {
			fill(v.Field(i), n)
		}
	case reflect.String:
		v.SetString("s" + time.Duration(*n).String())
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(*n))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(*n))
	case reflect.Float32, reflect.Float64:
		v.SetFloat(float64(*n) + 0.5)
	default:
		panic("fill: unexpected kind " + v.Kind().String() + " in a record")
	}
}

// shared returns the path of the first map, slice or pointer a and b have
// in common, "" when they share nothing.
func shared(a, b reflect.Value, path string) string {
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() {
			return ""
		}
		if a.Pointer() == b.Pointer() {
			return path
		}
		return shared(a.Elem(), b.Elem(), path)
	case reflect.Map:
		if a.IsNil() {
			return ""
		}
		if a.Pointer() == b.Pointer() {
			return path
		}
		it := a.MapRange()
		for it.Next() {
			if p := shared(it.Value(), b.MapIndex(it.Key()), path+"[key]"); p != "" {
				return p
			}
		}
	case reflect.Slice:
		if a.Len() == 0 {
			return ""
		}
		if a.Pointer() == b.Pointer() {
			return path
		}
		for i := range a.Len() {
			if p := shared(a.Index(i), b.Index(i), path+"[i]"); p != "" {
				return p
			}
		}
	case reflect.Struct:
		if a.Type() == timeType {
			return ""
		}
		for i := range a.NumField() {
			if p := shared(a.Field(i), b.Field(i), path+"."+a.Type().Field(i).Name); p != "" {
				return p
			}
		}
	}
	return ""
}

// Every field of a record, however deep, is copied and none is shared: a
// field added to the record (or to a task) without its copy in Clone
// fails here.
func TestCloneSharesNothing(t *testing.T) {
	r := new(Record)
	n := 0
	fill(reflect.ValueOf(r).Elem(), &n)
	require.NotNil(t, r.Task.Assertion.Checks[1].RowCount.Max, "filled to the leaves")

	c := r.Clone()
	require.Equal(t, r, c)
	require.Empty(t, shared(reflect.ValueOf(r), reflect.ValueOf(c), "Record"))

	// A change to the copy leaves the original alone, and back.
	c.History[0].Reason = "changed"
	c.Task.Command.Env["k"] = "changed"
	*c.Task.Assertion.Checks[0].RowCount.Min = -1
	require.NotEqual(t, r.History[0].Reason, c.History[0].Reason)
	require.NotEqual(t, int64(-1), *r.Task.Assertion.Checks[0].RowCount.Min)

	require.Nil(t, (*Record)(nil).Clone())
	empty := (&Record{}).Clone()
	require.Equal(t, &Record{}, empty, "nil maps and slices stay nil")
}

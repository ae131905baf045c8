package redact

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRedact(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		in     string
		want   string
	}{
		{name: "nothing to mask", in: "hello", want: "hello"},
		{name: "one value", values: []string{"hunter2"}, in: "password=hunter2;", want: "password=****;"},
		{name: "every occurrence", values: []string{"abc"}, in: "abc-abc abc", want: "****-**** ****"},
		{name: "value inside another", values: []string{"secret", "supersecretvalue"}, in: "x supersecretvalue y secret", want: "x **** y ****"},
		{name: "overlapping values", values: []string{"abcd", "cdef"}, in: "--abcdef--", want: "--****--"},
		{name: "self-overlapping", values: []string{"aa"}, in: "baaab", want: "b****b"},
		{name: "adjacent values merge", values: []string{"foo", "bar"}, in: "foobar", want: "****"},
		{name: "empty and blank values ignored", values: []string{"", "  "}, in: "a  b", want: "a  b"},
		{name: "multi-line value masked per line", values: []string{"-----BEGIN KEY-----\nMIIEvQIBADANBg\n-----END KEY-----"}, in: "key: MIIEvQIBADANBg", want: "key: ****"},
		{name: "unicode", values: []string{"pässwörd"}, in: "p=pässwörd!", want: "p=****!"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, New(tt.values...).Redact(tt.in))
		})
	}
}

func TestRedactAcrossBatch(t *testing.T) {
	r := New("tok-1")
	lines := []string{"first tok-1", "nothing here", "tok-1 tok-1"}
	r.Add("late-secret") // values resolved mid-job apply to later lines
	lines = append(lines, "late-secret and tok-1")
	var got []string
	for _, l := range lines {
		got = append(got, r.Redact(l))
	}
	require.Equal(t, []string{"first ****", "nothing here", "**** ****", "**** and ****"}, got)
	for _, l := range got {
		require.NotContains(t, l, "tok-1")
	}
}

func TestSafeCut(t *testing.T) {
	r := New("SECRET")
	s := "0123SECRET9"
	require.Equal(t, 4, r.SafeCut(s, 6), "moved to the start of the value")
	require.Equal(t, 4, r.SafeCut(s, 4), "already at a boundary")
	require.Equal(t, 10, r.SafeCut(s, 10))
	require.Equal(t, 6, New("SECRET").SafeCut("SECRETxx", 3), "value at 0: moved to its end")
	require.Equal(t, 3, New().SafeCut("abcdef", 3))
	require.Equal(t, 6, r.MaxLen())
}

func TestNilRedactor(t *testing.T) {
	var r *Redactor
	require.Equal(t, "x", r.Redact("x"))
	require.Zero(t, r.MaxLen())
	require.Equal(t, strings.Repeat("a", 3), r.Redact("aaa"))
}

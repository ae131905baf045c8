package jobs

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRecordLogs(t *testing.T) {
	attempts := func(r *Record) []int {
		var out []int
		for _, l := range r.Logs {
			out = append(out, l.Attempt)
		}
		return out
	}
	tests := []struct {
		name string
		add  []int
		want []int
	}{
		{name: "in order", add: []int{1, 2, 3}, want: []int{1, 2, 3}},
		{name: "a late outcome takes its place", add: []int{1, 3, 2}, want: []int{1, 2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Record{}
			for _, a := range tt.add {
				require.False(t, r.HasLogs(a, "tok"))
				require.True(t, r.AddLogs(AttemptLogs{Attempt: a, Token: "tok", FirstSeq: 1, Lines: []LogLine{{Text: "x"}}}))
				require.True(t, r.HasLogs(a, "tok"))
				require.False(t, r.HasLogs(a, "other"), "another dispatch's attempt of the same number")
			}
			require.Equal(t, tt.want, attempts(r))
		})
	}
	t.Run("bounded", func(t *testing.T) {
		r := &Record{}
		for a := 1; a <= MaxInlineLogAttempts; a++ {
			require.True(t, r.AddLogs(AttemptLogs{Attempt: a}))
		}
		require.False(t, r.AddLogs(AttemptLogs{Attempt: MaxInlineLogAttempts + 1}))
		require.Len(t, r.Logs, MaxInlineLogAttempts)
		require.Nil(t, r.Public().Logs, "not in the API's record answers")
	})
}

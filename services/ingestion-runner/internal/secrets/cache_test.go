package secrets

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// counting answers from values, or fails while down, counting calls.
type counting struct {
	values map[string]string
	down   bool
	calls  int
}

func (c *counting) Name() string { return "counting" }
func (c *counting) Lookup(_ context.Context, name string) (string, bool, error) {
	c.calls++
	if c.down {
		return "", false, errors.New("backend down")
	}
	v, ok := c.values[name]
	return v, ok, nil
}

func TestCached(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_700_000_000, 0)
	src := &counting{values: map[string]string{"A": "1"}}
	c := &Cached{Provider: src, TTL: time.Minute, Now: func() time.Time { return now }}
	require.Equal(t, "counting", c.Name())

	steps := []struct {
		name      string
		advance   time.Duration
		change    func()
		ref       string
		want      string
		found     bool
		wantErr   bool
		wantCalls int
	}{
		{name: "first lookup asks", ref: "A", want: "1", found: true, wantCalls: 1},
		{name: "within the TTL: cached", advance: 59 * time.Second, change: func() { src.values["A"] = "2" }, ref: "A", want: "1", found: true, wantCalls: 1},
		{name: "not found is cached too", ref: "B", wantCalls: 2},
		{name: "cached miss", change: func() { src.values["B"] = "b" }, ref: "B", wantCalls: 2},
		{name: "expired: asks again", advance: time.Second, ref: "A", want: "2", found: true, wantCalls: 3},
		{name: "errors are not cached", advance: time.Minute, change: func() { src.down = true }, ref: "A", wantErr: true, wantCalls: 4},
		{name: "after an error: asks again", change: func() { src.down = false }, ref: "A", want: "2", found: true, wantCalls: 5},
	}
	for _, s := range steps {
		now = now.Add(s.advance)
		if s.change != nil {
			s.change()
		}
		v, ok, err := c.Lookup(ctx, s.ref)
		if s.wantErr {
			require.Error(t, err, s.name)
		} else {
			require.NoError(t, err, s.name)
		}
		require.Equal(t, s.found, ok, s.name)
		require.Equal(t, s.want, v, s.name)
		require.Equal(t, s.wantCalls, src.calls, s.name)
	}

	require.Same(t, src, NewCached(src, 0).(*counting), "a TTL of 0 caches nothing")
	require.IsType(t, &Cached{}, NewCached(src, time.Second))
}

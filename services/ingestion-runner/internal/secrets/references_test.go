package secrets

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

// recorder knows every name and records the ones it was asked for.
type recorder struct{ asked []string }

func (r *recorder) Name() string { return "recorder" }

func (r *recorder) Lookup(_ context.Context, name string) (string, bool, error) {
	r.asked = append(r.asked, name)
	return "value-of-" + name, true, nil
}

func TestReferences(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr error
	}{
		{in: "plain", want: nil},
		{in: "${A} and ${B_2}${A}", want: []string{"A", "B_2", "A"}},
		{in: "$${LITERAL} ${X}", want: []string{"X"}},
		{in: "$HOME ${ok.name-1}", want: []string{"ok.name-1"}},
		{in: "${unclosed", wantErr: ErrInvalidReference},
		{in: "${1BAD}", wantErr: ErrInvalidReference},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := References(tt.in)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
	names, err := TreeReferences("", map[string]any{"a": "${X}", "b": []any{"${Y}", 3}, "c": map[string]any{"d": "${Z}"}})
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"X", "Y", "Z"}, names)
}

func TestAllowIsAskedBeforeProviders(t *testing.T) {
	errRefused := errors.New("refused")
	rec := &recorder{}
	r := &Resolver{Providers: []Provider{rec}, Allow: func(name string) error {
		if name == "FORBIDDEN" {
			return errRefused
		}
		return nil
	}}
	sess := r.NewSession()
	sess.Define("OUTPOST_RECIPE_FILE", "/tmp/r.yml")
	out, err := sess.Expand(context.Background(), "${OK} ${OUTPOST_RECIPE_FILE}")
	require.NoError(t, err)
	require.Equal(t, "value-of-OK /tmp/r.yml", out)
	_, err = sess.Expand(context.Background(), "${FORBIDDEN}")
	require.ErrorIs(t, err, errRefused)
	require.Equal(t, []string{"OK"}, rec.asked, "a refused name never reaches a provider")
}

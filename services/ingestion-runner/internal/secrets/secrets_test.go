package secrets

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

type failing struct{}

func (failing) Name() string { return "failing" }
func (failing) Lookup(context.Context, string) (string, bool, error) {
	return "", false, errors.New("backend down")
}

func TestExpand(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "DB_PASSWORD"), []byte("from-file\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "api-key"), []byte("k3y"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "SHADOWED"), []byte("file-value"), 0o600))
	// A symlink out of the directory must not be followed.
	outside := filepath.Join(t.TempDir(), "outside")
	require.NoError(t, os.WriteFile(outside, []byte("escaped"), 0o600))
	require.NoError(t, os.Symlink(outside, filepath.Join(dir, "ESCAPE")))
	// Kubernetes Secret volume layout: NAME -> ..data/NAME.
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "..2024_01", ""), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "..2024_01", "K8S"), []byte("mounted"), 0o600))
	require.NoError(t, os.Symlink("..2024_01", filepath.Join(dir, "..data")))
	require.NoError(t, os.Symlink(filepath.Join("..data", "K8S"), filepath.Join(dir, "K8S")))

	env := map[string]string{
		"OUTPOST_SECRET_TOKEN":  "tok",
		"OUTPOST_SECRET_EMPTY":  "",
		"SHADOWED":              "env-value",
		"AWS_SECRET_ACCESS_KEY": "runner-own",
	}
	envProvider := Env{Prefixes: []string{"OUTPOST_SECRET_", "SHADOWED"}, LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
	resolver := &Resolver{Providers: []Provider{envProvider, Dir{Path: dir}}}

	tests := []struct {
		name       string
		providers  []Provider
		in         string
		want       string
		wantValues []string
		wantErr    error
		wantMsg    string
	}{
		{name: "no reference", in: "plain $HOME text", want: "plain $HOME text"},
		{name: "env with allowed prefix", in: "--token=${OUTPOST_SECRET_TOKEN}", want: "--token=tok", wantValues: []string{"tok"}},
		{name: "empty env value is known", in: "[${OUTPOST_SECRET_EMPTY}]", want: "[]", wantValues: []string{""}},
		{name: "file, trailing newline dropped", in: "${DB_PASSWORD}", want: "from-file", wantValues: []string{"from-file"}},
		{name: "file name with dash", in: "${api-key}", want: "k3y", wantValues: []string{"k3y"}},
		{name: "env comes before files", in: "${SHADOWED}", want: "env-value", wantValues: []string{"env-value"}},
		{name: "kubernetes secret volume", in: "${K8S}", want: "mounted", wantValues: []string{"mounted"}},
		{name: "several and repeated", in: "${OUTPOST_SECRET_TOKEN}:${DB_PASSWORD}@${OUTPOST_SECRET_TOKEN}", want: "tok:from-file@tok", wantValues: []string{"tok", "from-file"}},
		{name: "escape", in: "$${DB_PASSWORD} and $$ and ${DB_PASSWORD}", want: "${DB_PASSWORD} and $$ and from-file", wantValues: []string{"from-file"}},
		{name: "runner env outside the prefixes", in: "${AWS_SECRET_ACCESS_KEY}", wantErr: ErrUnknownSecret, wantMsg: `unknown secret "AWS_SECRET_ACCESS_KEY"`},
		{name: "missing name", in: "x ${DB_PASS}", wantErr: ErrUnknownSecret, wantMsg: `unknown secret "DB_PASS"`},
		{name: "symlink out of the dir is refused", in: "${ESCAPE}", wantMsg: `secret "ESCAPE" from dir provider: read secret "ESCAPE": openat ESCAPE: path escapes from parent`},
		{name: "no env prefixes resolve nothing", providers: []Provider{Env{LookupEnv: envProvider.LookupEnv}}, in: "${OUTPOST_SECRET_TOKEN}", wantErr: ErrUnknownSecret},
		{name: "unclosed", in: "${DB_PASSWORD", wantErr: ErrInvalidReference},
		{name: "path traversal name", in: "${../etc/passwd}", wantErr: ErrInvalidReference},
		{name: "empty name", in: "${}", wantErr: ErrInvalidReference},
		{name: "provider failure is not unknown", providers: []Provider{failing{}}, in: "${X}", wantMsg: `secret "X" from failing provider: backend down`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := resolver
			if tt.providers != nil {
				r = &Resolver{Providers: tt.providers}
			}
			s := r.NewSession()
			got, err := s.Expand(context.Background(), tt.in)
			if tt.wantErr != nil || tt.wantMsg != "" {
				if tt.wantErr != nil {
					require.ErrorIs(t, err, tt.wantErr)
				} else {
					require.NotErrorIs(t, err, ErrUnknownSecret)
				}
				if tt.wantMsg != "" {
					require.EqualError(t, err, tt.wantMsg)
				}
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
			require.ElementsMatch(t, tt.wantValues, s.Values())
		})
	}
}

func TestErrorNeverHoldsValue(t *testing.T) {
	r := &Resolver{Providers: []Provider{Env{Prefixes: []string{"S_"}, LookupEnv: func(k string) (string, bool) {
		return "hunter2", k == "S_KNOWN"
	}}}}
	_, err := r.NewSession().Expand(context.Background(), "${S_KNOWN} ${S_UNKNOWN}")
	require.ErrorIs(t, err, ErrUnknownSecret)
	require.NotContains(t, err.Error(), "hunter2")
}

func TestDirRotation(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "TOKEN")
	require.NoError(t, os.WriteFile(p, []byte("v1"), 0o600))
	r := &Resolver{Providers: []Provider{Dir{Path: dir}}}
	first := r.NewSession()
	got, err := first.Expand(context.Background(), "${TOKEN}")
	require.NoError(t, err)
	require.Equal(t, "v1", got)

	require.NoError(t, os.WriteFile(p, []byte("v2"), 0o600))
	// One job sees one value; the next job sees the new one.
	got, err = first.Expand(context.Background(), "${TOKEN}")
	require.NoError(t, err)
	require.Equal(t, "v1", got)
	got, err = r.NewSession().Expand(context.Background(), "${TOKEN}")
	require.NoError(t, err)
	require.Equal(t, "v2", got)
}

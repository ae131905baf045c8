package ingest

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/policy"
)

func TestFileSinkInPolicyDir(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, "runs"), 0o755))
	require.NoError(t, os.Symlink(outside, filepath.Join(dir, "away")))
	p := &policy.Policy{FileSinkDir: dir}
	tests := []struct {
		name, filename, written string
	}{
		{"relative", "records.json", filepath.Join(dir, "records.json")},
		{"absolute inside", filepath.Join(dir, "runs", "r.json"), filepath.Join(dir, "runs", "r.json")},
		{"outside", filepath.Join(outside, "r.json"), ""},
		{"through a link", "away/r.json", ""},
		{"dot dot", "runs/../../r.json", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := newFileSinkIn(p, tt.filename)
			if tt.written == "" {
				require.ErrorIs(t, err, policy.ErrRefused)
				return
			}
			require.NoError(t, err)
			require.NoError(t, s.Write(context.Background(), []*Record{{URN: "urn:li:x"}}))
			require.NoError(t, s.Close(context.Background()))
			raw, err := os.ReadFile(tt.written)
			require.NoError(t, err)
			require.Contains(t, string(raw), "urn:li:x")
		})
	}
	entries, err := os.ReadDir(outside)
	require.NoError(t, err)
	require.Empty(t, entries)
}

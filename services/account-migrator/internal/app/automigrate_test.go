package app

import (
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/services/account-migrator/internal/config"
)

func TestAutoMigrationFromDirectory(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "team-a.yaml"), []byte("apiVersion: v1\nkind: Config\n# AUTO-SECRET"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "other.yaml"), []byte("x"), 0o600))
	key := make([]byte, config.KeySize)
	_, _ = rand.Read(key)
	e := newEnv(t, 1, func(c *config.Config) {
		c.KubeconfigKey = base64.StdEncoding.EncodeToString(key)
		c.AutoMigration = config.AutoMigration{Enabled: true, Pattern: "^team-", ZoneID: "z1", Interval: 50 * time.Millisecond, Directory: dir}
	})
	l := e.leases("z1")
	e.startWatcher("z1", "w1")
	lease := e.waitLease(l, "team-a", 1)
	require.NotEmpty(t, lease.GetSpec().GetKubeconfigSealed())
	acc := e.get("team-a")
	// ORPHANED when a reconcile pass ran before the watcher's first
	// heartbeat was read: the lease is out either way.
	require.Contains(t, []string{"ACTIVATING", "ORPHANED"}, acc.State)
	require.True(t, acc.Spec.HasInlineKubeconfig)
	require.Empty(t, e.get("other").State, "names not matching the pattern are not migrated")

	// The kubeconfig is never logged, and the source is never touched.
	require.NotContains(t, e.logs.String(), "AUTO-SECRET")
	raw, err := os.ReadFile(filepath.Join(dir, "team-a.yaml"))
	require.NoError(t, err)
	require.Contains(t, string(raw), "AUTO-SECRET")
}

package auth_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/auth"
	"github.com/outposthq/outpost/libs/kv"
)

// memOpener opens one shared in-memory bucket per name, as JetStream KV
// is shared by every replica.
type memOpener struct{ stores map[string]*kv.Memory }

func (m *memOpener) OpenStore(_ context.Context, bucket string) (kv.Store, error) {
	if m.stores == nil {
		m.stores = map[string]*kv.Memory{}
	}
	if m.stores[bucket] == nil {
		m.stores[bucket] = kv.NewMemory()
	}
	return m.stores[bucket], nil
}

func TestKeys(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	opener := &memOpener{}
	keys := auth.NewKeys(opener, func() time.Time { return now })
	other := auth.NewKeys(opener, func() time.Time { return now }) // a second replica

	key, secret, err := keys.Create(ctx, auth.KeyRequest{Owner: "ci", Tenants: []string{"b", "a"}, Role: auth.RoleOperator, TTL: time.Hour})
	require.NoError(t, err)
	require.Regexp(t, `^opk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$`, secret)
	require.Empty(t, key.Hash, "the hash is never handed out")
	require.Equal(t, []string{"a", "b"}, key.Tenants)

	stored, err := opener.stores[auth.KeysBucket].Get(ctx, key.ID)
	require.NoError(t, err)
	require.NotContains(t, string(stored.Value), strings.TrimPrefix(secret, "opk_"+key.ID+"_"), "only the hash is stored")

	p, err := other.Verify(ctx, secret)
	require.NoError(t, err)
	require.Equal(t, map[string]auth.Role{"a": auth.RoleOperator, "b": auth.RoleOperator}, p.Tenants)
	require.Equal(t, "apikey:"+key.ID, p.Subject)
	require.Equal(t, auth.KindAPIKey, p.Kind)

	listed, err := keys.List(ctx)
	require.NoError(t, err)
	require.Len(t, listed, 1)
	require.Empty(t, listed[0].Hash)
	require.Equal(t, now, listed[0].LastUsed, "the use was recorded")

	bad := []string{
		"opk_", "opk_" + key.ID, otherLast(secret), "opk_0000000000000000_" + secret[len(secret)-43:],
		strings.Replace(secret, "opk_", "opx_", 1),
	}
	for _, b := range bad {
		_, err := keys.Verify(ctx, b)
		require.ErrorIs(t, err, auth.ErrUnauthenticated, b)
	}

	_, err = keys.Revoke(ctx, key.ID)
	require.NoError(t, err)
	_, err = other.Verify(ctx, secret)
	require.ErrorIs(t, err, auth.ErrUnauthenticated, "a revocation holds at once on the other replica")
	_, err = keys.Revoke(ctx, "ffffffffffffffff")
	require.ErrorIs(t, err, auth.ErrKeyNotFound)

	_, expiring, err := keys.Create(ctx, auth.KeyRequest{Owner: "ci", Tenants: []string{"a"}, Role: auth.RoleViewer, TTL: time.Minute})
	require.NoError(t, err)
	now = now.Add(2 * time.Minute)
	_, err = keys.Verify(ctx, expiring)
	require.ErrorIs(t, err, auth.ErrUnauthenticated, "an expired key is refused")
}

func TestKeysCreateRefuses(t *testing.T) {
	keys := auth.NewKeys(&memOpener{}, nil)
	for name, req := range map[string]auth.KeyRequest{
		"no owner":     {Tenants: []string{"a"}, Role: auth.RoleViewer},
		"no tenant":    {Owner: "o", Role: auth.RoleViewer},
		"no role":      {Owner: "o", Tenants: []string{"a"}},
		"negative ttl": {Owner: "o", Tenants: []string{"a"}, Role: auth.RoleViewer, TTL: -time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := keys.Create(context.Background(), req)
			require.ErrorIs(t, err, auth.ErrInvalidKey)
		})
	}
}

// otherLast is secret with its last character changed (to one it is not).
func otherLast(secret string) string {
	last := "A"
	if strings.HasSuffix(secret, last) {
		last = "B"
	}
	return secret[:len(secret)-1] + last
}

package natsauth_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/natsauth"
	"github.com/outposthq/outpost/libs/queue/natsjs"
)

// TestControlPlaneKVWatchFlowControl: the control plane's KV watchers are
// ordered push consumers with flow control; with its credentials a watch
// of a bucket larger than the server lets go unanswered reads it all (the
// answers to the flow control requests are allowed), for each control-plane
// role.
func TestControlPlaneKVWatchFlowControl(t *testing.T) {
	e := newEnv(t, natsjs.LayoutPerTenant, 1)
	const values, size = 400, 32 << 10 // 12.5 MiB
	for _, role := range []natsauth.Role{natsauth.RoleScheduler, natsauth.RoleAccountMigrator} {
		t.Run(string(role), func(t *testing.T) {
			path, creds := e.credsFile(t, natsauth.Scope{Role: role}, time.Hour)
			r := e.raw(t, path, creds)
			js, err := jetstream.New(r.nc)
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "fc_" + string(role[0])})
			require.NoError(t, err)
			value := bytes.Repeat([]byte("x"), size)
			for i := range values {
				_, err := kv.Put(ctx, fmt.Sprintf("k%04d", i), value)
				require.NoError(t, err)
			}
			w, err := kv.WatchAll(ctx)
			require.NoError(t, err)
			defer func() { _ = w.Stop() }()
			got := 0
			timeout := time.After(30 * time.Second)
			for done := false; !done; {
				select {
				case entry := <-w.Updates():
					if entry == nil {
						done = true
						break
					}
					got++
				case <-timeout:
					r.mu.Lock()
					errs := append([]string(nil), r.errs...)
					r.mu.Unlock()
					t.Fatalf("the watch stalled after %d of %d values; errors: %v", got, values, errs)
				}
			}
			require.Equal(t, values, got)
		})
	}
}

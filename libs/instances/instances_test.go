package instances_test

import (
	"context"
	"errors"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/instances"
	"github.com/outposthq/outpost/libs/natsembed/natstest"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/natsjs"
)

func TestConfig(t *testing.T) {
	cases := []struct {
		name    string
		cfg     instances.Config
		listen  string
		wantErr bool
		wantURL string
	}{
		{"listen address", instances.Config{ID: "m-0", HeartbeatInterval: time.Second}, "127.0.0.1:8081", false, "http://127.0.0.1:8081"},
		{"configured base url", instances.Config{ID: "m-0", BaseURL: "http://svc:8081", HeartbeatInterval: time.Second}, "127.0.0.1:8081", false, "http://svc:8081"},
		{"relative base url", instances.Config{BaseURL: "svc:8081", HeartbeatInterval: time.Second}, "", true, ""},
		{"no interval", instances.Config{}, "", true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.wantErr {
				require.ErrorIs(t, err, instances.ErrInvalid)
				return
			}
			require.NoError(t, err)
			got := tc.cfg.Resolve(tc.listen)
			require.Equal(t, tc.wantURL, got.BaseURL)
			require.Equal(t, "m-0", got.ID)
		})
	}
	t.Run("wildcard host", func(t *testing.T) {
		got := instances.Config{}.Resolve("0.0.0.0:8081")
		require.NotEmpty(t, got.ID)
		u, err := url.Parse(got.BaseURL)
		require.NoError(t, err)
		require.Equal(t, "8081", u.Port())
		require.NotEqual(t, "0.0.0.0", u.Hostname(), "a wildcard is no address to advertise")
		if ip := net.ParseIP(u.Hostname()); ip != nil {
			require.False(t, ip.IsLoopback())
		} else {
			require.Equal(t, got.ID, u.Hostname())
		}
	})
	t.Run("token", func(t *testing.T) {
		require.Equal(t, "pod-0", instances.Token("pod-0"))
		tok := instances.Token("host.example.com")
		require.True(t, queue.ValidToken(tok), tok)
		require.NotEqual(t, tok, instances.Token("host.example.org"))
	})
}

// TestHeartbeats: replicas heartbeating through a real broker are listed
// with their identity and readiness; one that stops cleanly drops out at
// once, one that goes silent within 3 intervals.
func TestHeartbeats(t *testing.T) {
	srv := natstest.RunServer(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	conn, err := natsjs.Connect(ctx, natsjs.Config{URL: srv.ClientURL()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	require.NoError(t, conn.EnsureTenant(ctx, "default", queue.TenantLimits{}))
	subjects := queue.NewSubjects("")
	const interval = 200 * time.Millisecond

	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	run := func(id, service string, ready func() error) context.CancelFunc {
		hctx, hcancel := context.WithCancel(ctx)
		cfg := instances.Config{ID: id, HeartbeatInterval: interval}.Resolve("127.0.0.1:9000")
		h := instances.NewHeartbeater(cfg, subjects, "default", service, conn, ready, nil)
		wg.Add(1)
		go func() { defer wg.Done(); _ = h.Run(hctx) }()
		return hcancel
	}
	stopA := run("migrator-a", "account-migrator", nil)
	defer stopA()
	stopB := run("migrator-b.example.com", "account-migrator", func() error { return errors.New("tenants are not provisioned yet") })
	defer stopB()
	stopS := run("scheduler-0", "scheduler", nil)
	defer stopS()

	tr := instances.NewTracker()
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = tr.Follow(ctx, conn, subjects.All("default", queue.RoleInstances), 3*interval, nil)
	}()

	ids := func() map[string]instances.Instance {
		out := map[string]instances.Instance{}
		for _, in := range tr.Live(time.Now()) {
			out[in.ID] = in
		}
		return out
	}
	require.Eventually(t, func() bool { return len(ids()) == 3 }, 20*time.Second, 50*time.Millisecond)
	got := ids()
	require.Equal(t, "account-migrator", got["migrator-a"].Role)
	require.True(t, got["migrator-a"].Ready)
	require.Equal(t, "http://127.0.0.1:9000", got["migrator-a"].BaseURL)
	require.False(t, got["migrator-b.example.com"].Ready)
	require.Equal(t, "scheduler", got["scheduler-0"].Role)
	require.NotEmpty(t, got["scheduler-0"].Version)

	// A clean stop says so: gone at the next listing.
	stopS()
	require.Eventually(t, func() bool { _, ok := ids()["scheduler-0"]; return !ok }, 10*time.Second, 20*time.Millisecond)

	// Silence (a killed replica sends no last heartbeat): gone within 3
	// intervals of its last one.
	tr.Observe(heartbeatOf("killed", time.Now()), time.Now())
	require.Contains(t, ids(), "killed")
	require.Eventually(t, func() bool { _, ok := ids()["killed"]; return !ok }, 4*interval+5*time.Second, 20*time.Millisecond)
	require.Contains(t, ids(), "migrator-a")
}

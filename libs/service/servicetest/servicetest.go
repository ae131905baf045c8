// Package servicetest checks what every Outpost service must do around its
// queue connection: be alive before the broker is reachable, turn ready once
// it is, and stop cleanly when its context ends.
package servicetest

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/natsembed/natstest"
)

// Lifecycle starts a broker, stops it, and calls start with its URL and a
// context. start must run the service (returning Run's error) with its ops
// server on opsAddr. The check: /healthz answers while the broker is down
// and /readyz does not; /readyz turns ready once the broker is back;
// /metrics answers; Run returns nil soon after the context is cancelled.
func Lifecycle(t *testing.T, opsAddr string, start func(ctx context.Context, brokerURL string) error) {
	t.Helper()
	srv := natstest.RunServer(t)
	srv.Shutdown()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- start(ctx, srv.ClientURL()) }()

	base := "http://" + opsAddr
	require.Eventually(t, func() bool { return status(base+"/healthz") == http.StatusOK }, 5*time.Second, 20*time.Millisecond)
	require.Equal(t, http.StatusServiceUnavailable, status(base+"/readyz"), "ready without a broker")

	require.NoError(t, srv.Restart())
	require.Eventually(t, func() bool { return status(base+"/readyz") == http.StatusOK }, 15*time.Second, 20*time.Millisecond)
	require.Equal(t, http.StatusOK, status(base+"/metrics"))

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
}

func status(url string) int {
	resp, err := http.Get(url) //nolint:noctx // short-lived test probe
	if err != nil {
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

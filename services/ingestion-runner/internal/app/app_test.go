package app_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/natsembed/natstest"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/backend"
	"github.com/outposthq/outpost/libs/service"
	"github.com/outposthq/outpost/libs/testenv"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/app"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

type runResult struct {
	logs   *testenv.SyncBuffer
	cancel context.CancelFunc
	done   chan error
}

func runApp(t *testing.T, brokerURL, opsAddr string) *runResult {
	t.Helper()
	cfg := runnerConfig(t, "r-app")
	cfg.Broker.URL = brokerURL
	cfg.OpsAddr = opsAddr
	rr := &runResult{logs: &testenv.SyncBuffer{}, done: make(chan error, 1)}
	log := slog.New(slog.NewJSONHandler(rr.logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	rr.cancel = cancel
	go func() { rr.done <- app.Run(ctx, cfg, log) }()
	t.Cleanup(cancel)
	return rr
}

func (rr *runResult) wait(t *testing.T) error {
	t.Helper()
	rr.cancel()
	select {
	case err := <-rr.done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("app.Run did not return")
		return nil
	}
}

func TestRunConnectsAndServesOps(t *testing.T) {
	e := newEnv(t)
	ops := testenv.FreeAddr(t)
	rr := runApp(t, e.url, ops)

	require.Eventually(t, func() bool {
		code, _ := get(t, "http://"+ops+"/readyz")
		return code == http.StatusOK
	}, 10*time.Second, 10*time.Millisecond)
	require.Contains(t, rr.logs.String(), `"msg":"Starting outpost ingestion runner","tenant":"acme","pool":"default","runner_id":"r-app"`)
	code, body := get(t, "http://"+ops+"/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "outpost_runner_jobs_running 0")

	require.NoError(t, rr.wait(t))
	require.Contains(t, rr.logs.String(), `"msg":"runner stopped"`)
}

func TestRunNotReadyWithoutQueue(t *testing.T) {
	ops := testenv.FreeAddr(t)
	rr := runApp(t, "nats://"+testenv.FreeAddr(t), ops) // nothing listens there

	require.Eventually(t, func() bool {
		code, _ := get(t, "http://"+ops+"/healthz")
		return code == http.StatusOK
	}, 10*time.Second, 10*time.Millisecond)
	code, body := get(t, "http://"+ops+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, service.ErrStarting.Error())

	require.NoError(t, rr.wait(t), "a shutdown before the queue answers is clean")
	require.NotContains(t, rr.logs.String(), "Starting outpost ingestion runner")
}

func TestRunWaitsForTenantQueues(t *testing.T) {
	srv := natstest.RunServer(t)
	ops := testenv.FreeAddr(t)
	rr := runApp(t, srv.ClientURL(), ops)
	require.Eventually(t, func() bool {
		return strings.Contains(rr.logs.String(), "tenant queues not provisioned yet")
	}, 10*time.Second, 10*time.Millisecond)
	code, _ := get(t, "http://"+ops+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)

	e := &env{url: srv.ClientURL()}
	require.NoError(t, e.connect(t, backend.DefaultSettings("control-plane")).EnsureTenant(context.Background(), tenant, queue.TenantLimits{}))
	require.Eventually(t, func() bool {
		code, _ := get(t, "http://"+ops+"/readyz")
		return code == http.StatusOK
	}, 20*time.Second, 20*time.Millisecond)
	require.NoError(t, rr.wait(t))
}

func TestRunFailsWhenOpsAddressIsTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	rr := runApp(t, "nats://127.0.0.1:1", ln.Addr().String())
	select {
	case err := <-rr.done:
		require.ErrorContains(t, err, "listen on")
	case <-time.After(10 * time.Second):
		t.Fatal("app.Run did not fail")
	}
}

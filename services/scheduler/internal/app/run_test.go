package app_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/natsembed"
	"github.com/outposthq/outpost/libs/natsembed/natstest"
	"github.com/outposthq/outpost/libs/service/servicetest"
	"github.com/outposthq/outpost/libs/testenv"
	"github.com/outposthq/outpost/services/scheduler/internal/app"
	"github.com/outposthq/outpost/services/scheduler/internal/config"
)

// TestRun runs the whole service as main does: readiness and the API on
// one port (the API behind the bootstrap key), /metrics on the ops port,
// and a clean stop.
func TestRun(t *testing.T) {
	srv := natstest.RunServer(t)
	port, err := natsembed.FreePort("")
	require.NoError(t, err)
	cfg := config.Default()
	opsPort, err := natsembed.FreePort("")
	require.NoError(t, err)
	cfg.Listen = fmt.Sprintf("127.0.0.1:%d", port)
	// Generated at first start, as for local use.
	cfg.Signing.KeyFile = filepath.Join(t.TempDir(), "signing.key")
	cfg.Signing.Generate = true
	cfg.OpsListen = fmt.Sprintf("127.0.0.1:%d", opsPort)
	cfg.Broker.URL = srv.ClientURL()
	keyFile := filepath.Join(t.TempDir(), "data", "admin.key")
	cfg.Auth.BootstrapKeyFile = keyFile
	base := "http://" + cfg.Listen

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, cfg, testLogger()) }()

	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	require.Eventually(t, func() bool { code, _ := get("/readyz"); return code == http.StatusOK }, waitFor, tick)
	code, _ := get("/healthz")
	require.Equal(t, http.StatusOK, code)

	post := func(token string) int {
		req, err := http.NewRequest("POST", base+"/api/v1/jobs", strings.NewReader(`{"task":{"noop":{}}}`))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusUnauthorized, post(""), "the API needs a credential")
	fi, err := os.Stat(keyFile)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "the bootstrap key is the owner's alone")
	raw, err := os.ReadFile(keyFile)
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, post(strings.TrimSpace(string(raw))))

	code, _ = get("/metrics")
	require.Equal(t, http.StatusNotFound, code, "/metrics is not on the API listener")
	base = "http://" + cfg.OpsListen
	code, body := get("/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `outpost_jobs_total{state="QUEUED"} 1`)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(waitFor):
		t.Fatal("Run did not return after its context ended")
	}
}

// TestRunLifecycle: the scheduler's listeners answer before the broker does
// (alive, not ready), it turns ready once the broker is up, and it stops
// cleanly (libs/service/servicetest).
func TestRunLifecycle(t *testing.T) {
	cfg := config.Default()
	cfg.Listen = testenv.FreeAddr(t)
	cfg.OpsListen = testenv.FreeAddr(t)
	cfg.Signing.KeyFile = filepath.Join(t.TempDir(), "signing.key")
	cfg.Signing.Generate = true
	servicetest.Lifecycle(t, cfg.OpsListen, func(ctx context.Context, brokerURL string) error {
		cfg.Broker.URL = brokerURL
		return app.Run(ctx, cfg, testLogger())
	})
}

// TestReplicas runs two schedulers on one broker: a tenant added through
// one is served by the other at once, and jobs submitted to either run.
func TestReplicas(t *testing.T) {
	a := newEnv(t)
	// A second scheduler on the same server.
	cfg := config.Default()
	cfg.Tenants.Names = []string{"default", "acme"}
	cfg.Tenants.RefreshInterval = time.Hour // only the on-demand lookup can find the new tenant
	conn := openBroker(t, a.ctx, a.brokerURL, cfg.Settings)
	s := app.New(cfg, testLogger(), conn, conn, prometheus.NewRegistry(), nil)
	ctx, stop := context.WithCancel(a.ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		require.NoError(t, <-done)
	})
	require.Eventually(t, func() bool { return s.Ready() == nil }, waitFor, tick)
	// The replica verifies the key the first one bootstrapped: they share
	// the keys bucket.
	b := &env{t: t, ctx: a.ctx, conn: conn, subjects: a.subjects, reg: a.reg, url: serveTest(t, s), token: a.token}

	code, out := a.do("PUT", "/api/v1/tenants/initech", "", nil)
	require.Equal(t, http.StatusCreated, code, string(out))
	r := b.runner("initech", "default")
	j := b.submit("initech", noopJob(nil))
	_, m := r.next(t)
	require.Equal(t, j.ID, m.JobId)
	require.Equal(t, "QUEUED", a.job("initech", j.ID).State)
}

// A job is never reported queued before it has a record: when the record
// is late, the answer is 503 with the id, and submitting the id again
// answers the record once it is there.
func TestSubmitAnswers503WhenTheRecordIsLate(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.API.SubmitWait, c.API.DirectSubmit = 0, false })
	code, out := e.do("POST", "/api/v1/jobs", "", noopJob(map[string]any{"id": "late"}))
	require.Equal(t, http.StatusServiceUnavailable, code, string(out))
	require.JSONEq(t, `{"error":"job \"late\" was submitted but is not recorded yet; submit it again with this id, or GET its Location","id":"late","tenant":"default"}`, string(out))
	e.waitState("", "late", "QUEUED")
	code, out = e.do("POST", "/api/v1/jobs", "", noopJob(map[string]any{"id": "late"}))
	require.Equal(t, http.StatusOK, code, string(out))
	require.Equal(t, "late", decode[jobView](t, out).ID)
}

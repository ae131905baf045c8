package app

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/outposthq/outpost/libs/service/servicetest"
	"github.com/outposthq/outpost/libs/testenv"
	"github.com/outposthq/outpost/services/account-migrator/internal/config"
)

func TestRunLifecycle(t *testing.T) {
	cfg := config.Default()
	cfg.Listen = testenv.FreeAddr(t)
	// Generated at first start, as for local use.
	cfg.Signing.KeyFile = filepath.Join(t.TempDir(), "signing.key")
	cfg.Signing.Generate = true
	// The probes and /metrics are on the ops listener.
	cfg.OpsListen = testenv.FreeAddr(t)
	servicetest.Lifecycle(t, cfg.OpsListen, func(ctx context.Context, brokerURL string) error {
		cfg.Broker.URL = brokerURL
		return Run(ctx, cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	})
}

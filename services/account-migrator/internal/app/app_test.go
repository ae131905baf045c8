package app

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/outposthq/outpost/libs/service/servicetest"
	"github.com/outposthq/outpost/libs/testenv"
	"github.com/outposthq/outpost/services/account-migrator/internal/config"
)

func TestRunLifecycle(t *testing.T) {
	cfg := config.Default()
	cfg.Listen = testenv.FreeAddr(t)
	// The probes and /metrics are on the ops listener.
	cfg.OpsListen = testenv.FreeAddr(t)
	servicetest.Lifecycle(t, cfg.OpsListen, func(ctx context.Context, brokerURL string) error {
		cfg.Broker.URL = brokerURL
		return Run(ctx, cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	})
}

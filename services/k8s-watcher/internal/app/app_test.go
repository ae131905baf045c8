package app

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/outposthq/outpost/libs/service/servicetest"
	"github.com/outposthq/outpost/libs/testenv"
	"github.com/outposthq/outpost/services/k8s-watcher/internal/config"
)

func TestRunLifecycle(t *testing.T) {
	cfg := config.Default()
	cfg.OpsAddr = testenv.FreeAddr(t)
	cfg.Signing.TrustedKeys = []string{newSigner(t, "control-1").Public().String()}
	servicetest.Lifecycle(t, cfg.OpsAddr, func(ctx context.Context, brokerURL string) error {
		cfg.Broker.URL = brokerURL
		return Run(ctx, cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	})
}

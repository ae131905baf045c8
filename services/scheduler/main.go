// Command scheduler is Outpost's control-plane scheduler: the jobs REST API,
// job records and dispatch to the executor pools' queues, the consumers of
// runner status and dead letters, and explain.
//
// Usage:
//
//	scheduler [-config scheduler.yaml]
//
// Configuration comes from defaults, then the YAML file, then OUTPOST_*
// environment variables (see internal/config).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/outposthq/outpost/libs/queue/backend"
	"github.com/outposthq/outpost/libs/service"
	"github.com/outposthq/outpost/libs/version"
	"github.com/outposthq/outpost/services/scheduler/internal/app"
	"github.com/outposthq/outpost/services/scheduler/internal/config"
)

func main() {
	os.Exit(run())
}

func run() int {
	configPath := flag.String("config", "", "path to a YAML configuration file")
	showVersion := version.Flag(nil)
	flag.Parse()
	if version.PrintIfRequested(showVersion, os.Stdout, "scheduler") {
		return 0
	}

	ctx, stop := service.SignalContext(context.Background())
	defer stop()

	cfg, err := config.Load(*configPath, nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "scheduler: %v\n", err)
		return 1
	}
	logger, err := service.NewLogger(os.Stderr, "scheduler", cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "scheduler: %v\n", err)
		return 1
	}
	logger.Info("scheduler starting", "listen", cfg.Listen, "broker", backend.RedactURL(cfg.Broker.URL), "queue", string(cfg.Queue.Kind), "stack", cfg.Broker.Stack, "tenants", cfg.Tenants.Names)
	if err := app.Run(ctx, cfg, logger); err != nil {
		logger.Error("scheduler failed", "error", err)
		return 1
	}
	logger.Info("scheduler stopped")
	return 0
}

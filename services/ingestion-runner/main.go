// Command ingestion-runner is Outpost's remote executor. Installed inside a
// customer network, it dials out to the queue, pulls the jobs of its
// executor pool, resolves their ${SECRET} references locally, runs them and
// sends back only status, logs and results.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/outposthq/outpost/libs/service"
	"github.com/outposthq/outpost/libs/version"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/app"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/config"
)

func main() {
	os.Exit(run())
}

// run returns the exit code, so deferred cleanup runs before os.Exit.
func run() int {
	configPath := flag.String("config", "", "YAML configuration file (optional; OUTPOST_* variables override it)")
	showVersion := version.Flag(nil)
	flag.Parse()
	if version.PrintIfRequested(showVersion, os.Stdout, "ingestion-runner") {
		return 0
	}

	// A first SIGINT/SIGTERM drains; a second exits at once.
	ctx, stop := service.SignalContext(context.Background())
	defer stop()

	cfg, err := config.Load(*configPath, nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", app.ServiceName, err)
		return 1
	}
	logger, err := service.NewLogger(os.Stderr, app.ServiceName, cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", app.ServiceName, err)
		return 1
	}
	if err := app.Run(ctx, cfg, logger); err != nil {
		logger.Error("ingestion runner failed", "error", err)
		return 1
	}
	return 0
}

// Command k8s-watcher is the agent that runs inside a customer's cluster,
// holds account leases and streams the cluster's objects to the control
// plane. Everything but configuration, logging and the signal context lives
// in internal/app.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"k8s.io/klog/v2"

	"github.com/outposthq/outpost/libs/config"
	"github.com/outposthq/outpost/libs/service"
	"github.com/outposthq/outpost/libs/version"
	"github.com/outposthq/outpost/services/k8s-watcher/internal/app"
	appconfig "github.com/outposthq/outpost/services/k8s-watcher/internal/config"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "k8s-watcher:", err)
		os.Exit(1)
	}
}

func run() error {
	configPath := flag.String("config", "", "path to a YAML configuration file")
	showVersion := version.Flag(nil)
	flag.Parse()
	if version.PrintIfRequested(showVersion, os.Stdout, "k8s-watcher") {
		return nil
	}

	cfg := appconfig.Default()
	if err := config.Load(*configPath, &cfg, nil); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	logger, err := service.NewLogger(os.Stderr, "k8s-watcher", cfg.LogLevel)
	if err != nil {
		return err
	}
	// client-go reports watch and relist errors through klog: send them to
	// the service's JSON log. klog's logger is process-wide and must be set
	// before any client runs, so it is set here rather than in app.Run.
	klog.SetSlogLogger(logger.With("component", "client-go"))

	ctx, stop := service.SignalContext(context.Background())
	defer stop()
	return app.Run(ctx, cfg, logger)
}

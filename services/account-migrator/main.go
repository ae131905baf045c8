// Command account-migrator serves the Dynamic Accounts API and drives the
// lifecycle of Kubernetes accounts: it hands their leases to the
// k8s-watchers of each zone and serves the inventory they stream back
// (see docs/architecture.md, "Kubernetes accounts").
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/outposthq/outpost/libs/config"
	"github.com/outposthq/outpost/libs/service"
	"github.com/outposthq/outpost/libs/version"
	"github.com/outposthq/outpost/services/account-migrator/internal/app"
	appconfig "github.com/outposthq/outpost/services/account-migrator/internal/config"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "account-migrator:", err)
		os.Exit(1)
	}
}

func run() error {
	configPath := flag.String("config", "", "path to a YAML configuration file")
	showVersion := version.Flag(nil)
	flag.Parse()
	if version.PrintIfRequested(showVersion, os.Stdout, "account-migrator") {
		return nil
	}

	cfg := appconfig.Default()
	if err := config.Load(*configPath, &cfg, nil); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	logger, err := service.NewLogger(os.Stderr, "account-migrator", cfg.LogLevel)
	if err != nil {
		return err
	}

	ctx, stop := service.SignalContext(context.Background())
	defer stop()
	return app.Run(ctx, cfg, logger)
}

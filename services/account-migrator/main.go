// Command account-migrator serves the Dynamic Accounts API and drives the
// lifecycle of Kubernetes accounts: it hands their leases to the
// k8s-watchers of each zone and serves the inventory they stream back
// (see docs/architecture.md, "Kubernetes accounts").
//
// Usage:
//
//	account-migrator [-config account-migrator.yaml] [-version]
//
// Startup, signals and exit statuses are libs/service's (service.Main).
package main

import (
	"github.com/outposthq/outpost/libs/service"
	"github.com/outposthq/outpost/services/account-migrator/internal/app"
	"github.com/outposthq/outpost/services/account-migrator/internal/config"
)

func main() {
	service.Main(service.Spec[config.Config]{
		Name:     "account-migrator",
		Load:     service.LoadConfig(config.Default),
		LogLevel: func(c config.Config) string { return c.LogLevel },
		Run:      app.Run,
	})
}

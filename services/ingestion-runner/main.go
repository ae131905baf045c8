// Command ingestion-runner is Outpost's remote executor. Installed inside a
// customer network, it dials out to the queue, pulls the jobs of its
// executor pool, resolves their ${SECRET} references locally, runs them and
// sends back only status, logs and results.
//
// Usage:
//
//	ingestion-runner [-config runner.yaml] [-version]
//
// Startup, signals (a first SIGINT/SIGTERM drains, a second exits at once)
// and exit statuses are libs/service's (service.Main).
package main

import (
	"github.com/outposthq/outpost/libs/service"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/app"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/config"
)

func main() {
	service.Main(service.Spec[config.Config]{
		Name:     app.ServiceName,
		Load:     service.LoadConfig(config.Default),
		LogLevel: func(c config.Config) string { return c.LogLevel },
		Run:      app.Run,
	})
}

// Command k8s-watcher is the agent that runs inside a customer's cluster,
// holds account leases and streams the cluster's objects to the control
// plane. Everything but configuration, logging and the signal context lives
// in internal/app; those, and the exit statuses, are libs/service's
// (service.Main).
//
// Usage:
//
//	k8s-watcher [-config k8s-watcher.yaml] [-version]
package main

import (
	"log/slog"

	"k8s.io/klog/v2"

	"github.com/outposthq/outpost/libs/service"
	"github.com/outposthq/outpost/services/k8s-watcher/internal/app"
	"github.com/outposthq/outpost/services/k8s-watcher/internal/config"
)

func main() {
	service.Main(service.Spec[config.Config]{
		Name:     "k8s-watcher",
		Load:     service.LoadConfig(config.Default),
		LogLevel: func(c config.Config) string { return c.LogLevel },
		// client-go reports watch and relist errors through klog: send
		// them to the service's JSON log. klog's logger is process-wide
		// and must be set before any client runs, so it is set here
		// rather than in app.Run.
		OnLogger: func(log *slog.Logger) { klog.SetSlogLogger(log.With("component", "client-go")) },
		Run:      app.Run,
	})
}

// Command scheduler is Outpost's control-plane scheduler: the jobs REST API,
// job records and dispatch to the executor pools' queues, the consumers of
// runner status and dead letters, and explain.
//
// Usage:
//
//	scheduler [-config scheduler.yaml] [-version]
//
// Configuration comes from defaults, then the YAML file, then OUTPOST_*
// environment variables (see internal/config). Startup, signals and exit
// statuses are libs/service's (service.Main).
package main

import (
	"github.com/outposthq/outpost/libs/service"
	"github.com/outposthq/outpost/services/scheduler/internal/app"
	"github.com/outposthq/outpost/services/scheduler/internal/config"
)

func main() {
	service.Main(service.Spec[config.Config]{
		Name:     "scheduler",
		Load:     service.LoadConfig(config.Default),
		LogLevel: func(c config.Config) string { return c.LogLevel },
		// Every job passes through the scheduler: it trades memory for
		// CPU with a higher GC target (libs/service).
		GCPercent: service.JobPathGCPercent,
		Run:       app.Run,
	})
}

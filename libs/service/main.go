package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/outposthq/outpost/libs/config"
	"github.com/outposthq/outpost/libs/telemetry"
	"github.com/outposthq/outpost/libs/version"
)

// Exit statuses of Main, the same for every service.
const (
	// ExitOK: the service stopped cleanly (or -version, -help).
	ExitOK = 0
	// ExitFailure: the service failed while it ran, or a second stop
	// signal cut its shutdown short.
	ExitFailure = 1
	// ExitUsage: bad flags or a configuration the service cannot run with.
	ExitUsage = 2
)

// ErrConfig marks an error of Spec.Run that comes from the configuration
// (a key file that cannot be used, say): Main exits with ExitUsage for it.
// It is libs/config's ErrInvalid, so that a loading error wrapped by Run
// counts too.
var ErrConfig = config.ErrInvalid

// tracingFlush bounds the export of the last spans at exit.
const tracingFlush = 5 * time.Second

// Spec is what Main runs: one service's name, configuration and Run.
type Spec[C any] struct {
	// Name tags the service's logs and prefixes what is written to
	// stderr before its logger exists.
	Name string
	// Load returns the configuration, validated, from the YAML file at
	// path (none when empty) and the environment. LoadConfig makes one.
	Load func(path string) (C, error)
	// LogLevel is the configured log level ("" is info).
	LogLevel func(C) string
	// GCPercent is the garbage collector's target when GOGC is not set; 0
	// keeps Go's 100 (TuneRuntime, which also sets a soft memory limit
	// from the container's).
	GCPercent int
	// OnLogger, when set, runs once the logger exists and before Run:
	// for process-wide hooks such as the log of a client library.
	OnLogger func(*slog.Logger)
	// Run runs the service until ctx ends, then stops it gracefully. It
	// returns nil for a clean stop.
	Run func(ctx context.Context, cfg C, log *slog.Logger) error
}

// Main runs spec as the process: flags (-config, -version), the
// configuration, the JSON logger on stderr, the garbage collector's
// defaults (TuneRuntime), tracing as the OTEL_* variables
// configure it (libs/telemetry; off by default), a context that ends on the
// first SIGINT or SIGTERM (a second one exits at once), and Run. It exits
// with ExitOK after a clean stop, ExitFailure when Run failed and
// ExitUsage for bad flags or configuration; the error is written once, to
// the log when there is one, else to stderr.
func Main[C any](spec Spec[C]) {
	os.Exit(run(spec, os.Args[1:], os.Stdout, os.Stderr))
}

// run is Main without the exit, so that deferred calls run first.
func run[C any](spec Spec[C], args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(spec.Name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "path to a YAML configuration file (optional; OUTPOST_* variables override it)")
	showVersion := version.Flag(fs)
	if err := fs.Parse(args); err != nil {
		// The flag package has written the error and the usage.
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	if fs.NArg() > 0 {
		_, _ = fmt.Fprintf(stderr, "%s: unexpected arguments %q\n", spec.Name, fs.Args())
		fs.Usage()
		return ExitUsage
	}
	if version.PrintIfRequested(showVersion, stdout, spec.Name) {
		return ExitOK
	}

	cfg, err := spec.Load(*configPath)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "%s: %v\n", spec.Name, err)
		return ExitUsage
	}
	var level string
	if spec.LogLevel != nil {
		level = spec.LogLevel(cfg)
	}
	log, err := NewLogger(stderr, spec.Name, level)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "%s: %v\n", spec.Name, err)
		return ExitUsage
	}
	if spec.OnLogger != nil {
		spec.OnLogger(log)
	}
	TuneRuntime(log, spec.GCPercent)

	shutdownTracing, err := telemetry.Setup(context.Background(), spec.Name)
	if err != nil {
		log.Error("service failed", "error", err, "exit_code", ExitUsage)
		return ExitUsage
	}
	defer func() {
		// The spans of the last moments are flushed, for a bounded time:
		// a collector that is down does not hold the exit.
		fctx, cancel := context.WithTimeout(context.Background(), tracingFlush)
		defer cancel()
		if err := shutdownTracing(fctx); err != nil {
			log.Warn("flush traces failed", "error", err)
		}
	}()

	ctx, stop := signalContext(context.Background(), log)
	defer stop()
	log.Info("service starting", "version", version.Get())
	if err := spec.Run(ctx, cfg, log); err != nil {
		code := ExitFailure
		if errors.Is(err, ErrConfig) {
			code = ExitUsage
		}
		log.Error("service failed", "error", err, "exit_code", code)
		return code
	}
	log.Info("service stopped", "exit_code", ExitOK)
	return ExitOK
}

// Validator is a configuration that checks itself.
type Validator interface {
	Validate() error
}

// LoadConfig returns a Spec.Load for a configuration whose defaults
// defaults returns: then the YAML file and the OUTPOST_* variables
// (libs/config), then Validate.
func LoadConfig[C Validator](defaults func() C) func(path string) (C, error) {
	return func(path string) (C, error) {
		cfg := defaults()
		if err := config.Load(path, &cfg, nil); err != nil {
			var zero C
			return zero, fmt.Errorf("load configuration: %w", err)
		}
		if err := cfg.Validate(); err != nil {
			var zero C
			return zero, err
		}
		return cfg, nil
	}
}

package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/testenv"
	"github.com/outposthq/outpost/libs/version"
)

// envChild makes the test binary run childMain.
const envChild = "OUTPOST_SERVICE_TEST_CHILD"

// childConfig is the configuration of the child service: its YAML file
// and variables decide what its Run does.
type childConfig struct {
	LogLevel string `yaml:"log_level" env:"CHILD_LOG_LEVEL"`
	// Run is "serve" (until the stop), "fail", "config" (a configuration
	// error found by Run) or "hang" (ignores the stop).
	Run string `yaml:"run" env:"CHILD_RUN"`
}

func (c childConfig) Validate() error {
	if !slices.Contains([]string{"serve", "fail", "config", "hang"}, c.Run) {
		return fmt.Errorf("%w: run %q is not serve, fail, config or hang", ErrConfig, c.Run)
	}
	return nil
}

// childMain is the main of the child service.
func childMain() {
	Main(Spec[childConfig]{
		Name:      "svc",
		Load:      LoadConfig(func() childConfig { return childConfig{Run: "serve"} }),
		LogLevel:  func(c childConfig) string { return c.LogLevel },
		OnLogger:  func(log *slog.Logger) { log.Info("logger hook") },
		GCPercent: 250,
		Run: func(ctx context.Context, cfg childConfig, log *slog.Logger) error {
			log.Info("serving")
			switch cfg.Run {
			case "fail":
				return errors.New("the part failed")
			case "config":
				return fmt.Errorf("%w: signing key unusable", ErrConfig)
			case "hang":
				<-ctx.Done()
				log.Info("draining forever")
				select {}
			}
			<-ctx.Done()
			return nil
		},
	})
}

// signalAfter is a signal sent once after was logged.
type signalAfter struct {
	after string
	sig   syscall.Signal
}

// TestMainExitStatuses runs the test binary as a service (childMain) and
// checks Main's exit status and that its error is written once.
func TestMainExitStatuses(t *testing.T) {
	dir := t.TempDir()
	badFile := dir + "/bad.yaml"
	require.NoError(t, os.WriteFile(badFile, []byte("no_such_key: 1\n"), 0o600))
	goodFile := dir + "/good.yaml"
	require.NoError(t, os.WriteFile(goodFile, []byte("run: fail\n"), 0o600))

	tests := []struct {
		name string
		args []string
		env  []string
		// signals are sent in turn, each once its after line was logged.
		signals  []signalAfter
		wantCode int
		// wantLogs must appear in order; once must appear exactly once.
		wantLogs []string
		once     string
		noLog    string
	}{
		{name: "stopped by a signal", env: []string{"GOGC="}, signals: []signalAfter{{"serving", syscall.SIGTERM}}, wantCode: ExitOK,
			wantLogs: []string{`"msg":"logger hook"`, `"msg":"garbage collector tuned","service":"svc","gc_percent":250`, `"msg":"service starting"`, `"msg":"stop requested: draining; a second signal exits at once","service":"svc","signal":"terminated"`, `"msg":"service stopped","service":"svc","exit_code":0`}},
		{name: "GOGC of the environment is kept", env: []string{"GOGC=50"}, signals: []signalAfter{{"serving", syscall.SIGTERM}}, wantCode: ExitOK,
			once: `"msg":"garbage collector tuned","service":"svc","gc_percent":50`},
		{name: "run fails", env: []string{"CHILD_RUN=fail"}, wantCode: ExitFailure,
			wantLogs: []string{`"msg":"service failed","service":"svc","error":"the part failed","exit_code":1`}, once: "the part failed"},
		{name: "run finds a configuration error", env: []string{"CHILD_RUN=config"}, wantCode: ExitUsage,
			once: `"msg":"service failed","service":"svc","error":"invalid configuration: signing key unusable","exit_code":2`},
		{name: "configuration file read", args: []string{"-config", goodFile}, wantCode: ExitFailure, once: "the part failed"},
		{name: "invalid configuration", env: []string{"CHILD_RUN=dance"}, wantCode: ExitUsage,
			once: `svc: invalid configuration: run "dance" is not serve, fail, config or hang`, noLog: "service starting"},
		{name: "unknown key in the configuration file", args: []string{"-config", badFile}, wantCode: ExitUsage,
			once: "svc: load configuration: invalid configuration: config file " + badFile, noLog: "service starting"},
		{name: "missing configuration file", args: []string{"-config", dir + "/none.yaml"}, wantCode: ExitUsage,
			once: "svc: load configuration: read config file", noLog: "service starting"},
		{name: "bad log level", env: []string{"CHILD_LOG_LEVEL=loud"}, wantCode: ExitUsage,
			once: `svc: log level "loud"`, noLog: "logger hook"},
		{name: "unsupported traces exporter", env: []string{"OTEL_TRACES_EXPORTER=zipkin"}, wantCode: ExitUsage,
			once: `invalid OpenTelemetry configuration: OTEL_TRACES_EXPORTER`, noLog: "service starting"},
		{name: "traces exported to a collector that is down do not hold the exit",
			env:     []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:1"},
			signals: []signalAfter{{"serving", syscall.SIGTERM}}, wantCode: ExitOK,
			wantLogs: []string{`"msg":"service stopped","service":"svc","exit_code":0`}},
		{name: "unknown flag", args: []string{"-nope"}, wantCode: ExitUsage,
			once: "flag provided but not defined: -nope", noLog: "service starting"},
		{name: "unexpected argument", args: []string{"extra"}, wantCode: ExitUsage,
			once: `svc: unexpected arguments ["extra"]`, noLog: "service starting"},
		{name: "help", args: []string{"-help"}, wantCode: ExitOK, wantLogs: []string{"-config", "-version"}, noLog: "service starting"},
		{name: "version", args: []string{"-version"}, wantCode: ExitOK, once: version.String("svc") + "\n", noLog: "service starting"},
		{name: "first signal drains, the second exits at once", env: []string{"CHILD_RUN=hang"},
			signals: []signalAfter{{"serving", syscall.SIGINT}, {"draining forever", syscall.SIGTERM}}, wantCode: ExitFailure,
			wantLogs: []string{`"signal":"interrupt"`, `"msg":"second stop signal: exiting at once","service":"svc","signal":"terminated","exit_code":1`}, noLog: "service stopped"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testenv.Start(t, testenv.Spec{
				Name: "svc",
				Path: os.Args[0],
				Args: tt.args,
				Env:  append(os.Environ(), append([]string{envChild + "=1"}, tt.env...)...),
			})
			for _, s := range tt.signals {
				require.NoError(t, p.WaitLog(s.after, waitFor))
				require.NoError(t, p.Signal(s.sig))
			}
			require.True(t, p.Wait(waitFor), "the service did not exit")
			logs := p.Logs()
			require.Equal(t, tt.wantCode, p.ExitCode(), logs)
			rest := logs
			for _, want := range tt.wantLogs {
				i := strings.Index(rest, want)
				require.GreaterOrEqual(t, i, 0, "%q missing or out of order in:\n%s", want, logs)
				rest = rest[i+len(want):]
			}
			if tt.once != "" {
				require.Equal(t, 1, strings.Count(logs, tt.once), "%q not written exactly once in:\n%s", tt.once, logs)
			}
			if tt.noLog != "" {
				require.NotContains(t, logs, tt.noLog)
			}
		})
	}
}

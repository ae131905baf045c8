// Package service holds what every Outpost binary does the same way: the
// process's entry (Main: flags, configuration, logger, signals, exit
// statuses), its run-time skeleton (Runtime: listeners, readiness, the
// errgroup of its parts, a graceful and bounded stop), signal handling,
// structured logging, and the operations HTTP server with /healthz,
// /readyz and /metrics.
package service

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// SignalContext returns a context cancelled on the first SIGINT or SIGTERM.
// A second signal exits the process at once with status 1 (ExitFailure),
// so an operator can always get out of a shutdown that hangs.
func SignalContext(parent context.Context) (context.Context, context.CancelFunc) {
	return signalContext(parent, nil)
}

// signalContext is SignalContext, logging both signals to log when it is
// not nil.
func signalContext(parent context.Context, log *slog.Logger) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-ch:
			if log != nil {
				log.Info("stop requested: draining; a second signal exits at once", "signal", sig.String())
			}
			cancel()
		case <-done:
			return
		}
		select {
		case sig := <-ch:
			if log != nil {
				log.Error("second stop signal: exiting at once", "signal", sig.String(), "exit_code", ExitFailure)
			}
			os.Exit(ExitFailure)
		case <-done:
		}
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			signal.Stop(ch)
			close(done)
		})
		cancel()
	}
}

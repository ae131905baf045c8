package tasks

import (
	"context"
	"errors"
	"time"
)

// Noop waits for the job's sleep and then succeeds, or fails with its
// fail_message. It serves benchmarks and synthetic checks of a pool.
type Noop struct{}

// Run implements Task.
func (Noop) Run(ctx context.Context, in Input, out Output) Result {
	spec := in.Spec.GetTask().GetNoop()
	if d := spec.GetSleep().AsDuration(); spec.GetSleep() != nil && d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return Result{Err: context.Cause(ctx)}
		}
	}
	if msg := spec.GetFailMessage(); msg != "" {
		out.Log(msg)
		return Result{ExitCode: 1, Err: errors.New(msg)}
	}
	return Result{}
}

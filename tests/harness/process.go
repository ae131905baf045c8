// Package harness runs Outpost's real binaries as processes for end-to-end
// tests and benchmarks: it builds them once, starts them with their
// configuration in the environment under libs/testenv's supervisor, waits
// for /readyz, and can kill, pause, resume and restart them.
package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/service"
	"github.com/outposthq/outpost/libs/testenv"
)

// Binaries the harness builds, by name, with the package that builds each
// (relative to the repository root, in its own module directory).
var binaries = map[string][2]string{
	"scheduler":        {"services/scheduler", "."},
	"account-migrator": {"services/account-migrator", "."},
	"k8s-watcher":      {"services/k8s-watcher", "."},
	"ingestion-runner": {"services/ingestion-runner", "."},
	"outpost-broker":   {"libs", "./cmd/outpost-broker"},
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// RepoRoot is the repository root, found from this file's location.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Bin returns the path of a built binary, building all of them on first use.
// OUTPOST_BIN_DIR points at prebuilt binaries instead (make bench does that).
func Bin(t testing.TB, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		if dir := os.Getenv("OUTPOST_BIN_DIR"); dir != "" {
			binDir = dir
			return
		}
		binDir, buildErr = os.MkdirTemp("", "outpost-e2e-bin-")
		if buildErr != nil {
			return
		}
		for name, src := range binaries {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, name), src[1])
			cmd.Dir = filepath.Join(RepoRoot(), src[0])
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("build %s: %w\n%s", name, err, out)
				return
			}
		}
	})
	require.NoError(t, buildErr)
	return filepath.Join(binDir, name)
}

// Process is one running binary, supervised by testenv: its own process
// group, a parent-death signal, its output kept and written to the test log
// (prefixed with its name) when the test fails. Its methods fail the test
// on errors; a chaos driver on a goroutine of its own uses Proc, whose
// methods return them.
type Process struct {
	// Name names the process in the test log.
	Name string
	// Ops is the base URL of a runner's ops server (/readyz, /metrics),
	// set by Stack.StartRunner.
	Ops string
	// Agent is the broker credential the control plane issued a runner
	// (Stack.StartRunner), nil for other processes.
	Agent *Agent
	// Proc is the supervised process: Kill, Signal, Restart and WaitReady
	// returning errors, safe from any goroutine.
	Proc *testenv.Process

	t testing.TB
}

// Start runs binary name with env added to a minimal environment. The
// process is killed when the test ends, and its output is written to the
// test log if the test failed.
func Start(t testing.TB, name, binary string, env map[string]string, args ...string) *Process {
	t.Helper()
	e := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	// Profiling (pprof on the ops port) is asked for by the one running
	// the tests, for every process.
	if v := os.Getenv(service.EnvPprof); v != "" {
		e = append(e, service.EnvPprof+"="+v)
	}
	for k, v := range env {
		e = append(e, k+"="+v)
	}
	p := &Process{Name: name, t: t}
	p.Proc = testenv.Start(t, testenv.Spec{Name: name, Path: Bin(t, binary), Args: args, Env: e})
	// Runs before testenv's graceful stop (cleanups run last first): the
	// tests end their processes with SIGKILL, as they always have, which
	// keeps teardown quick.
	t.Cleanup(p.Kill)
	return p
}

// Restart starts the process again with the same arguments after it exited.
func (p *Process) Restart() {
	p.t.Helper()
	require.NoError(p.t, p.Proc.Restart())
}

// Signal sends sig to the process group.
func (p *Process) Signal(sig syscall.Signal) {
	if err := p.Proc.Signal(sig); err != nil {
		p.t.Errorf("harness: %v", err)
	}
}

// Kill sends SIGKILL to the process group and waits for the exit.
func (p *Process) Kill() {
	if err := p.Proc.Kill(); err != nil {
		p.t.Errorf("harness: %v", err)
	}
}

// Stop sends SIGTERM and waits up to timeout for a graceful exit, then kills.
func (p *Process) Stop(timeout time.Duration) {
	if err := p.Proc.StopWithin(timeout); err != nil {
		p.t.Errorf("harness: %v", err)
	}
}

// Pause stops the process with SIGSTOP; Resume continues it.
func (p *Process) Pause() { p.Signal(syscall.SIGSTOP) }

// Resume continues a paused process.
func (p *Process) Resume() { p.Signal(syscall.SIGCONT) }

// Wait waits up to timeout for the process to exit and reports whether it did.
func (p *Process) Wait(timeout time.Duration) bool { return p.Proc.Wait(timeout) }

// ExitCode is the exit status after the process ended (-1 if killed).
func (p *Process) ExitCode() int { return p.Proc.ExitCode() }

// Logs returns everything the process wrote so far.
func (p *Process) Logs() string { return p.Proc.Logs() }

// WaitLog waits until the process (since its last start) logged a line
// containing s; it fails at once if the process exits.
func (p *Process) WaitLog(s string, timeout time.Duration) {
	p.t.Helper()
	require.NoError(p.t, p.Proc.WaitLog(s, timeout), "%s never logged %q", p.Name, s)
}

// waitReady waits until url answers 200, failing at once if the process
// exits.
func (p *Process) waitReady(url string, timeout time.Duration) {
	p.t.Helper()
	require.NoError(p.t, p.Proc.WaitReady(timeout, testenv.HTTPProbe(nil, url)), "%s never became ready", url)
}

// WaitReady polls url until it answers 200.
func WaitReady(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	require.NoError(t, testenv.WaitProbe(timeout, 25*time.Millisecond, testenv.HTTPProbe(nil, url)), "%s never became ready", url)
}

// Pid is the process id of the running process.
func (p *Process) Pid() int { return p.Proc.Pid() }

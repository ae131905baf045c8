// Package harness runs Outpost's real binaries as processes for end-to-end
// tests and benchmarks: it builds them once, starts them with their
// configuration in the environment, waits for /readyz, and can kill, pause,
// resume and restart them.
package harness

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/testsupport"
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

// Process is one running binary.
type Process struct {
	Name string
	// Ops is the base URL of a runner's ops server (/readyz, /metrics),
	// set by Stack.StartRunner.
	Ops  string
	t    testing.TB
	bin  string
	args []string
	env  map[string]string

	mu   sync.Mutex
	cmd  *exec.Cmd
	logs *testsupport.SyncBuffer
	done chan struct{}
}

// Start runs binary name with env added to a minimal environment. The
// process is killed when the test ends, and its output is written to the
// test log if the test failed.
func Start(t testing.TB, name, binary string, env map[string]string, args ...string) *Process {
	t.Helper()
	p := &Process{Name: name, t: t, bin: Bin(t, binary), args: args, env: env, logs: &testsupport.SyncBuffer{}}
	p.start()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("---- logs of %s ----\n%s", p.Name, p.Logs())
		}
	})
	return p
}

func (p *Process) start() {
	p.t.Helper()
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range p.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(p.t, cmd.Start(), "start %s", p.Name)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
}

// Restart starts the process again with the same arguments after it exited.
func (p *Process) Restart() {
	p.t.Helper()
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
	default:
		p.t.Fatalf("restart %s: still running", p.Name)
	}
	p.start()
}

func (p *Process) signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && p.cmd.Process != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	}
}

// Kill sends SIGKILL to the process group and waits for the exit.
func (p *Process) Kill() {
	p.signal(syscall.SIGCONT)
	p.signal(syscall.SIGKILL)
	p.Wait(10 * time.Second)
}

// Stop sends SIGTERM and waits up to timeout for a graceful exit, then kills.
func (p *Process) Stop(timeout time.Duration) {
	p.signal(syscall.SIGTERM)
	if !p.Wait(timeout) {
		p.t.Errorf("%s did not stop within %s after SIGTERM", p.Name, timeout)
		p.Kill()
	}
}

// Pause stops the process with SIGSTOP; Resume continues it.
func (p *Process) Pause() { p.signal(syscall.SIGSTOP) }

// Resume continues a paused process.
func (p *Process) Resume() { p.signal(syscall.SIGCONT) }

// Wait waits up to timeout for the process to exit and reports whether it did.
func (p *Process) Wait(timeout time.Duration) bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return true
	}
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// ExitCode is the exit status after the process ended (-1 if killed).
func (p *Process) ExitCode() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.ProcessState == nil {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// Logs returns everything the process wrote so far.
func (p *Process) Logs() string { return p.logs.String() }

// WaitLog waits until the process logged a line containing s.
func (p *Process) WaitLog(s string, timeout time.Duration) {
	p.t.Helper()
	require.Eventually(p.t, func() bool { return strings.Contains(p.Logs(), s) }, timeout, 20*time.Millisecond,
		"%s never logged %q", p.Name, s)
}

// WaitReady polls url until it answers 200.
func WaitReady(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, timeout, 25*time.Millisecond, "%s never became ready", url)
}

// Pid is the process id of the running process (0 if none).
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
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
)

// Defaults of a Spec's zero fields.
const (
	// DefaultGrace is how long Stop waits after the stop signal before it
	// kills the process group.
	DefaultGrace = 10 * time.Second
	// DefaultLogLimit is how many bytes of a process's output are kept.
	DefaultLogLimit = 8 << 20
	// DefaultProbeInterval is how often WaitReady asks its probe.
	DefaultProbeInterval = 25 * time.Millisecond
)

// killWait bounds the wait for a process group to go after SIGKILL.
const killWait = 30 * time.Second

// EnvLiveLogs, when set to a non-empty value, makes the processes of Start
// write every line they print to the test log as it comes, prefixed with
// their name; otherwise a test's processes' output goes to its log only when
// the test failed.
const EnvLiveLogs = "OUTPOST_TEST_LIVE_LOGS"

// Errors of a Process.
var (
	// ErrExited is wrapped by WaitReady's error when the process ended
	// before it was ready.
	ErrExited = errors.New("process exited")
	// ErrNotReady is wrapped by WaitReady's error when the timeout passed
	// first.
	ErrNotReady = errors.New("process not ready")
	// ErrRunning is wrapped by Restart's error when the process still runs.
	ErrRunning = errors.New("process still running")
	// ErrKilled is wrapped by Stop's error when the process outlived the
	// grace and was killed.
	ErrKilled = errors.New("process killed after the grace")
	// ErrStuck is wrapped by the error of Kill and Stop when the process
	// did not go even after SIGKILL.
	ErrStuck = errors.New("process did not exit after SIGKILL")
)

// Spec says how to run a process. Only Path is required.
type Spec struct {
	// Name prefixes the process's lines in the test log and names it in
	// errors; the base name of Path when empty.
	Name string
	// Path is the binary.
	Path string
	// Args are the arguments after the program name.
	Args []string
	// Env is the whole environment, as in exec.Cmd; nil inherits the test
	// process's.
	Env []string
	// Dir is the working directory; empty is the test process's.
	Dir string
	// Credential runs the process as another user (the test process runs
	// as root); nil runs it as the test process's user.
	Credential *syscall.Credential
	// StopSignal asks the process to shut down cleanly; SIGTERM when 0.
	StopSignal syscall.Signal
	// DeathSignal is what the kernel sends the process when the test
	// process dies without stopping it (Linux only); SIGKILL when 0.
	DeathSignal syscall.Signal
	// Grace is how long Stop waits after StopSignal before it kills the
	// process group; DefaultGrace when 0.
	Grace time.Duration
	// OpenStdin keeps a pipe open on the process's standard input for as
	// long as it runs: a child that exits when its input ends then goes
	// with the test process even where there is no parent-death signal.
	// Without it, the standard input is the null device.
	OpenStdin bool
	// LogLimit is how many bytes of output (stdout and stderr together)
	// are kept, the newest; DefaultLogLimit when 0.
	LogLimit int
	// Output, when set, receives a copy of everything the process prints.
	Output io.Writer
	// ProbeInterval is how often WaitReady asks its probe;
	// DefaultProbeInterval when 0.
	ProbeInterval time.Duration
}

// Process is a supervised child process, in a process group of its own.
// Its methods are safe for concurrent use, and all of them but Start and
// WaitReady's probes may be called from any goroutine (a chaos driver's
// included): Kill, Signal and Restart return errors instead of failing a
// test.
type Process struct {
	spec Spec
	name string
	logs *tailBuffer

	restartMu sync.Mutex // one Restart at a time: two would start two runs

	mu   sync.Mutex
	cur  *run // the current (or last) run
	runs int
	line *lineWriter // live test log, nil when off
}

// run is one start of the process.
type run struct {
	pid      int
	stdin    io.WriteCloser
	logStart int64         // log offset at the start
	done     chan struct{} // closed once the process is reaped
	err      error         // how it ended, valid once done is closed
	state    *os.ProcessState
}

func (r *run) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// Launch starts the process described by spec and returns once it runs.
// The caller stops it (Stop or Kill); Start does that for a test.
func Launch(spec Spec) (*Process, error) {
	p := newProcess(spec)
	if err := p.launch(); err != nil {
		return nil, err
	}
	return p, nil
}

func newProcess(spec Spec) *Process {
	if spec.StopSignal == 0 {
		spec.StopSignal = syscall.SIGTERM
	}
	if spec.DeathSignal == 0 {
		spec.DeathSignal = syscall.SIGKILL
	}
	if spec.Grace <= 0 {
		spec.Grace = DefaultGrace
	}
	if spec.LogLimit <= 0 {
		spec.LogLimit = DefaultLogLimit
	}
	if spec.ProbeInterval <= 0 {
		spec.ProbeInterval = DefaultProbeInterval
	}
	spec.Args = append([]string(nil), spec.Args...)
	spec.Env = append([]string(nil), spec.Env...)
	name := spec.Name
	if name == "" {
		name = filepath.Base(spec.Path)
	}
	return &Process{spec: spec, name: name, logs: &tailBuffer{limit: spec.LogLimit}}
}

// Start launches the process for the test: a failed start fails it, and
// when the test ends the process is stopped (Stop; a process left paused
// is continued first) and, if the test failed, its output is written to
// the test log, each line prefixed with the process's name. With
// OUTPOST_TEST_LIVE_LOGS set, lines go to the test log as they come.
func Start(t testing.TB, spec Spec) *Process {
	t.Helper()
	p := newProcess(spec)
	if os.Getenv(EnvLiveLogs) != "" {
		p.line = &lineWriter{prefix: p.name + "| ", logf: t.Logf}
	}
	require.NoError(t, p.launch())
	t.Cleanup(func() {
		switch err := p.Stop(); {
		case errors.Is(err, ErrKilled):
			t.Logf("testenv: %v", err)
		case err != nil:
			t.Errorf("testenv: %v", err)
		}
		p.mu.Lock()
		live := p.line != nil
		if live {
			p.line.close()
		}
		p.mu.Unlock()
		if t.Failed() && !live {
			t.Logf("---- output of %s ----\n%s", p.name, prefixLines(p.name+"| ", p.Logs()))
		}
	})
	return p
}

// launch starts a new run.
func (p *Process) launch() error {
	cmd := exec.Command(p.spec.Path, p.spec.Args...)
	if p.spec.Env != nil {
		cmd.Env = p.spec.Env
	}
	cmd.Dir = p.spec.Dir
	cmd.SysProcAttr = sysProcAttr(p.spec.Credential, p.spec.DeathSignal)
	// Grandchildren that keep the output open must not hold up Wait.
	cmd.WaitDelay = 5 * time.Second
	var out io.Writer = p.logs
	p.mu.Lock()
	if p.line != nil {
		out = io.MultiWriter(out, p.line)
	}
	p.mu.Unlock()
	if p.spec.Output != nil {
		out = io.MultiWriter(out, p.spec.Output)
	}
	w := &serialWriter{w: out}
	cmd.Stdout, cmd.Stderr = w, w
	r := &run{logStart: p.logs.offset(), done: make(chan struct{})}
	if p.spec.OpenStdin {
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return fmt.Errorf("%s: stdin: %w", p.name, err)
		}
		r.stdin = stdin
	}
	started := make(chan error, 1)
	go func() {
		// The parent-death signal comes when the thread that started the
		// child exits, not the process (golang/go#27505): this goroutine
		// keeps its thread for as long as the child runs.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		r.pid = cmd.Process.Pid
		started <- nil
		r.err = cmd.Wait()
		r.state = cmd.ProcessState
		if r.stdin != nil {
			_ = r.stdin.Close()
		}
		close(r.done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start %s (%s): %w", p.name, p.spec.Path, err)
	}
	p.mu.Lock()
	p.cur = r
	p.runs++
	p.mu.Unlock()
	return nil
}

// current is the current run (never nil after a successful launch).
func (p *Process) current() *run {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur
}

// Name is the process's name (Spec.Name).
func (p *Process) Name() string { return p.name }

// Restart starts the process again with the same spec after it exited
// (Kill or Stop it first). Its error wraps ErrRunning when it still runs.
func (p *Process) Restart() error {
	p.restartMu.Lock()
	defer p.restartMu.Unlock()
	r := p.current()
	if r != nil && !r.exited() {
		return fmt.Errorf("restart %s: %w", p.name, ErrRunning)
	}
	_, _ = fmt.Fprintf(p.logs, "---- testenv: %s restarted ----\n", p.name)
	return p.launch()
}

// Signal sends sig to the process's group: the process and whatever it
// started that stayed in its group. Signalling a process that has exited
// does nothing.
func (p *Process) Signal(sig syscall.Signal) error {
	r := p.current()
	if r == nil || r.exited() {
		return nil
	}
	if err := syscall.Kill(-r.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s (pid %d) with %v: %w", p.name, r.pid, sig, err)
	}
	return nil
}

// Pause stops the process group with SIGSTOP; Resume continues it.
func (p *Process) Pause() error { return p.Signal(syscall.SIGSTOP) }

// Resume continues a paused process group with SIGCONT.
func (p *Process) Resume() error { return p.Signal(syscall.SIGCONT) }

// Kill sends SIGKILL to the process group and returns once the process is
// reaped; it works on a paused process too. Killing a process that has
// exited does nothing.
func (p *Process) Kill() error {
	r := p.current()
	if r == nil || r.exited() {
		return nil
	}
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-r.done:
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("%s (pid %d): %w", p.name, r.pid, ErrStuck)
	}
}

// Stop asks the process to shut down with its StopSignal (continuing it if
// paused) and, if it has not exited after the grace, kills its group. It
// returns once the process is reaped; the error wraps ErrKilled when it had
// to be killed.
func (p *Process) Stop() error { return p.StopWithin(p.spec.Grace) }

// StopWithin is Stop with another grace.
func (p *Process) StopWithin(grace time.Duration) error {
	r := p.current()
	if r == nil || r.exited() {
		return nil
	}
	if err := p.Signal(p.spec.StopSignal); err != nil {
		return err
	}
	_ = p.Signal(syscall.SIGCONT)
	select {
	case <-r.done:
		return nil
	case <-time.After(grace):
	}
	if err := p.Kill(); err != nil {
		return err
	}
	return fmt.Errorf("%s did not stop within %s of %v: %w", p.name, grace, p.spec.StopSignal, ErrKilled)
}

// Done is closed when the current run has exited.
func (p *Process) Done() <-chan struct{} { return p.current().done }

// Exited reports whether the current run has exited.
func (p *Process) Exited() bool { return p.current().exited() }

// Wait waits up to timeout for the current run to exit and reports whether
// it did.
func (p *Process) Wait(timeout time.Duration) bool {
	select {
	case <-p.Done():
		return true
	case <-time.After(timeout):
		return false
	}
}

// Err is how the current run ended (nil for a zero exit status), valid
// once it has exited; nil while it runs.
func (p *Process) Err() error {
	r := p.current()
	if !r.exited() {
		return nil
	}
	return r.err
}

// ExitCode is the exit status of the current run: -1 while it runs or when
// a signal ended it.
func (p *Process) ExitCode() int {
	r := p.current()
	if !r.exited() || r.state == nil {
		return -1
	}
	return r.state.ExitCode()
}

// Pid is the process id of the current run.
func (p *Process) Pid() int { return p.current().pid }

// Runs is how many times the process was started (1 + restarts).
func (p *Process) Runs() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runs
}

// Logs is the output of every run so far (the newest Spec.LogLimit bytes),
// a line marking each restart.
func (p *Process) Logs() string { return p.logs.since(0) }

// RunLogs is the output of the current run.
func (p *Process) RunLogs() string { return p.logs.since(p.current().logStart) }

// LogTail is the last n lines of Logs, for error messages.
func (p *Process) LogTail(n int) string {
	lines := strings.Split(strings.TrimRight(p.Logs(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Probe tells whether what it checks is ready: nil when it is, otherwise
// why not.
type Probe func(ctx context.Context) error

// WaitReady asks probe every Spec.ProbeInterval until it returns nil, the
// current run exits (the error wraps ErrExited) or timeout passes (it wraps
// ErrNotReady). Each call of probe gets a context that ends at the
// deadline. The error carries the probe's last error and the tail of the
// output.
func (p *Process) WaitReady(timeout time.Duration, probe Probe) error {
	r := p.current()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(p.spec.ProbeInterval)
	defer tick.Stop()
	var last error
	for {
		if r.exited() {
			return fmt.Errorf("%s %w before it was ready (%s); output:\n%s", p.name, ErrExited, describeExit(r.err), p.LogTail(40))
		}
		last = probe(ctx)
		if last == nil {
			return nil
		}
		select {
		case <-r.done:
		case <-ctx.Done():
			return fmt.Errorf("%s: %w within %s (last: %w); output:\n%s", p.name, ErrNotReady, timeout, last, p.LogTail(40))
		case <-tick.C:
		}
	}
}

// describeExit says how a run ended, for messages.
func describeExit(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// ErrNoLine is returned by a LogProbe until the line shows up.
var ErrNoLine = errors.New("line not logged yet")

// LogProbe is a probe ready once the current run's output contains s.
func (p *Process) LogProbe(s string) Probe {
	return func(context.Context) error {
		if strings.Contains(p.RunLogs(), s) {
			return nil
		}
		return fmt.Errorf("%q: %w", s, ErrNoLine)
	}
}

// WaitLog waits until the current run's output contains s.
func (p *Process) WaitLog(s string, timeout time.Duration) error {
	return p.WaitReady(timeout, p.LogProbe(s))
}

// serialWriter lets the copying goroutines of stdout and stderr write one
// at a time.
type serialWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *serialWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

// lineWriter sends complete lines to a test log until it is closed (a
// test's log may not be written after the test ended).
type lineWriter struct {
	prefix string
	logf   func(format string, args ...any)

	mu      sync.Mutex
	partial []byte
	closed  bool
}

func (l *lineWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return len(b), nil
	}
	l.partial = append(l.partial, b...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.logf("%s%s", l.prefix, l.partial[:i])
		l.partial = l.partial[i+1:]
	}
	return len(b), nil
}

func (l *lineWriter) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.partial) > 0 && !l.closed {
		l.logf("%s%s", l.prefix, l.partial)
	}
	l.closed = true
}

// prefixLines puts prefix before every line of s.
func prefixLines(prefix, s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return prefix + "(no output)"
	}
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}

package tasks

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/secrets"
)

// ErrNotAllowed is returned for a command that is not on the runner's
// allowlist. The control plane decides what runs, but the customer decides
// what may run in their network; this is their veto, and it is permanent.
var ErrNotAllowed = errors.New("command not allowed")

// defaultPath is the child's PATH when the runner has none.
const defaultPath = "/usr/local/bin:/usr/bin:/bin"

// pipeDrain bounds how long output is read after the process exited: a
// background child that kept the pipes open must not hold the job.
const pipeDrain = 2 * time.Second

// Allowlist says which executables the command task may start.
type Allowlist struct {
	entries []string
	// lookPath is exec.LookPath; resolved per job, so a binary installed
	// after start is found.
	lookPath func(string) (string, error)
}

// NewAllowlist returns an allowlist of executable names (found in PATH) and
// absolute paths. An empty allowlist allows nothing.
func NewAllowlist(entries []string) *Allowlist {
	return &Allowlist{entries: entries, lookPath: exec.LookPath}
}

// Resolve returns the absolute path to run for command, or ErrNotAllowed.
//
// Paths are compared exactly and symlinks are not followed: with multi-call
// binaries (busybox) allowing "ls" must not allow "/bin/rm" because both
// point at the same file.
func (a *Allowlist) Resolve(command string) (string, error) {
	if command == "" {
		return "", fmt.Errorf("%w: empty command", ErrInvalidTask)
	}
	var path string
	switch {
	case filepath.IsAbs(command):
		path = filepath.Clean(command)
	case strings.ContainsRune(command, '/'):
		return "", fmt.Errorf("%w: %q (relative paths are never allowed)", ErrNotAllowed, command)
	default:
		p, err := a.lookPath(command)
		if err != nil {
			if a.allowedName(command) {
				return "", fmt.Errorf("command %q not found on this runner: %w", command, err)
			}
			return "", fmt.Errorf("%w: %q", ErrNotAllowed, command)
		}
		path = p
	}
	for _, e := range a.entries {
		if filepath.IsAbs(e) {
			if filepath.Clean(e) == path {
				return path, nil
			}
			continue
		}
		if p, err := a.lookPath(e); err == nil && p == path {
			return path, nil
		}
	}
	return "", fmt.Errorf("%w: %q", ErrNotAllowed, command)
}

func (a *Allowlist) allowedName(name string) bool { return slices.Contains(a.entries, name) }

// Command runs an allowlisted executable with the job's arguments and
// environment, after resolving their ${NAME} references.
type Command struct {
	Allowlist *Allowlist
	Resolver  *secrets.Resolver
	// CancelGrace is the time between SIGTERM and SIGKILL.
	CancelGrace time.Duration
	// Getenv reads the runner's PATH and HOME for the child; os.Getenv when
	// nil.
	Getenv func(string) string
}

// Run implements Task.
func (c *Command) Run(ctx context.Context, in Input, out Output) Result {
	spec := in.Spec.GetTask().GetCommand()
	if spec == nil {
		return Result{Err: Permanent(fmt.Errorf("%w: no command task", ErrInvalidTask))}
	}
	path, err := c.Allowlist.Resolve(spec.GetCommand())
	if err != nil {
		return Result{Err: Permanent(err)}
	}
	// The work dir is private (0700) and removed when the job ends, with
	// the recipe file in it.
	workDir, err := os.MkdirTemp("", "outpost-job-")
	if err != nil {
		return Result{Err: fmt.Errorf("create work dir: %w", err)}
	}
	defer os.RemoveAll(workDir)
	sess := c.Resolver.NewSession()
	var recipePath string
	if rt := spec.GetRecipe(); rt != nil {
		if recipePath, err = writeRecipe(ctx, sess, rt, workDir); err != nil {
			out.Mask(sess.Values()...)
			return Result{Err: err}
		}
		sess.Define(RecipeFileVar, recipePath)
	}
	args, env, err := c.expand(ctx, sess, spec.GetArgs(), spec.GetEnv())
	// Mask before anything is logged, including what was resolved before
	// a later reference failed.
	out.Mask(sess.Values()...)
	if err != nil {
		return Result{Err: err}
	}
	if recipePath != "" {
		env = append(env, RecipeFileVar+"="+recipePath)
	}

	stdout, stderr := out.Stream("stdout"), out.Stream("stderr")
	defer stdout.Close()
	defer stderr.Close()

	cmd := exec.Command(path, args...)
	cmd.Env = env
	cmd.Dir = workDir
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// Its own process group, so a stop reaches the children it started too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = pipeDrain

	out.Log(fmt.Sprintf("starting %s with %d arguments", path, len(args)))
	if err := cmd.Start(); err != nil {
		return Result{ExitCode: -1, Err: fmt.Errorf("start %s: %w", path, err)}
	}
	pgid := cmd.Process.Pid
	exited := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		c.stopOnDone(ctx, pgid, exited, out)
	}()
	waitErr := cmd.Wait()
	close(exited)
	<-stopped
	// Whatever the job left running in its group goes with it.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	return exitResult(cmd, waitErr, out)
}

// stopOnDone sends SIGTERM to the group when ctx ends and SIGKILL after the
// grace, unless the process exits first.
func (c *Command) stopOnDone(ctx context.Context, pgid int, exited <-chan struct{}, out Output) {
	select {
	case <-exited:
		return
	case <-ctx.Done():
	}
	out.Log(fmt.Sprintf("stopping command (%v): SIGTERM", context.Cause(ctx)))
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	t := time.NewTimer(c.CancelGrace)
	defer t.Stop()
	select {
	case <-exited:
	case <-t.C:
		out.Log(fmt.Sprintf("command still running %s after SIGTERM: SIGKILL", c.CancelGrace))
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
}

func exitResult(cmd *exec.Cmd, err error, out Output) Result {
	if errors.Is(err, exec.ErrWaitDelay) {
		// The process exited; only a leftover child held its output open.
		out.Log("output still held open by a child process after exit; stopped reading")
		err = nil
	}
	state := cmd.ProcessState
	if state == nil {
		return Result{ExitCode: -1, Err: fmt.Errorf("wait for command: %w", err)}
	}
	ws, _ := state.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		// Shell convention, so the code means the same as in a terminal.
		code := 128 + int(ws.Signal())
		return Result{ExitCode: code, Err: fmt.Errorf("command killed by signal %s", ws.Signal())}
	}
	code := state.ExitCode()
	if code != 0 {
		return Result{ExitCode: code, Err: fmt.Errorf("command exited with code %d", code)}
	}
	if err != nil {
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) {
			return Result{ExitCode: code, Err: fmt.Errorf("wait for command: %w", err)}
		}
	}
	return Result{}
}

// expand resolves the references of args and env and builds the child's
// environment: PATH and HOME of the runner, then the job's variables. The
// runner's other variables (its own credentials among them) never reach a
// job.
func (c *Command) expand(ctx context.Context, sess *secrets.Session, rawArgs []string, rawEnv map[string]string) ([]string, []string, error) {
	args := make([]string, len(rawArgs))
	for i, a := range rawArgs {
		v, err := sess.Expand(ctx, a)
		if err != nil {
			return nil, nil, expandErr(fmt.Sprintf("argument %d", i+1), err)
		}
		args[i] = v
	}
	getenv := c.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	pathVar := getenv("PATH")
	if pathVar == "" {
		pathVar = defaultPath
	}
	env := []string{"PATH=" + pathVar}
	if home := getenv("HOME"); home != "" {
		env = append(env, "HOME="+home)
	}
	for _, k := range slices.Sorted(maps.Keys(rawEnv)) {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return nil, nil, Permanent(fmt.Errorf("%w: environment variable name %q", ErrInvalidTask, k))
		}
		v, err := sess.Expand(ctx, rawEnv[k])
		if err != nil {
			return nil, nil, expandErr("environment variable "+k, err)
		}
		env = append(env, k+"="+v)
	}
	return args, env, nil
}

func expandErr(where string, err error) error {
	err = fmt.Errorf("%s: %w", where, err)
	if errors.Is(err, secrets.ErrUnknownSecret) || errors.Is(err, secrets.ErrInvalidReference) {
		return Permanent(err)
	}
	// A provider that could not answer (I/O, network) may answer next time.
	return err
}

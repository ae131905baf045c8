package tasks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"

	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/secrets"
)

// fakeOutput records what a task reports, unredacted.
type fakeOutput struct {
	mu      sync.Mutex
	streams map[string]*bytes.Buffer
	logs    []string
	masked  []string
}

func newOutput() *fakeOutput { return &fakeOutput{streams: map[string]*bytes.Buffer{}} }

type streamWriter struct {
	o    *fakeOutput
	name string
}

func (w streamWriter) Write(p []byte) (int, error) {
	w.o.mu.Lock()
	defer w.o.mu.Unlock()
	return w.o.streams[w.name].Write(p)
}
func (w streamWriter) Close() error { return nil }

func (o *fakeOutput) Stream(name string) io.WriteCloser {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.streams[name] == nil {
		o.streams[name] = &bytes.Buffer{}
	}
	return streamWriter{o: o, name: name}
}
func (o *fakeOutput) Log(text string) { o.mu.Lock(); o.logs = append(o.logs, text); o.mu.Unlock() }
func (o *fakeOutput) Mask(values ...string) {
	o.mu.Lock()
	o.masked = append(o.masked, values...)
	o.mu.Unlock()
}
func (o *fakeOutput) text(stream string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if b := o.streams[stream]; b != nil {
		return b.String()
	}
	return ""
}

func TestAllowlist(t *testing.T) {
	paths := map[string]string{"sh": "/usr/bin/sh", "python3": "/usr/bin/python3", "ls": "/bin/ls"}
	a := NewAllowlist([]string{"sh", "/opt/tools/ingest", "missing", "ls"})
	a.lookPath = func(name string) (string, error) {
		if p, ok := paths[name]; ok {
			return p, nil
		}
		return "", errors.New("executable file not found in $PATH")
	}
	tests := []struct {
		command string
		want    string
		wantErr error
		wantMsg string
	}{
		{command: "sh", want: "/usr/bin/sh"},
		{command: "/usr/bin/sh", want: "/usr/bin/sh"},
		{command: "/opt/tools/ingest", want: "/opt/tools/ingest"},
		{command: "/opt/tools/../tools/ingest", want: "/opt/tools/ingest"},
		{command: "/bin/sh", wantErr: ErrNotAllowed},
		{command: "python3", wantErr: ErrNotAllowed},
		{command: "ingest", wantErr: ErrNotAllowed},
		{command: "./sh", wantErr: ErrNotAllowed, wantMsg: "relative paths are never allowed"},
		{command: "tools/ingest", wantErr: ErrNotAllowed},
		{command: "/bin/rm", wantErr: ErrNotAllowed}, // even if /bin/rm and /bin/ls link to one busybox
		{command: "", wantErr: ErrInvalidTask},
		{command: "missing", wantMsg: `command "missing" not found on this runner`},
	}
	for _, tt := range tests {
		t.Run(tt.command, func(t *testing.T) {
			got, err := a.Resolve(tt.command)
			if tt.wantErr != nil || tt.wantMsg != "" {
				if tt.wantErr != nil {
					require.ErrorIs(t, err, tt.wantErr)
				}
				require.ErrorContains(t, err, tt.wantMsg)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
	_, err := NewAllowlist(nil).Resolve("sh")
	require.ErrorIs(t, err, ErrNotAllowed, "an empty allowlist refuses everything")
}

func commandSpec(command string, args []string, env map[string]string) *jobsv1.JobSpec {
	return &jobsv1.JobSpec{Task: &jobsv1.Task{Kind: &jobsv1.Task_Command{Command: &jobsv1.CommandTask{
		Command: command, Args: args, Env: env,
	}}}}
}

func newCommand(grace time.Duration) *Command {
	return &Command{
		Allowlist:   NewAllowlist([]string{"sh", "true", "/usr/bin/env"}),
		Resolver:    &secrets.Resolver{Providers: []secrets.Provider{secrets.Env{Prefixes: []string{"S_"}, LookupEnv: func(k string) (string, bool) { v, ok := map[string]string{"S_TOK": "s3cr3t"}[k]; return v, ok }}}},
		CancelGrace: grace,
	}
}

func TestCommand(t *testing.T) {
	t.Setenv("OUTPOST_RUNNER_ONLY", "must-not-leak")
	tests := []struct {
		name       string
		spec       *jobsv1.JobSpec
		wantState  jobsv1.JobState
		wantCode   int
		wantRetry  bool
		wantReason string
		wantOut    []string
		wantErrOut []string
		notOut     []string
		wantMasked []string
	}{
		{name: "success", spec: commandSpec("true", nil, nil), wantState: jobsv1.JobState_JOB_STATE_SUCCEEDED},
		{
			name:      "stdout and stderr",
			spec:      commandSpec("sh", []string{"-c", "echo out1; echo err1 >&2; printf 'no newline'"}, nil),
			wantState: jobsv1.JobState_JOB_STATE_SUCCEEDED, wantOut: []string{"out1\nno newline"}, wantErrOut: []string{"err1\n"},
		},
		{
			name: "non-zero exit is retryable", spec: commandSpec("sh", []string{"-c", "exit 3"}, nil),
			wantState: jobsv1.JobState_JOB_STATE_FAILED, wantCode: 3, wantRetry: true, wantReason: "command exited with code 3",
		},
		{
			name: "not allowlisted is permanent", spec: commandSpec("/usr/bin/sleep", []string{"1"}, nil),
			wantState: jobsv1.JobState_JOB_STATE_FAILED, wantReason: `command not allowed: "/usr/bin/sleep"`,
		},
		{
			name: "unknown secret is permanent", spec: commandSpec("true", []string{"${DB_PASSWORD}"}, nil),
			wantState: jobsv1.JobState_JOB_STATE_FAILED, wantReason: `argument 1: unknown secret "DB_PASSWORD"`,
		},
		{
			name: "bad env name", spec: commandSpec("true", nil, map[string]string{"A=B": "x"}),
			wantState: jobsv1.JobState_JOB_STATE_FAILED, wantReason: `invalid task: environment variable name "A=B"`,
		},
		{
			name: "secrets in args and env, minimal environment",
			spec: commandSpec("/usr/bin/env", []string{"sh", "-c", `echo "arg=$1"; env`, "_", "--token=${S_TOK}"},
				map[string]string{"TOKEN": "${S_TOK}", "LITERAL": "$${S_TOK}"}),
			wantState:  jobsv1.JobState_JOB_STATE_SUCCEEDED,
			wantOut:    []string{"arg=--token=s3cr3t", "TOKEN=s3cr3t", "LITERAL=${S_TOK}", "PATH="},
			notOut:     []string{"OUTPOST_RUNNER_ONLY"},
			wantMasked: []string{"s3cr3t"},
		},
		{name: "no command task", spec: &jobsv1.JobSpec{}, wantState: jobsv1.JobState_JOB_STATE_FAILED, wantReason: "invalid task: no command task"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := newOutput()
			ctx := context.Background()
			res := newCommand(time.Second).Run(ctx, Input{JobID: "j", Attempt: 1, Spec: tt.spec}, out)
			o := Classify(ctx, res)
			require.Equal(t, tt.wantState, o.State, "result %+v", res)
			require.Equal(t, tt.wantCode, res.ExitCode)
			if tt.wantState == jobsv1.JobState_JOB_STATE_FAILED {
				require.Equal(t, tt.wantRetry, o.Retryable)
				require.Equal(t, tt.wantReason, o.Reason)
			}
			for _, w := range tt.wantOut {
				require.Contains(t, out.text("stdout"), w)
			}
			for _, w := range tt.wantErrOut {
				require.Contains(t, out.text("stderr"), w)
			}
			for _, w := range tt.notOut {
				require.NotContains(t, out.text("stdout"), w)
			}
			require.ElementsMatch(t, tt.wantMasked, out.masked)
		})
	}
}

func TestCommandTimeout(t *testing.T) {
	ctx, cancel := context.WithTimeoutCause(context.Background(), 200*time.Millisecond, fmt.Errorf("%w after 200ms", ErrTimedOut))
	defer cancel()
	start := time.Now()
	res := newCommand(5*time.Second).Run(ctx, Input{Spec: commandSpec("sh", []string{"-c", "sleep 30"}, nil)}, newOutput())
	require.Less(t, time.Since(start), 5*time.Second, "SIGTERM stops sleep without waiting for the grace")
	o := Classify(ctx, res)
	require.Equal(t, jobsv1.JobState_JOB_STATE_TIMED_OUT, o.State)
	require.Equal(t, "timed out after 200ms", o.Reason)
	require.False(t, o.Retryable)
	require.Equal(t, 128+int(syscall.SIGTERM), res.ExitCode)
}

// A command that traps SIGTERM is killed after the cancel grace, and so is
// the child it left in its process group.
func TestCommandCancelEscalatesToKill(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	out := newOutput()
	script := `sleep 30 & echo "child=$!"; trap 'echo got TERM' TERM; echo ready; while :; do sleep 0.05; done`
	grace := 300 * time.Millisecond
	done := make(chan Result, 1)
	go func() {
		done <- newCommand(grace).Run(ctx, Input{Spec: commandSpec("sh", []string{"-c", script}, nil)}, out)
	}()
	require.Eventually(t, func() bool { return strings.Contains(out.text("stdout"), "ready") }, 10*time.Second, 10*time.Millisecond)

	start := time.Now()
	cancel(fmt.Errorf("%w: by test", ErrCancelled))
	var res Result
	select {
	case res = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("command not killed")
	}
	require.GreaterOrEqual(t, time.Since(start), grace, "SIGKILL only after the grace")
	require.Contains(t, out.text("stdout"), "got TERM")
	require.Equal(t, 128+int(syscall.SIGKILL), res.ExitCode)
	o := Classify(ctx, res)
	require.Equal(t, jobsv1.JobState_JOB_STATE_CANCELLED, o.State)
	require.Equal(t, "cancelled: by test", o.Reason)
	require.Contains(t, strings.Join(out.logs, "\n"), "SIGKILL")

	var child int
	for _, l := range strings.Split(out.text("stdout"), "\n") {
		if v, ok := strings.CutPrefix(l, "child="); ok {
			child, _ = strconv.Atoi(v)
		}
	}
	require.NotZero(t, child)
	require.Eventually(t, func() bool { return !alive(child) }, 5*time.Second, 10*time.Millisecond)
}

// alive reports whether pid runs; a zombie (no init reaping it in a
// container) counts as dead.
func alive(pid int) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

func TestNoop(t *testing.T) {
	noop := func(sleep time.Duration, fail string) *jobsv1.JobSpec {
		return &jobsv1.JobSpec{Task: &jobsv1.Task{Kind: &jobsv1.Task_Noop{Noop: &jobsv1.NoopTask{Sleep: durationpb.New(sleep), FailMessage: fail}}}}
	}
	ctx := context.Background()
	require.Equal(t, jobsv1.JobState_JOB_STATE_SUCCEEDED, Classify(ctx, Noop{}.Run(ctx, Input{Spec: noop(0, "")}, newOutput())).State)

	out := newOutput()
	o := Classify(ctx, Noop{}.Run(ctx, Input{Spec: noop(time.Millisecond, "boom")}, out))
	require.Equal(t, Outcome{State: jobsv1.JobState_JOB_STATE_FAILED, Reason: "boom", Retryable: true}, o)
	require.Equal(t, []string{"boom"}, out.logs)

	cctx, cancel := context.WithCancelCause(ctx)
	cancel(ErrCancelled)
	o = Classify(cctx, Noop{}.Run(cctx, Input{Spec: noop(time.Hour, "")}, newOutput()))
	require.Equal(t, jobsv1.JobState_JOB_STATE_CANCELLED, o.State)
}

func TestRegistry(t *testing.T) {
	r := NewRegistry()
	r.Register("noop", Noop{})
	require.Equal(t, []string{"noop"}, r.Kinds())

	impl, kind, err := r.For(&jobsv1.Task{Kind: &jobsv1.Task_Noop{Noop: &jobsv1.NoopTask{}}})
	require.NoError(t, err)
	require.Equal(t, "noop", kind)
	require.IsType(t, Noop{}, impl)

	_, kind, err = r.For(&jobsv1.Task{Kind: &jobsv1.Task_Command{Command: &jobsv1.CommandTask{}}})
	require.Equal(t, "command", kind)
	require.ErrorIs(t, err, ErrInvalidTask)
	require.True(t, IsPermanent(err))

	_, _, err = r.For(nil)
	require.ErrorContains(t, err, "the job has no task")
	require.True(t, IsPermanent(err))
	require.False(t, IsPermanent(errors.New("x")))
	require.NoError(t, Permanent(nil))
}

package testenv_test

import (
	"errors"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/testenv"
)

const wait = 10 * time.Second

// procState is the state letter of pid in /proc ("R", "S", "T", "Z"...),
// or "" when there is no such process.
func procState(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	// pid (comm) state ...: comm may hold spaces, the state follows the last ')'.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	require.NotEmpty(t, fields)
	return fields[0]
}

// gone reports whether pid has ended (absent, or a zombie nobody reaped).
func gone(t *testing.T, pid int) bool {
	st := procState(t, pid)
	return st == "" || st == "Z" || st == "X"
}

func requireLinux(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs Linux /proc")
	}
}

var grandchildLine = regexp.MustCompile(`grandchild (\d+)`)

// grandchild waits for p to print the pid of its own child.
func grandchild(t *testing.T, p *testenv.Process) int {
	t.Helper()
	require.NoError(t, p.WaitLog("grandchild ", wait))
	require.Eventually(t, func() bool { return grandchildLine.MatchString(p.RunLogs()) }, wait, 10*time.Millisecond)
	pid, err := strconv.Atoi(grandchildLine.FindStringSubmatch(p.RunLogs())[1])
	require.NoError(t, err)
	return pid
}

func TestStopIsGraceful(t *testing.T) {
	p := testenv.Start(t, childSpec("serve", "serve"))
	require.NoError(t, p.WaitLog("ready", wait))
	require.False(t, p.Exited())
	require.Equal(t, -1, p.ExitCode(), "no exit status while it runs")
	require.NoError(t, p.Stop())
	require.True(t, p.Exited())
	require.Equal(t, 0, p.ExitCode())
	require.NoError(t, p.Err())
	require.Contains(t, p.Logs(), "bye", "SIGTERM let it finish")
	require.NoError(t, p.Stop(), "stopping twice does nothing")
	require.NoError(t, p.Kill(), "killing an exited process does nothing")
}

func TestStopKillsAfterTheGrace(t *testing.T) {
	p := testenv.Start(t, childSpec("stubborn", "stubborn"))
	require.NoError(t, p.WaitLog("ready", wait))
	err := p.StopWithin(200 * time.Millisecond)
	require.ErrorIs(t, err, testenv.ErrKilled)
	require.True(t, p.Exited())
	require.Equal(t, -1, p.ExitCode(), "a signal ended it")
}

func TestKillAndRestart(t *testing.T) {
	p := testenv.Start(t, childSpec("serve", "serve"))
	require.NoError(t, p.WaitLog("ready", wait))
	first := p.Pid()
	require.ErrorIs(t, p.Restart(), testenv.ErrRunning)

	require.NoError(t, p.Kill())
	require.True(t, p.Exited())
	require.Error(t, p.Err(), "SIGKILL is not a clean exit")
	require.NotContains(t, p.Logs(), "bye", "SIGKILL gives no chance to clean up")

	require.NoError(t, p.Restart())
	require.NoError(t, p.WaitLog("ready", wait))
	require.NotEqual(t, first, p.Pid())
	require.Equal(t, 2, p.Runs())
	require.Equal(t, 1, strings.Count(p.RunLogs(), "ready"), "RunLogs holds the current run only")
	require.Equal(t, 2, strings.Count(p.Logs(), "ready"), "Logs holds every run")
	require.Contains(t, p.Logs(), "restarted")
}

func TestPauseResume(t *testing.T) {
	requireLinux(t)
	p := testenv.Start(t, childSpec("serve", "serve"))
	require.NoError(t, p.WaitLog("ready", wait))
	require.NoError(t, p.Pause())
	require.Eventually(t, func() bool { return procState(t, p.Pid()) == "T" }, wait, 10*time.Millisecond, "SIGSTOP stops it")
	require.NoError(t, p.Resume())
	require.Eventually(t, func() bool { return procState(t, p.Pid()) != "T" }, wait, 10*time.Millisecond, "SIGCONT continues it")

	require.NoError(t, p.Pause())
	require.Eventually(t, func() bool { return procState(t, p.Pid()) == "T" }, wait, 10*time.Millisecond)
	require.NoError(t, p.Stop(), "Stop continues a paused process so it can shut down")
	require.Contains(t, p.Logs(), "bye")

	require.NoError(t, p.Restart())
	require.NoError(t, p.WaitLog("ready", wait))
	require.NoError(t, p.Signal(syscall.SIGSTOP))
	require.Eventually(t, func() bool { return procState(t, p.Pid()) == "T" }, wait, 10*time.Millisecond)
	require.NoError(t, p.Kill(), "SIGKILL ends a paused process")
}

func TestWaitReady(t *testing.T) {
	t.Run("exited", func(t *testing.T) {
		p := testenv.Start(t, childSpec("fail", "fail"))
		err := p.WaitLog("never printed", wait)
		require.ErrorIs(t, err, testenv.ErrExited)
		require.Contains(t, err.Error(), "failing", "the error shows the output")
		require.Equal(t, 3, p.ExitCode())
	})
	t.Run("timeout", func(t *testing.T) {
		p := testenv.Start(t, childSpec("serve", "serve"))
		err := p.WaitLog("never printed", 100*time.Millisecond)
		require.ErrorIs(t, err, testenv.ErrNotReady)
		require.ErrorIs(t, err, testenv.ErrNoLine)
	})
}

func TestKillTakesTheGroup(t *testing.T) {
	requireLinux(t)
	p := testenv.Start(t, childSpec("group", "group"))
	pid := grandchild(t, p)
	require.False(t, gone(t, pid))
	require.NoError(t, p.Kill())
	require.Eventually(t, func() bool { return gone(t, pid) }, wait, 10*time.Millisecond,
		"a child left in the process group dies with it")
}

func TestChildrenDieWithTheTestProcess(t *testing.T) {
	requireLinux(t)
	// parent plays a test binary that launched a child and is then killed.
	p := testenv.Start(t, childSpec("parent", "parent"))
	pid := grandchild(t, p)
	require.False(t, gone(t, pid))
	// SIGKILL the parent alone, not its group: the grandchild has its own.
	require.NoError(t, syscall.Kill(p.Pid(), syscall.SIGKILL))
	require.True(t, p.Wait(wait))
	require.Eventually(t, func() bool { return gone(t, pid) }, wait, 10*time.Millisecond,
		"the parent-death signal killed the orphan")
}

func TestOpenStdin(t *testing.T) {
	t.Run("closed without it", func(t *testing.T) {
		p := testenv.Start(t, childSpec("stdin", "stdin"))
		require.True(t, p.Wait(wait), "the null device ends at once")
		require.Contains(t, p.Logs(), "stdin closed")
	})
	t.Run("open while it runs", func(t *testing.T) {
		spec := childSpec("stdin", "stdin")
		spec.OpenStdin = true
		p := testenv.Start(t, spec)
		require.NoError(t, p.WaitLog("ready", wait))
		require.False(t, p.Wait(200*time.Millisecond), "the pipe stays open")
		require.NoError(t, p.Stop())
	})
}

func TestLaunchErrors(t *testing.T) {
	_, err := testenv.Launch(testenv.Spec{Path: "/nonexistent/binary"})
	require.Error(t, err)
	require.Contains(t, err.Error(), "binary")
}

func TestStartLogsOutputOfAFailedTest(t *testing.T) {
	f := runFake(t, func(tb testing.TB) {
		p := testenv.Start(tb, childSpec("talker", "serve"))
		require.NoError(t, p.WaitLog("ready", wait))
		tb.Errorf("fail the test")
	})
	require.True(t, f.failed)
	require.Contains(t, f.logs(), "talker| ready", "each line prefixed with the name")
}

func TestLiveLogs(t *testing.T) {
	t.Setenv(testenv.EnvLiveLogs, "1")
	f := runFake(t, func(tb testing.TB) {
		p := testenv.Start(tb, childSpec("live", "serve"))
		require.NoError(t, p.WaitLog("ready", wait))
	})
	require.False(t, f.failed)
	require.Contains(t, f.logs(), "live| ready", "lines reach the test log as they come")
	require.Contains(t, f.logs(), "live| bye", "until the process is stopped")
}

func TestConcurrentRestartsStartOneRun(t *testing.T) {
	p := testenv.Start(t, childSpec("serve", "serve"))
	require.NoError(t, p.WaitLog("ready", wait))
	require.NoError(t, p.Kill())
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- p.Restart() }()
	}
	first, second := <-errs, <-errs
	require.Len(t, slices.DeleteFunc([]error{first, second}, func(err error) bool { return err == nil }), 1,
		"one restart runs, the other finds it running")
	require.ErrorIs(t, errors.Join(first, second), testenv.ErrRunning)
	require.Equal(t, 2, p.Runs())
}

package ship

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/outposthq/outpost/libs/testenv"
	"github.com/stretchr/testify/require"
)

// errMissing is wrapped by the errors of tools and files the tests need.
var errMissing = errors.New("missing")

// helmVersion is the pinned helm (Makefile HELM_VERSION).
const helmVersion = "v4.3.2"

// repoRoot is the repository root (the folder holding go.work).
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	require.NoError(t, err)
	return root
}

// requireTool returns the path of a program on PATH, or skips (fails with
// CI=true) naming what installs it.
func requireTool(t testing.TB, name, hint string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		err = fmt.Errorf("%s %w from PATH: %s", name, errMissing, hint)
	}
	testenv.Require(t, name, err)
	return p
}

// helmBinary is .cache/helm/<version>/helm, or OUTPOST_HELM.
func helmBinary(t testing.TB) string {
	t.Helper()
	p := os.Getenv("OUTPOST_HELM")
	if p == "" {
		p = filepath.Join(repoRoot(t), ".cache", "helm", helmVersion, "helm")
	}
	_, err := os.Stat(p)
	if err != nil {
		err = fmt.Errorf("helm %s %w (%s): run scripts/install-helm.sh (make test-deps): %w", helmVersion, errMissing, p, err)
	}
	testenv.Require(t, "helm", err)
	return p
}

// run runs a command with a bounded time and returns its combined output
// and error.
func run(t testing.TB, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// mustRun is run that fails the test on an error.
func mustRun(t testing.TB, env []string, name string, args ...string) string {
	t.Helper()
	out, err := run(t, env, name, args...)
	require.NoError(t, err, "%s %v:\n%s", name, args, out)
	return out
}

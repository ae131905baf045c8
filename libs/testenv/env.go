package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// EnvCI is the variable CI sets to "true": a test whose real dependency is
// missing fails there instead of being skipped.
const EnvCI = "CI"

// IsCI reports whether the tests run under CI (CI=true).
func IsCI() bool { return os.Getenv(EnvCI) == "true" }

// Require passes when err is nil. Otherwise what (a dependency, e.g.
// "kube-apiserver") is missing: the test is skipped with err, which should
// say how to install it, or under CI, where every dependency must be
// installed, failed.
func Require(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if IsCI() {
		t.Fatalf("%s: %v (CI=true: it must be installed)", what, err)
	}
	t.Skipf("%s: %v", what, err)
}

// ErrNoRepoRoot is wrapped by RepoRoot's error when no go.work is found
// above the working directory.
var ErrNoRepoRoot = errors.New("no go.work above the working directory")

// RepoRoot is the closest folder up from the working directory that holds
// go.work: the repository root, for tests run by go test in any module of
// the workspace.
func RepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repository root: %w", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("find repository root from %s: %w", wd, ErrNoRepoRoot)
		}
	}
}

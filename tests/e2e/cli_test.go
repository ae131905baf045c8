package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/apispec/apispectest"
	"github.com/outposthq/outpost/tests/harness"
)

// outpostCLI builds the outpost command (or takes it from OUTPOST_BIN_DIR,
// as make bench provides the binaries).
func outpostCLI(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("OUTPOST_BIN_DIR"); dir != "" {
		if p := filepath.Join(dir, "outpost"); fileExists(p) {
			return p
		}
	}
	bin := filepath.Join(t.TempDir(), "outpost")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/outpost")
	cmd.Dir = filepath.Join(harness.RepoRoot(), "libs")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "build outpost: %s", out)
	return bin
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// cliRun is one invocation of the CLI.
type cliRun struct {
	code           int
	stdout, stderr string
}

// cliUser runs the CLI with a config file of its own.
type cliUser struct {
	t      *testing.T
	bin    string
	config string
}

func (u *cliUser) run(timeout time.Duration, stdin string, args ...string) cliRun {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, u.bin, args...)
	cmd.Env = []string{"HOME=" + os.Getenv("HOME"), "PATH=" + os.Getenv("PATH"), "OUTPOST_CONFIG=" + u.config}
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(u.t, err, "outpost %s", strings.Join(args, " "))
	}
	require.NoError(u.t, ctx.Err(), "outpost %s did not end in %s", strings.Join(args, " "), timeout)
	return cliRun{code: code, stdout: out.String(), stderr: errOut.String()}
}

// ok runs the CLI and requires exit code 0.
func (u *cliUser) ok(args ...string) string {
	u.t.Helper()
	r := u.run(time.Minute, "", args...)
	require.Equal(u.t, 0, r.code, "outpost %s\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.stdout, r.stderr)
	return r.stdout
}

// specProxy serves the scheduler through a proxy that checks every
// request and answer against the OpenAPI document the scheduler serves.
func specProxy(t *testing.T, s *harness.Stack) string {
	t.Helper()
	return specProxyOf(t, s.API, s.Token)
}

// specProxyOf serves the API at base through a proxy that checks every
// request and answer against the OpenAPI document that API serves.
func specProxyOf(t *testing.T, base, token string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/openapi.json", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	doc, err := io.ReadAll(resp.Body)
	require.NoError(t, errors.Join(err, resp.Body.Close()))
	require.Equal(t, http.StatusOK, resp.StatusCode, string(doc))
	target, err := url.Parse(base)
	require.NoError(t, err)
	proxy := httptest.NewServer(&httputil.ReverseProxy{
		Rewrite:       func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		Transport:     apispectest.New(t, doc),
		FlushInterval: -1, // log follows stream through
	})
	t.Cleanup(proxy.Close)
	return proxy.URL
}

// TestCLITour is the README's tour done with the outpost command against
// the real stack, every request and answer checked against the OpenAPI
// document: log in, submit, follow the logs, wait, explain, list; a job
// that fails exits 3; a second context with a viewer key is refused what a
// viewer may not do; sources and keys.
func TestCLITour(t *testing.T) {
	s := harness.StartStack(t, harness.StackOptions{RunnerEnv: runnerEnv})
	s.StartRunner("runner-1", nil)
	api := specProxy(t, s)
	dir := t.TempDir()
	u := &cliUser{t: t, bin: outpostCLI(t), config: filepath.Join(dir, "outpost", "config.yaml")}
	keyFile := filepath.Join(dir, "admin.key")
	require.NoError(t, os.WriteFile(keyFile, []byte(s.Token+"\n"), 0o600))

	u.ok("login", "--scheduler", api, "--api-key-file", keyFile)
	st, err := os.Stat(u.config)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "the config holds credentials")

	// Submit a command job, follow its logs until it ends, wait for it.
	out := u.ok("jobs", "submit", "--pool", "default", "--timeout", "1m", "-o", "json", "--",
		"sh", "-c", "echo hello from the tour; sleep 1; echo done")
	var job struct {
		ID    string `json:"id"`
		State string `json:"state"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &job))
	require.NotEmpty(t, job.ID)
	logs := u.ok("jobs", "logs", "-f", job.ID)
	require.Contains(t, logs, "hello from the tour")
	require.Contains(t, logs, "done", "a follow returns once the job has ended and its logs are drained")
	waited := u.ok("jobs", "wait", job.ID)
	require.Contains(t, waited, "SUCCEEDED")

	// Look at the record, ask why, list.
	var rec struct {
		State   string `json:"state"`
		Attempt int    `json:"attempt"`
	}
	require.NoError(t, json.Unmarshal([]byte(u.ok("jobs", "get", job.ID, "-o", "json")), &rec))
	require.Equal(t, "SUCCEEDED", rec.State)
	require.Equal(t, 1, rec.Attempt)
	require.Contains(t, u.ok("jobs", "get", job.ID, "-o", "yaml"), "state: SUCCEEDED")
	explained := u.ok("jobs", "explain", job.ID)
	require.Contains(t, explained, "Job "+job.ID+" in pool default: SUCCEEDED")
	listed := u.ok("jobs", "list", "--state", "SUCCEEDED", "--pool", "default")
	require.Contains(t, listed, job.ID)
	require.True(t, strings.HasPrefix(listed, "ID "), "a table with headers: %s", listed)

	// A job that fails: wait exits 3 with the reason.
	out = u.ok("jobs", "submit", "-o", "json", "-f", writeJSON(t, dir, "fail.json", map[string]any{
		"pool": "default", "task": map[string]any{"command": map[string]any{"command": "sh", "args": []string{"-c", "exit 3"}}},
		"retry": map[string]any{"max_attempts": 1},
	}))
	require.NoError(t, json.Unmarshal([]byte(out), &job))
	failed := u.run(time.Minute, "", "jobs", "wait", job.ID)
	require.Equal(t, 3, failed.code, "stdout %s stderr %s", failed.stdout, failed.stderr)
	require.Contains(t, failed.stderr, "is FAILED")

	// The API's errors, with their message; usage errors exit 2.
	missing := u.run(time.Minute, "", "jobs", "get", "no-such-job")
	require.Equal(t, 1, missing.code)
	require.Contains(t, missing.stderr, `job "no-such-job" not found in tenant "default"`)
	require.Equal(t, 2, u.run(time.Minute, "", "jobs", "wait").code)

	// A viewer key in a second context: it reads, it may not submit.
	var key struct {
		Key struct {
			ID string `json:"id"`
		} `json:"key"`
		Secret string `json:"secret"`
	}
	require.NoError(t, json.Unmarshal([]byte(u.ok("keys", "create", "--owner", "tour-viewer", "--role", "viewer", "-o", "json")), &key))
	require.Contains(t, u.ok("keys", "list"), key.Key.ID)
	viewer := u.run(time.Minute, key.Secret, "login", "--name", "viewer", "--scheduler", api, "--api-key-stdin")
	require.Equal(t, 0, viewer.code, viewer.stderr)
	contexts := u.ok("context", "list")
	require.Contains(t, contexts, "viewer")
	require.Contains(t, u.ok("jobs", "list"), job.ID)
	refused := u.run(time.Minute, "", "jobs", "submit", "--noop", "10ms")
	require.Equal(t, 1, refused.code)
	require.Contains(t, refused.stderr, `this needs the operator role in tenant "default"`)
	u.ok("context", "use", "default")
	u.ok("keys", "revoke", key.Key.ID)
	revoked := u.run(time.Minute, "", "--context", "viewer", "jobs", "list")
	require.Equal(t, 1, revoked.code)
	require.Contains(t, revoked.stderr, "the credential is not valid")

	// A source from a recipe file on a schedule.
	recipe := filepath.Join(dir, "mysql.yml")
	require.NoError(t, os.WriteFile(recipe, []byte("pipeline_name: tour\nsource:\n  type: mysql\n"+
		"  config: {host_port: 'db.internal:3306', database: shop, username: reader, password: '${E2E_MYSQL_PASSWORD}'}\n"+
		"sink: {type: outpost}\n"), 0o600))
	u.ok("sources", "create", "--id", "tour-mysql", "--recipe", recipe, "--schedule", "0 3 * * *", "--pool", "default")
	sources := u.ok("sources", "list")
	require.Contains(t, sources, "tour-mysql")
	require.Contains(t, sources, "0 3 * * *")
	require.Contains(t, u.ok("sources", "runs", "tour-mysql", "-o", "json"), `"total": 0`)
	u.ok("sources", "delete", "tour-mysql")
}

// writeJSON writes v as JSON into dir/name and returns the path.
func writeJSON(t *testing.T, dir, name string, v any) string {
	t.Helper()
	raw, err := json.Marshal(v)
	require.NoError(t, err)
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, raw, 0o600))
	return p
}

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/testenv"
	"github.com/outposthq/outpost/tests/harness"
)

// errNoChromium: neither OUTPOST_CHROMIUM nor a chromium on PATH.
var errNoChromium = errors.New("no chromium found (scripts/install-browser.sh installs it; or set OUTPOST_CHROMIUM)")

// chromium finds the browser the console tests drive.
func chromium() (string, error) {
	if p := os.Getenv("OUTPOST_CHROMIUM"); p != "" {
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errNoChromium
}

// browser is one headless Chromium (a profile of its own, so its own
// cookies) at 1280 px, with the page timeout of a test step.
type browser struct {
	t    *testing.T
	ctx  context.Context
	shot string
}

func newBrowser(t *testing.T, shots string) *browser {
	t.Helper()
	path, err := chromium()
	testenv.Require(t, "chromium", err)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.WindowSize(1280, 900), chromedp.Flag("disable-dev-shm-usage", true), chromedp.UserDataDir(t.TempDir()))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(cancelTab)
	require.NoError(t, chromedp.Do(ctx), "start chromium")
	return &browser{t: t, ctx: ctx, shot: shots}
}

// run runs steps with a bound of timeout.
func (b *browser) run(timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("browser: %v; the page: %s", err, b.describe())
	}
}

// describe says where the browser is and what the page shows.
func (b *browser) describe() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	where, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText.slice(0, 2000)`))
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return where
}

// value runs a with a bound of timeout and returns its value.
func value[T any](b *browser, timeout time.Duration, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	require.NoError(b.t, err)
	return v
}

// screenshot writes the page as <name>.png into the artefacts folder.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	png := value(b, 20*time.Second, chromedp.FullScreenshot(100))
	path := filepath.Join(b.shot, name+".png")
	require.NoError(b.t, os.WriteFile(path, png, 0o644))
	b.t.Logf("screenshot %s", path)
}

// screenshots is the artefacts folder: OUTPOST_CONSOLE_SCREENSHOTS, or a
// folder of the test.
func screenshots(t *testing.T) string {
	if d := os.Getenv("OUTPOST_CONSOLE_SCREENSHOTS"); d != "" {
		require.NoError(t, os.MkdirAll(d, 0o755))
		return d
	}
	return t.TempDir()
}

// signIn signs the browser in with key on the stack's console.
func (b *browser) signIn(api, key string) {
	b.t.Helper()
	b.run(30*time.Second,
		chromedp.Navigate(api+"/"),
		chromedp.WaitVisible(chromedp.ID("api_key")),
		chromedp.SendKeys(chromedp.ID("api_key"), key),
		chromedp.Submit(chromedp.ID("api_key")),
		chromedp.WaitVisible(chromedp.ID("jobs-table")),
	)
}

// waitState waits until the job page shows state.
func (b *browser) waitState(state string, timeout time.Duration) {
	b.t.Helper()
	b.run(timeout, chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#job-state-value[data-state=%q]`, state))))
}

// createKey makes an API key of role in the stack's tenant.
func createKey(t *testing.T, s *harness.Stack, role string) string {
	t.Helper()
	code, out := s.Client().Do(http.MethodPost, "/api/v1/keys", map[string]any{"owner": "console-" + role, "tenants": []string{s.Tenant}, "role": role})
	require.Equal(t, http.StatusCreated, code, string(out))
	var created struct {
		Secret string `json:"secret"`
	}
	require.NoError(t, json.Unmarshal(out, &created))
	return created.Secret
}

// TestConsoleJobs drives the console in Chromium against the real
// binaries: sign in, submit a command job and watch it go QUEUED, RUNNING,
// SUCCEEDED on its page without a reload while its log lines arrive
// (a secret masked), cancel a long job, create a source from a recipe
// with its error shown at its path, see the runner in the fleet view
// and marked lost once killed, and, as a viewer, no submit button and a
// forged submit refused.
func TestConsoleJobs(t *testing.T) {
	shots := screenshots(t)
	b := newBrowser(t, shots)
	s := harness.StartStack(t, harness.StackOptions{RunnerEnv: runnerEnv, SchedulerEnv: map[string]string{
		"OUTPOST_RUNNERS_PRESENCE_WINDOW": "3s",
	}})
	const secret = "s3cr3t-console-value"

	b.run(30*time.Second, chromedp.Navigate(s.API+"/"), chromedp.WaitVisible(chromedp.ID("api_key")))
	b.screenshot("console-login")
	b.signIn(s.API, s.Token)
	b.screenshot("console-jobs-empty")

	// Submit from the form; no runner yet, so the job waits, QUEUED.
	b.run(30*time.Second,
		chromedp.Click(chromedp.ID("submit-job")),
		chromedp.WaitVisible(chromedp.ID("job-form")),
		chromedp.SetValue(chromedp.ID("command"), "sh"),
		chromedp.SetValue(chromedp.ID("args"), "-c\necho line-one; echo token=${E2E_SECRET}; sleep 2; echo line-two"),
		chromedp.SetValue(chromedp.ID("labels"), "suite=console"),
	)
	b.screenshot("console-submit")
	b.run(30*time.Second, chromedp.Click(chromedp.ID("submit")), chromedp.WaitVisible(chromedp.ID("job-live")))
	b.waitState("QUEUED", 30*time.Second)
	value(b, 5*time.Second, chromedp.Evaluate[bool](`window.__consoleMarker = true`))
	b.run(10*time.Second, chromedp.WaitVisible(chromedp.CSS(`.explain`)))
	b.screenshot("console-job-queued")

	runner := s.StartRunner("runner-1", map[string]string{"E2E_SECRET": secret})
	b.waitState("RUNNING", 60*time.Second)
	b.waitState("SUCCEEDED", 60*time.Second)
	b.run(30*time.Second, chromedp.WaitVisible(chromedp.CSS(`#log[data-ended="true"]`)))
	log := value(b, 10*time.Second, chromedp.TextContent(chromedp.ID("log")))
	marker := value(b, 5*time.Second, chromedp.Evaluate[bool](`window.__consoleMarker === true`))
	require.True(t, marker, "the page was not reloaded")
	require.Contains(t, log, "line-one")
	require.Contains(t, log, "line-two")
	require.Contains(t, log, "token=****")
	require.NotContains(t, log, secret, "secrets are masked as in the API")
	b.screenshot("console-job")

	// A long job, cancelled from its page.
	b.run(30*time.Second,
		chromedp.Navigate(s.API+"/jobs/new"),
		chromedp.WaitVisible(chromedp.ID("job-form")),
		chromedp.SetValue(chromedp.ID("command"), "sleep"),
		chromedp.SetValue(chromedp.ID("args"), "300"),
		chromedp.Click(chromedp.ID("submit")),
		chromedp.WaitVisible(chromedp.ID("job-live")),
	)
	b.waitState("RUNNING", 60*time.Second)
	b.run(30*time.Second, chromedp.Click(chromedp.ID("cancel")))
	b.waitState("CANCELLED", 30*time.Second)

	b.run(30*time.Second, chromedp.Navigate(s.API+"/jobs?label=suite%3Dconsole"), chromedp.WaitVisible(chromedp.ID("jobs-table")))
	rows := value(b, 5*time.Second, chromedp.Evaluate[int](`document.querySelectorAll("#jobs-table tr[data-job]").length`))
	require.Equal(t, 1, rows, "the label filter keeps the labelled job only")
	b.run(30*time.Second, chromedp.Navigate(s.API+"/jobs"), chromedp.WaitVisible(chromedp.ID("jobs-table")))
	b.screenshot("console-jobs")

	// A source from a pasted recipe: an error is shown at its path, then
	// the fixed recipe is created with its schedule and next fires.
	const recipe = "source:\n  type: postgres\n  config: {host_port: 'db:5432', database: app, username: u, password: '${PG_PASSWORD}'}\nsink:\n  type: outpost\n"
	b.run(30*time.Second,
		chromedp.Navigate(s.API+"/sources/new"),
		chromedp.WaitVisible(chromedp.ID("source-form")),
		chromedp.SetValue(chromedp.ID("recipe"), strings.Replace(recipe, "type: postgres", "type: nosuchdb", 1)),
		chromedp.Click(chromedp.ID("create-source")),
		chromedp.WaitVisible(chromedp.ID("source-error")),
	)
	require.Equal(t, "task.ingest.recipe.source.type", value(b, 5*time.Second, chromedp.Text(chromedp.CSS(".field-path"))))
	b.screenshot("console-source-error")
	b.run(30*time.Second,
		chromedp.SetValue(chromedp.ID("id"), "pg-console"),
		chromedp.SetValue(chromedp.ID("recipe"), recipe),
		chromedp.SetValue(chromedp.ID("cron"), "0 3 * * *"),
		chromedp.SetValue(chromedp.ID("time_zone"), "Europe/Paris"),
		chromedp.Click(chromedp.ID("create-source")),
		chromedp.WaitVisible(chromedp.ID("next-fires")),
	)
	fires := value(b, 5*time.Second, chromedp.Evaluate[int](`document.querySelectorAll("#next-fires li").length`))
	require.Equal(t, 5, fires)
	b.screenshot("console-source")

	// The fleet: the runner is live, then lost once killed.
	b.run(30*time.Second, chromedp.Navigate(s.API+"/fleet"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-runner="runner-1"][data-state="live"]`)))
	b.screenshot("console-fleet")
	runner.Kill()
	b.run(60*time.Second, chromedp.WaitVisible(chromedp.CSS(`tr[data-runner="runner-1"][data-state="lost"]`)))

	// Narrow screen: the jobs page still lays out.
	b.run(30*time.Second, chromedp.EmulateViewport(390, 844), chromedp.Navigate(s.API+"/jobs"), chromedp.WaitVisible(chromedp.ID("jobs-table")))
	b.screenshot("console-jobs-narrow")
	b.run(10*time.Second, chromedp.EmulateViewport(1280, 900))

	// A viewer: no submit button, and a forged submit is refused.
	viewer := createKey(t, s, "viewer")
	b.run(30*time.Second, chromedp.Submit(chromedp.CSS(`form[action="/logout"] button`)), chromedp.WaitVisible(chromedp.ID("api_key")))
	b.signIn(s.API, viewer)
	submitButtons := value(b, 10*time.Second, chromedp.Evaluate[int](`document.querySelectorAll("#submit-job").length`))
	require.Zero(t, submitButtons, "a viewer sees no submit button")
	status := value(b, 30*time.Second, chromedp.Evaluate[int](`fetch("/jobs", {method: "POST", headers: {"Content-Type": "application/x-www-form-urlencoded"},
		body: new URLSearchParams({csrf: document.body.dataset.csrf, pool: "default", kind: "noop"})}).then(r => r.status)`, chromedp.EvalAwaitPromise))
	require.Equal(t, http.StatusForbidden, status, "a viewer's forged submit is refused")
	b.screenshot("console-viewer")
}

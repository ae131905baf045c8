package console_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/auth"
	"github.com/outposthq/outpost/libs/natsembed/natstest"
	"github.com/outposthq/outpost/libs/queue/backend"
	"github.com/outposthq/outpost/libs/signing"
	"github.com/outposthq/outpost/libs/testenv"
	"github.com/outposthq/outpost/services/scheduler/internal/app"
	"github.com/outposthq/outpost/services/scheduler/internal/config"
)

const (
	waitFor = 10 * time.Second
	tick    = 20 * time.Millisecond
)

// env is a scheduler (API and console) on an in-process JetStream server.
type env struct {
	t     *testing.T
	ctx   context.Context
	url   string
	admin string
	conn  backend.JetStream
}

func newEnv(t *testing.T) *env { return newEnvWith(t, nil) }

// newEnvWith is newEnv with configure applied to the configuration; it
// is given the console's URL, known before the scheduler starts.
func newEnvWith(t *testing.T, configure func(cfg *config.Config, url string)) *env {
	t.Helper()
	var handler http.Handler
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(hs.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	srv := natstest.RunServer(t)
	cfg := config.Default()
	cfg.Tenants.Names = []string{"default", "acme"}
	cfg.Tenants.RefreshInterval = 100 * time.Millisecond
	cfg.ShutdownGrace = 5 * time.Second
	cfg.Auth.BootstrapKeyFile = filepath.Join(t.TempDir(), "admin.key")
	cfg.Auth.RateLimit = auth.RateLimit{}
	if configure != nil {
		configure(&cfg, "http://"+hs.Listener.Addr().String())
	}
	require.NoError(t, cfg.Validate())
	s := cfg.Settings
	s.Broker.URL = srv.ClientURL()
	log := slog.New(slog.NewJSONHandler(testLog(), nil))
	b, err := backend.Open(ctx, s, backend.Options{Logger: log})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	key, err := signing.GenerateKey()
	require.NoError(t, err)
	signer, err := signing.NewSigner("console-test", key, time.Hour)
	require.NoError(t, err)
	sched := app.New(cfg, log, b.JetStream(), b.JetStream(), prometheus.NewRegistry(), nil, app.WithSigner(signer))
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- sched.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		require.NoError(t, <-done)
	})
	require.Eventually(t, func() bool { return sched.Ready() == nil }, waitFor, tick)
	handler = sched
	hs.Start()
	t.Cleanup(sched.StopStreams)
	raw, err := os.ReadFile(cfg.Auth.BootstrapKeyFile)
	require.NoError(t, err)
	return &env{t: t, ctx: ctx, url: hs.URL, admin: strings.TrimSpace(string(raw)), conn: b.JetStream()}
}

// audit is the default tenant's audit, as the API lists it.
func (e *env) audit() []auth.Event {
	e.t.Helper()
	c := testenv.Client{Base: e.url, Token: e.admin}
	code, out, err := c.Send(e.ctx, http.MethodGet, "/api/v1/audit", nil, nil)
	require.NoError(e.t, err)
	require.Equal(e.t, http.StatusOK, code, string(out))
	return testenv.DecodeJSON[struct {
		Events []auth.Event `json:"events"`
	}](e.t, out).Events
}

// key makes an API key of role in tenant default.
func (e *env) key(role string) string {
	e.t.Helper()
	c := testenv.Client{Base: e.url, Token: e.admin}
	code, out, err := c.Send(e.ctx, http.MethodPost, "/api/v1/keys", map[string]any{"owner": role + "-user", "tenants": []string{"default"}, "role": role}, nil)
	require.NoError(e.t, err)
	require.Equal(e.t, http.StatusCreated, code, string(out))
	var created struct {
		Secret string `json:"secret"`
	}
	require.NoError(e.t, json.Unmarshal(out, &created))
	return created.Secret
}

// browser is a cookie-keeping client that does not follow redirects.
type browser struct {
	e    *env
	http *http.Client
}

func (e *env) browser() *browser {
	jar, err := cookiejar.New(nil)
	require.NoError(e.t, err)
	return &browser{e: e, http: &http.Client{Jar: jar, Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

// answer is what a test looks at of a response (its body is read and
// closed by send).
type answer struct {
	StatusCode int
	Header     http.Header
	cookies    []*http.Cookie
}

func (a answer) Cookies() []*http.Cookie { return a.cookies }

func (b *browser) get(path string) (answer, string) {
	b.e.t.Helper()
	req, err := http.NewRequestWithContext(b.e.ctx, http.MethodGet, b.e.url+path, nil)
	require.NoError(b.e.t, err)
	return b.send(req)
}

func (b *browser) post(path string, form url.Values) (answer, string) {
	b.e.t.Helper()
	req, err := http.NewRequestWithContext(b.e.ctx, http.MethodPost, b.e.url+path, strings.NewReader(form.Encode()))
	require.NoError(b.e.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.e.url)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	return b.send(req)
}

func (b *browser) send(req *http.Request) (answer, string) {
	resp, err := b.http.Do(req)
	require.NoError(b.e.t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(b.e.t, err)
	return answer{StatusCode: resp.StatusCode, Header: resp.Header, cookies: resp.Cookies()}, string(out)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrf(t *testing.T, page string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	require.NotNil(t, m, "no CSRF token in the page")
	return m[1]
}

// signIn signs b in with key and returns the session's CSRF token.
func (b *browser) signIn(key string) string {
	t := b.e.t
	t.Helper()
	_, page := b.get("/login")
	resp, _ := b.post("/login", url.Values{"csrf": {csrf(t, page)}, "api_key": {key}, "next": {"/jobs"}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/jobs", resp.Header.Get("Location"))
	_, page = b.get("/jobs")
	return csrf(t, page)
}

func TestSignIn(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	resp, _ := b.get("/jobs?state=RUNNING")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/login?next="+url.QueryEscape("/jobs?state=RUNNING"), resp.Header.Get("Location"))

	_, page := b.get("/login")
	token := csrf(t, page)
	for _, tc := range []struct {
		name string
		form url.Values
		want int
	}{
		{"no CSRF token", url.Values{"api_key": {e.admin}}, http.StatusForbidden},
		{"wrong key", url.Values{"csrf": {token}, "api_key": {"opk_not-a-key"}}, http.StatusUnauthorized},
		{"empty key", url.Values{"csrf": {token}, "api_key": {""}}, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.browser()
			_, page := c.get("/login")
			if tc.form.Get("csrf") != "" {
				tc.form.Set("csrf", csrf(t, page))
			}
			resp, _ := c.post("/login", tc.form)
			require.Equal(t, tc.want, resp.StatusCode)
			for _, ck := range resp.Cookies() {
				require.NotEqual(t, "outpost_session", ck.Name, "no session without a valid key")
			}
		})
	}

	resp, _ = b.post("/login", url.Values{"csrf": {token}, "api_key": {e.admin}, "next": {"https://evil.example/"}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/jobs", resp.Header.Get("Location"), "a redirect off the site is refused")
	var session *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "outpost_session" {
			session = ck
		}
	}
	require.NotNil(t, session)
	require.True(t, session.HttpOnly)
	require.Equal(t, http.SameSiteStrictMode, session.SameSite)
	require.NotContains(t, session.Value, e.admin, "the credential is sealed")

	resp, page = b.get("/jobs")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, page, `id="submit-job"`)
	require.Contains(t, resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'")

	resp, _ = b.post("/logout", url.Values{"csrf": {csrf(t, page)}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	resp, _ = b.get("/jobs")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, "signed out")
}

func TestSubmitAndCancel(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	token := b.signIn(e.admin)

	resp, page := b.post("/jobs", url.Values{"csrf": {token}, "pool": {"default"}, "kind": {"noop"}, "sleep": {"1h"}, "timeout": {"2h"}, "labels": {"team=data"}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, page)
	loc := resp.Header.Get("Location")
	require.True(t, strings.HasPrefix(loc, "/jobs/"), loc)
	id := strings.TrimPrefix(loc, "/jobs/")

	resp, page = b.get(loc)
	require.Equal(t, http.StatusOK, resp.StatusCode, page)
	require.Contains(t, page, `data-state="QUEUED"`)
	require.Contains(t, page, `id="cancel"`)
	require.Contains(t, page, "NO_RUNNERS", "explain says why it waits")

	// The submit is audited once, as the API call it is.
	require.Eventually(t, func() bool {
		var actions []string
		for _, ev := range e.audit() {
			if strings.HasPrefix(ev.Action, "POST ") {
				actions = append(actions, ev.Action)
			}
		}
		return slices.Equal(actions, []string{"POST /api/v1/jobs"})
	}, waitFor, tick, "one audit event, under the API's action")

	_, page = b.get("/jobs?label=team%3Ddata&since=15m")
	require.Contains(t, page, id)
	require.Contains(t, page, "1 shown of 1", "the API filters, so the total counts the matches")
	_, page = b.get("/jobs?label=%3Ddata")
	require.Contains(t, page, "each term is key=value or key", "the API's refusal is shown")
	_, page = b.get("/jobs?label=team%3Dother")
	require.NotContains(t, page, id)
	_, page = b.get("/jobs?state=SUCCEEDED")
	require.NotContains(t, page, id)

	resp, _ = b.post(loc+"/cancel", url.Values{"csrf": {"forged"}})
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "a POST without the session's CSRF token is refused")
	resp, _ = b.post(loc+"/cancel", url.Values{"csrf": {token}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	_, page = b.get(loc)
	require.Contains(t, page, `data-state="CANCELLED"`)

	// A validation error of the API is shown at its field.
	resp, page = b.post("/jobs", url.Values{"csrf": {token}, "pool": {"default"}, "kind": {"command"}, "command": {"sh"}, "timeout": {"soon"}})
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Contains(t, page, "<strong>timeout</strong>")
	require.Contains(t, page, `id="timeout" name="timeout" value="soon" aria-invalid="true"`)
}

func TestViewerRole(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	token := b.signIn(e.key("viewer"))
	resp, page := b.get("/jobs")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NotContains(t, page, `id="submit-job"`, "no submit button for a viewer")
	require.Contains(t, page, `<span class="role">viewer</span>`)

	resp, _ = b.post("/jobs", url.Values{"csrf": {token}, "pool": {"default"}, "kind": {"noop"}})
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "a viewer's forged submit is refused")
	resp, _ = b.get("/jobs/new")
	require.Equal(t, http.StatusForbidden, resp.StatusCode)

	// The tenant switcher offers only the key's tenant, and another is
	// refused.
	require.Contains(t, page, `<option value="default" selected>default</option>`)
	require.NotContains(t, page, `<option value="acme"`)
	resp, _ = b.post("/tenant", url.Values{"csrf": {token}, "tenant": {"acme"}})
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
}

func TestTenantSwitch(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	token := b.signIn(e.admin)
	_, page := b.get("/jobs")
	require.Contains(t, page, `<option value="acme"`)
	resp, _ := b.post("/tenant", url.Values{"csrf": {token}, "tenant": {"acme"}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	_, page = b.get("/jobs")
	require.Contains(t, page, `<option value="acme" selected>acme</option>`)
}

// TestPageWeight: every page, with its assets, is under 100 KB before
// data.
func TestPageWeight(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.signIn(e.admin)
	assets := 0
	for _, a := range []string{"/static/htmx.min.js", "/static/console.js", "/static/console.css"} {
		resp, body := b.get(a)
		require.Equal(t, http.StatusOK, resp.StatusCode, a)
		assets += len(body)
	}
	for _, p := range []string{"/login", "/jobs", "/jobs/new", "/fleet"} {
		t.Run(p, func(t *testing.T) {
			resp, page := b.get(p)
			require.Equal(t, http.StatusOK, resp.StatusCode, page)
			require.Less(t, assets+len(page), 100_000, "%s with its assets", p)
		})
	}
}

// testLog is where the scheduler logs: nowhere unless CONSOLE_TEST_LOG is
// set.
func testLog() io.Writer {
	if os.Getenv("CONSOLE_TEST_LOG") != "" {
		return os.Stderr
	}
	return io.Discard
}

// regexpAll returns every match of expr in s with its groups.
func regexpAll(expr, s string) [][]string {
	return regexp.MustCompile(expr).FindAllStringSubmatch(s, -1)
}

// TestAccountsNotConfigured: without console.accounts_url the accounts
// pages say so.
func TestAccountsNotConfigured(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.signIn(e.admin)
	resp, page := b.get("/accounts")
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Contains(t, page, "console.accounts_url")
	_, page = b.get("/fleet")
	require.Contains(t, page, "The accounts API is not configured")
}

// TestUnknownPath: a path the console does not serve is a 404, signed in
// or not.
func TestUnknownPath(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	for _, p := range []string{"/metrics", "/jobs/x/y/z"} {
		resp, _ := b.get(p)
		require.Equal(t, http.StatusNotFound, resp.StatusCode, p)
	}
	b.signIn(e.admin)
	resp, _ := b.get("/metrics")
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp, _ = b.get("/jobs?state=QUEUED")
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

// TestFleetBacklog: the fleet page shows each pool's backlog and oldest
// queued job as the pools API counts them (here two jobs of a pool no
// runner serves).
func TestFleetBacklog(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	token := b.signIn(e.admin)
	for range 2 {
		resp, page := b.post("/jobs", url.Values{"csrf": {token}, "pool": {"etl"}, "kind": {"noop"}, "sleep": {"1s"}, "timeout": {"1m"}})
		require.Equal(t, http.StatusSeeOther, resp.StatusCode, page)
	}
	var page string
	require.Eventually(t, func() bool {
		_, page = b.get("/fleet")
		return strings.Contains(page, "<tr><td>etl</td><td>0</td><td>0</td><td>2</td><td><time datetime=")
	}, 20*time.Second, 100*time.Millisecond, "no backlog of 2 for pool etl")
}

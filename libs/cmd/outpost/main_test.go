package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

const testKey = "opk_0123456789abcdef_0123456789012345678901234567890123456789012"

// fakeAPI answers the routes a test gives it and records the requests.
type fakeAPI struct {
	t      *testing.T
	mu     sync.Mutex
	bodies map[string]string // "METHOD path" → last request body
	srv    *httptest.Server
}

func newFakeAPI(t *testing.T, routes map[string]http.HandlerFunc) *fakeAPI {
	f := &fakeAPI{t: t, bodies: map[string]string{}}
	mux := http.NewServeMux()
	for pattern, h := range routes {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			raw, _ := io.ReadAll(r.Body)
			f.mu.Lock()
			f.bodies[r.Method+" "+r.URL.Path] = string(raw)
			f.mu.Unlock()
			if r.Header.Get("Authorization") != "Bearer "+testKey {
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = w.Write([]byte(`{"error":"the credential is not valid","field":"Authorization"}`))
				return
			}
			h(w, r)
		})
	}
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPI) body(key string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bodies[key]
}

func reply(code int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	}
}

// outcome is what one invocation printed and returned.
type outcome struct {
	code           int
	stdout, stderr string
}

// cli runs the command line with a config file of its own.
func cli(t *testing.T, cfg string, stdin string, args ...string) outcome {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), append([]string{"--config", cfg}, args...), strings.NewReader(stdin), &out, &errOut)
	return outcome{code, out.String(), errOut.String()}
}

// loggedIn returns a config file whose current context is the fake API.
func loggedIn(t *testing.T, api *fakeAPI) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	cfg := &Config{Current: "test", Contexts: map[string]*Context{
		"test": {Scheduler: api.srv.URL, Accounts: api.srv.URL, Token: testKey, Tenant: "default"},
	}}
	require.NoError(t, cfg.save(path))
	return path
}

const jobsAnswer = `{"jobs":[{"id":"j-1","pool":"default","state":"SUCCEEDED","attempt":1,"created_at":"2026-01-02T03:04:05Z","labels":{"a":"b"}}],"total":1}`

func TestOutputFormats(t *testing.T) {
	api := newFakeAPI(t, map[string]http.HandlerFunc{"GET /api/v1/jobs": reply(http.StatusOK, jobsAnswer)})
	cfg := loggedIn(t, api)
	tests := []struct {
		name   string
		args   []string
		verify func(t *testing.T, stdout string)
	}{
		{"table", []string{"jobs", "list"}, func(t *testing.T, out string) {
			lines := strings.Split(strings.TrimSpace(out), "\n")
			require.Len(t, lines, 2)
			require.Equal(t, []string{"ID", "POOL", "STATE", "ATTEMPT", "CREATED", "REASON"}, strings.Fields(lines[0]))
			require.Equal(t, []string{"j-1", "default", "SUCCEEDED", "1", "2026-01-02T03:04:05Z", "-"}, strings.Fields(lines[1]))
		}},
		{"json", []string{"jobs", "list", "-o", "json"}, func(t *testing.T, out string) {
			require.JSONEq(t, jobsAnswer, out)
		}},
		{"yaml", []string{"jobs", "list", "-o", "yaml"}, func(t *testing.T, out string) {
			var got map[string]any
			require.NoError(t, yaml.Unmarshal([]byte(out), &got))
			var want map[string]any
			require.NoError(t, json.Unmarshal([]byte(jobsAnswer), &want))
			// Numbers are YAML numbers, not strings.
			require.Equal(t, 1, got["total"])
			require.Equal(t, 1, got["jobs"].([]any)[0].(map[string]any)["attempt"])
			require.Contains(t, out, "state: SUCCEEDED")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := cli(t, cfg, "", tt.args...)
			require.Equal(t, exitOK, o.code, o.stderr)
			tt.verify(t, o.stdout)
		})
	}
}

func TestExitCodes(t *testing.T) {
	job := func(state string) string {
		return `{"id":"j-1","pool":"default","state":"` + state + `","attempt":1,"reason":"exit status 2"}`
	}
	api := newFakeAPI(t, map[string]http.HandlerFunc{
		"GET /api/v1/jobs/ok":      reply(http.StatusOK, job("SUCCEEDED")),
		"GET /api/v1/jobs/failed":  reply(http.StatusOK, job("FAILED")),
		"GET /api/v1/jobs/timeout": reply(http.StatusOK, job("TIMED_OUT")),
		"GET /api/v1/jobs/missing": reply(http.StatusNotFound, `{"error":"job \"missing\" not found in tenant \"default\"","field":"id"}`),
		"GET /api/v1/jobs/broken":  reply(http.StatusInternalServerError, `{"error":"internal error; quote request abc"}`),
		"POST /api/v1/jobs":        reply(http.StatusBadRequest, `{"error":"must be a duration such as \"90s\" or \"1h30m\"","field":"timeout"}`),
	})
	cfg := loggedIn(t, api)
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"success", []string{"jobs", "get", "ok"}, exitOK, ""},
		{"wait for a job that succeeded", []string{"jobs", "wait", "ok"}, exitOK, ""},
		{"wait for a job that failed", []string{"jobs", "wait", "failed"}, exitJobFailed, "job failed is FAILED: exit status 2"},
		{"wait for a job that timed out", []string{"jobs", "wait", "timeout"}, exitJobFailed, "TIMED_OUT"},
		{"wait for a job that does not exist", []string{"jobs", "wait", "missing"}, exitError, `job "missing" not found in tenant "default" (field id) [HTTP 404]`},
		{"API error shows the API's message", []string{"jobs", "get", "missing"}, exitError, `job "missing" not found`},
		{"server error", []string{"jobs", "get", "broken"}, exitError, "internal error; quote request abc [HTTP 500]"},
		{"bad field", []string{"jobs", "submit", "--timeout", "soon", "--", "true"}, exitError, "(field timeout) [HTTP 400]"},
		{"missing argument", []string{"jobs", "get"}, exitUsage, "accepts 1 arg(s), received 0"},
		{"unknown command", []string{"jobz"}, exitUsage, `unknown command "jobz"`},
		{"unknown subcommand", []string{"jobs", "frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{"unknown flag", []string{"jobs", "list", "--colour"}, exitUsage, "unknown flag: --colour"},
		{"unknown output format", []string{"jobs", "list", "-o", "xml"}, exitUsage, "unknown output format"},
		{"two tasks", []string{"jobs", "submit", "--noop", "1s", "--", "true"}, exitUsage, "exactly one task"},
		{"unknown context", []string{"--context", "nope", "jobs", "list"}, exitError, `unknown context "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := cli(t, cfg, "", tt.args...)
			require.Equal(t, tt.code, o.code, "stdout %s\nstderr %s", o.stdout, o.stderr)
			require.Contains(t, o.stderr, tt.stderr)
		})
	}
}

func TestNoContext(t *testing.T) {
	o := cli(t, filepath.Join(t.TempDir(), "none.yaml"), "", "jobs", "list")
	require.Equal(t, exitError, o.code)
	require.Contains(t, o.stderr, "run outpost login first")
}

func TestSubmitBodies(t *testing.T) {
	api := newFakeAPI(t, map[string]http.HandlerFunc{
		"POST /api/v1/jobs":    reply(http.StatusCreated, `{"id":"j-1","pool":"default","state":"QUEUED","attempt":0}`),
		"POST /api/v1/sources": reply(http.StatusCreated, `{"id":"s-1","pool":"default","enabled":true,"schedule":{"cron":"0 * * * *"}}`),
	})
	cfg := loggedIn(t, api)
	recipe := filepath.Join(t.TempDir(), "mysql.yml")
	require.NoError(t, os.WriteFile(recipe, []byte("source:\n  type: mysql\n"), 0o600))
	tests := []struct {
		name string
		args []string
		key  string
		want string
	}{
		{"command", []string{"jobs", "submit", "--pool", "default", "--timeout", "1m", "--label", "a=b", "--", "sh", "-c", "echo hi"},
			"POST /api/v1/jobs", `{"pool":"default","timeout":"1m","labels":{"a":"b"},"task":{"command":{"command":"sh","args":["-c","echo hi"]}}}`},
		{"noop", []string{"jobs", "submit", "--noop", "10ms", "--id", "j-1"},
			"POST /api/v1/jobs", `{"id":"j-1","task":{"noop":{"sleep":"10ms"}}}`},
		{"recipe", []string{"jobs", "submit", "--recipe", recipe},
			"POST /api/v1/jobs", `{"task":{"ingest":{"recipe":"source:\n  type: mysql\n","format":"yaml"}}}`},
		{"source on a schedule", []string{"sources", "create", "--id", "s-1", "--recipe", recipe, "--schedule", "0 * * * *", "--time-zone", "Europe/Paris"},
			"POST /api/v1/sources", `{"id":"s-1","task":{"ingest":{"recipe":"source:\n  type: mysql\n","format":"yaml"}},"schedule":{"cron":"0 * * * *","time_zone":"Europe/Paris"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := cli(t, cfg, "", tt.args...)
			require.Equal(t, exitOK, o.code, o.stderr)
			require.JSONEq(t, tt.want, api.body(tt.key))
		})
	}
	o := cli(t, cfg, `{"pool":"x","task":{"noop":{}}}`, "jobs", "submit", "-f", "-")
	require.Equal(t, exitOK, o.code, o.stderr)
	require.JSONEq(t, `{"pool":"x","task":{"noop":{}}}`, api.body("POST /api/v1/jobs"))
}

func TestLoginAndContexts(t *testing.T) {
	api := newFakeAPI(t, map[string]http.HandlerFunc{"GET /api/v1/tenants": reply(http.StatusOK, `{"tenants":[{"name":"default"}]}`)})
	dir := t.TempDir()
	cfg := filepath.Join(dir, "outpost", "config.yaml")

	o := cli(t, cfg, testKey+"\n", "login", "--scheduler", api.srv.URL, "--api-key-stdin")
	require.Equal(t, exitOK, o.code, o.stderr)
	st, err := os.Stat(cfg)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	keyFile := filepath.Join(dir, "acme.key")
	require.NoError(t, os.WriteFile(keyFile, []byte(testKey), 0o600))
	o = cli(t, cfg, "", "login", "--name", "acme", "--tenant", "acme", "--scheduler", api.srv.URL, "--api-key-file", keyFile)
	require.Equal(t, exitOK, o.code, o.stderr)

	o = cli(t, cfg, "", "context", "list")
	require.Equal(t, exitOK, o.code, o.stderr)
	lines := strings.Split(strings.TrimSpace(o.stdout), "\n")
	require.Len(t, lines, 3)
	require.Equal(t, []string{"*", "acme", api.srv.URL, "-", "acme", "api-key"}, strings.Fields(lines[1]))
	require.Equal(t, []string{"-", "default", api.srv.URL, "-", "-", "api-key"}, strings.Fields(lines[2]))

	o = cli(t, cfg, "", "context", "use", "default")
	require.Equal(t, exitOK, o.code, o.stderr)
	loaded, err := loadConfig(cfg)
	require.NoError(t, err)
	require.Equal(t, "default", loaded.Current)
	require.Equal(t, testKey, loaded.Contexts["default"].Token)

	refused := []struct {
		name  string
		stdin string
		args  []string
		code  int
		msg   string
	}{
		{"malformed key", "secret", []string{"--api-key-stdin"}, exitUsage, "opk_<id>_<secret>"},
		{"key the API refuses", "opk_0123456789abcdef_other", []string{"--api-key-stdin"}, exitError, "the credential was not accepted: the credential is not valid"},
		{"two credentials", testKey, []string{"--api-key-stdin", "--api-key", testKey}, exitUsage, "exactly one of"},
		{"unknown context", "", []string{}, exitError, ""},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"login", "--name", "other", "--scheduler", api.srv.URL}, tt.args...)
			if tt.name == "unknown context" {
				args = []string{"context", "use", "other"}
			}
			o := cli(t, cfg, tt.stdin, args...)
			require.Equal(t, tt.code, o.code, o.stderr)
			require.Contains(t, o.stderr, tt.msg)
			loaded, err := loadConfig(cfg)
			require.NoError(t, err)
			require.Nil(t, loaded.Contexts["other"], "a refused login stores nothing")
			require.Equal(t, "default", loaded.Current)
		})
	}
}

func TestDeviceFlow(t *testing.T) {
	api := newFakeAPI(t, map[string]http.HandlerFunc{"GET /api/v1/tenants": reply(http.StatusOK, `{"tenants":[]}`)})
	t.Run("issuer without device flow", func(t *testing.T) {
		var issuer *httptest.Server
		issuer = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(`{"issuer":"` + issuer.URL + `","token_endpoint":"` + issuer.URL + `/token"}`))
		}))
		t.Cleanup(issuer.Close)
		o := cli(t, filepath.Join(t.TempDir(), "c.yaml"), "", "login", "--scheduler", api.srv.URL, "--oidc-issuer", issuer.URL, "--client-id", "cli")
		require.Equal(t, exitError, o.code)
		require.Contains(t, o.stderr, "does not support the OAuth 2.0 device authorization grant")
	})
	t.Run("issuer with device flow", func(t *testing.T) {
		mux := http.NewServeMux()
		var issuer *httptest.Server
		mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(`{"issuer":"` + issuer.URL + `","token_endpoint":"` + issuer.URL + `/token","device_authorization_endpoint":"` + issuer.URL + `/device"}`))
		})
		mux.HandleFunc("POST /device", func(w http.ResponseWriter, r *http.Request) {
			if r.ParseForm() != nil || r.PostForm.Get("client_id") != "cli" {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"device_code":"dc","user_code":"ABCD-EFGH","verification_uri":"` + issuer.URL + `/activate","interval":1,"expires_in":60}`))
		})
		mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
			if r.ParseForm() != nil || r.PostForm.Get("device_code") != "dc" {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			// The API takes the token as a bearer: the fake API accepts testKey.
			_, _ = w.Write([]byte(`{"access_token":"at","token_type":"Bearer","id_token":"` + testKey + `"}`))
		})
		issuer = httptest.NewServer(mux)
		t.Cleanup(issuer.Close)
		cfg := filepath.Join(t.TempDir(), "c.yaml")
		o := cli(t, cfg, "", "login", "--scheduler", api.srv.URL, "--oidc-issuer", issuer.URL, "--client-id", "cli")
		require.Equal(t, exitOK, o.code, o.stderr)
		require.Contains(t, o.stderr, "enter the code ABCD-EFGH")
		loaded, err := loadConfig(cfg)
		require.NoError(t, err)
		require.Equal(t, testKey, loaded.Contexts["default"].Token)
		require.Equal(t, issuer.URL, loaded.Contexts["default"].Issuer)
	})
}

func TestRunnersTable(t *testing.T) {
	api := newFakeAPI(t, map[string]http.HandlerFunc{"GET /api/v1/runners": reply(http.StatusOK,
		`{"runners":[{"id":"r-1","pool":"remote","version":"v1.2.3","state":"lost","running":0,"capacity":4,"draining":false,"last_seen":"2026-01-02T03:04:05Z","silent_seconds":60}],"window_seconds":15}`)})
	o := cli(t, loggedIn(t, api), "", "runners", "list", "--pool", "remote")
	require.Equal(t, exitOK, o.code, o.stderr)
	lines := strings.Split(strings.TrimSpace(o.stdout), "\n")
	require.Len(t, lines, 2)
	require.Equal(t, []string{"remote", "r-1", "lost", "v1.2.3", "0", "4", "false", "2026-01-02T03:04:05Z"}, strings.Fields(lines[1]))
}

func TestPoolsTable(t *testing.T) {
	api := newFakeAPI(t, map[string]http.HandlerFunc{"GET /api/v1/pools": reply(http.StatusOK,
		`{"pools":[{"tenant":"default","pool":"etl","paused":false,"backlog":3,"oldest_queued_seconds":42.5,`+
			`"dispatch_lag":{"samples":2,"p50_seconds":0.25,"max_seconds":1.5,"last_seconds":1.5},"runners":1,"runners_lost":2}],"lag_window_seconds":900}`)})
	o := cli(t, loggedIn(t, api), "", "pools", "list")
	require.Equal(t, exitOK, o.code, o.stderr)
	lines := strings.Split(strings.TrimSpace(o.stdout), "\n")
	require.Len(t, lines, 2)
	require.Equal(t, []string{"etl", "false", "3", "42.5", "0.25", "1.5", "1", "2"}, strings.Fields(lines[1]))
}

func TestWatchersTable(t *testing.T) {
	api := newFakeAPI(t, map[string]http.HandlerFunc{"GET /api/v1/watchers": func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("state") != "lost" || r.URL.Query().Get("zone") != "eu-1" {
			http.Error(w, "filters not passed: "+r.URL.RawQuery, http.StatusBadRequest)
			return
		}
		reply(http.StatusOK, `{"watchers":[{"id":"w-1","zoneId":"eu-1","version":"v1.2.3","state":"lost","live":false,"stopping":false,`+
			`"intervalMs":10000,"lastSeen":"2026-01-02T03:04:05Z","accounts":[{"account":"a","generation":1},{"account":"b","generation":2}]}],"count":1}`)(w, r)
	}})
	o := cli(t, loggedIn(t, api), "", "watchers", "list", "--zone", "eu-1", "--state", "lost")
	require.Equal(t, exitOK, o.code, o.stderr)
	lines := strings.Split(strings.TrimSpace(o.stdout), "\n")
	require.Len(t, lines, 2)
	require.Equal(t, []string{"ZONE", "WATCHER", "STATE", "VERSION", "ACCOUNTS", "LAST", "SEEN"}, strings.Fields(lines[0]))
	require.Equal(t, []string{"eu-1", "w-1", "lost", "v1.2.3", "2", "2026-01-02T03:04:05Z"}, strings.Fields(lines[1]))
}

func TestJobsListFilters(t *testing.T) {
	var got url.Values
	api := newFakeAPI(t, map[string]http.HandlerFunc{"GET /api/v1/jobs": func(w http.ResponseWriter, r *http.Request) {
		got = r.URL.Query()
		reply(http.StatusOK, jobsAnswer)(w, r)
	}})
	cfg := loggedIn(t, api)
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, q url.Values)
	}{
		{"labels repeat", []string{"--label", "team=data", "--label", "env"}, func(t *testing.T, q url.Values) {
			require.Equal(t, []string{"team=data", "env"}, q["label"])
		}},
		{"since a duration", []string{"--since", "1h"}, func(t *testing.T, q url.Values) {
			at, err := time.Parse(time.RFC3339, q.Get("since"))
			require.NoError(t, err)
			require.WithinDuration(t, time.Now().Add(-time.Hour), at, time.Minute)
		}},
		{"since a time", []string{"--since", "2026-01-02T03:04:05Z"}, func(t *testing.T, q url.Values) {
			require.Equal(t, "2026-01-02T03:04:05Z", q.Get("since"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := cli(t, cfg, "", append([]string{"jobs", "list"}, tt.args...)...)
			require.Equal(t, exitOK, o.code, o.stderr)
			tt.check(t, got)
		})
	}
}

package app_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/testenv"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
)

// rulesEnv is a scheduler whose test requests are made by named users:
// each user gets an API key of its own (owner = the user's name), made by
// the bootstrap admin, so the principal of its requests is that user.
type rulesEnv struct {
	*env
	keys map[string]string // "<user>/<role>" → API key
}

func newRulesEnv(t *testing.T) *rulesEnv {
	return &rulesEnv{env: newEnv(t), keys: map[string]string{}}
}

// keyOf returns the API key of user with role in tenant default, made on
// first use.
func (e *rulesEnv) keyOf(user, role string) string {
	e.t.Helper()
	if k, ok := e.keys[user+"/"+role]; ok {
		return k
	}
	c := testenv.Client{Base: e.url, Token: e.token}
	code, _, out, err := c.SendHeader(e.ctx, http.MethodPost, "/api/v1/keys",
		map[string]any{"owner": user, "tenants": []string{"default"}, "role": role}, nil)
	require.NoError(e.t, err)
	require.Equal(e.t, http.StatusCreated, code, string(out))
	var created struct {
		Secret string `json:"secret"`
	}
	require.NoError(e.t, json.Unmarshal(out, &created))
	e.keys[user+"/"+role] = created.Secret
	return created.Secret
}

// as sends a request made by principal ("" for none), an admin.
func (e *rulesEnv) as(principal, method, path string, body any) (int, []byte) {
	e.t.Helper()
	return e.asRole(principal, "", method, path, body)
}

// asRole sends a request made by principal with role (admin when empty).
func (e *rulesEnv) asRole(principal, role, method, path string, body any) (int, []byte) {
	e.t.Helper()
	c := testenv.Client{Base: e.url}
	if principal != "" {
		if role == "" {
			role = "admin"
		}
		c.Token = e.keyOf(principal, role)
	}
	code, _, out, err := c.SendHeader(e.ctx, method, path, body, nil)
	require.NoError(e.t, err)
	return code, out
}

// must sends a request as the admin and requires a 2xx.
func (e *rulesEnv) must(method, path string, body any) {
	e.t.Helper()
	code, out := e.as("admin@example.com", method, path, body)
	require.True(e.t, code >= 200 && code < 300, "%s %s: %d %s", method, path, code, out)
}

type rulesExplain struct {
	State   string `json:"state"`
	Summary string `json:"summary"`
	Reasons []struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"reasons"`
	Deployments []struct {
		Pool    string   `json:"pool"`
		Allowed bool     `json:"allowed"`
		Rule    string   `json:"rule"`
		Failed  []string `json:"failed"`
	} `json:"deployments"`
}

func (e *rulesEnv) explain(id string) rulesExplain {
	e.t.Helper()
	code, out := e.as("admin@example.com", "GET", "/api/v1/jobs/"+id+"/explain", nil)
	require.Equal(e.t, http.StatusOK, code, string(out))
	return decode[rulesExplain](e.t, out)
}

// submitAs submits a noop job of pool and project as user.
func (e *rulesEnv) submitAs(user, pool, project string) string {
	e.t.Helper()
	body := noopJob(map[string]any{"pool": pool})
	if project != "" {
		body["project"] = project
	}
	code, out := e.as(user, "POST", "/api/v1/jobs", body)
	require.Equal(e.t, http.StatusCreated, code, string(out))
	return decode[jobView](e.t, out).ID
}

type gatedView struct {
	State   string `json:"state"`
	Gated   bool   `json:"gated"`
	User    string `json:"user"`
	Project string `json:"project"`
}

// waitGated waits until the job is recorded gated, and requires it QUEUED.
func (e *rulesEnv) waitGated(id string) gatedView {
	e.t.Helper()
	var j gatedView
	require.Eventually(e.t, func() bool {
		code, out := e.as("admin@example.com", "GET", "/api/v1/jobs/"+id, nil)
		if code != http.StatusOK {
			return false
		}
		j = decode[gatedView](e.t, out)
		return j.Gated
	}, waitFor, tick, "job %s never gated", id)
	require.Equal(e.t, "QUEUED", j.State)
	return j
}

// directory sets up team t-data (svc-hybrid, alice), user carol in no
// team, projects p-admin (administered by svc-hybrid), p-env (associated
// with environment gke-prod), p-list and p-none of t-data, and the
// deployment of pool hybrid registered by svc-hybrid in gke-prod with the
// project list [p-list].
func (e *rulesEnv) directory() {
	e.t.Helper()
	for _, u := range []string{"svc-hybrid", "alice@example.com", "carol@example.com"} {
		e.must("PUT", "/api/v1/users/"+u, map[string]any{"name": u})
	}
	e.must("PUT", "/api/v1/teams/t-data", nil)
	e.must("PUT", "/api/v1/teams/t-data/members/svc-hybrid", nil)
	e.must("PUT", "/api/v1/teams/t-data/members/alice@example.com", nil)
	for _, p := range []string{"p-admin", "p-env", "p-list", "p-none"} {
		e.must("PUT", "/api/v1/projects/"+p, map[string]any{"team": "t-data"})
	}
	e.must("PUT", "/api/v1/projects/p-admin/admins/svc-hybrid", nil)
	e.must("PUT", "/api/v1/environments/gke-prod", nil)
	e.must("PUT", "/api/v1/environments/gke-prod/projects/p-env", nil)
	code, out := e.as("svc-hybrid", "PUT", "/api/v1/deployments/hybrid", map[string]any{"environment": "gke-prod", "projects": []string{"p-list"}})
	require.Equal(e.t, http.StatusCreated, code, string(out))
}

// TestPollingRules submits one job per rule and per negation of it to the
// pool of a registered deployment: admitted jobs are dispatched, the
// others stay QUEUED with the failed rule in explain.
func TestPollingRules(t *testing.T) {
	e := newRulesEnv(t)
	e.directory()
	hybrid := e.runner("default", "hybrid")
	other := e.runner("default", "default")

	cases := []struct {
		name, user, pool, project string
		rule                      string   // the rule that admits the job
		failed                    []string // else: the failed rules explain names
	}{
		{name: "started by the deployment user", user: "svc-hybrid", pool: "hybrid", rule: "deployment-user"},
		{name: "not the deployment user, not in its team", user: "carol@example.com", pool: "hybrid",
			failed: []string{"user carol@example.com is not in team of deployment user svc-hybrid", "the job names no project"}},
		{name: "team and project administrator", user: "alice@example.com", pool: "hybrid", project: "p-admin", rule: "team-and-project-admin"},
		{name: "team but deployment user not administrator", user: "alice@example.com", pool: "hybrid", project: "p-none",
			failed: []string{"deployment user svc-hybrid is not administrator of project p-none"}},
		{name: "project administrator but not in team", user: "carol@example.com", pool: "hybrid", project: "p-admin",
			failed: []string{"user carol@example.com is not in team of deployment user svc-hybrid"}},
		{name: "team and environment", user: "alice@example.com", pool: "hybrid", project: "p-env", rule: "team-and-environment"},
		{name: "team but project not in environment", user: "alice@example.com", pool: "hybrid", project: "p-none",
			failed: []string{"project p-none not associated with environment gke-prod"}},
		{name: "environment but not in team", user: "carol@example.com", pool: "hybrid", project: "p-env",
			failed: []string{"user carol@example.com is not in team of deployment user svc-hybrid"}},
		{name: "team and project list", user: "alice@example.com", pool: "hybrid", project: "p-list", rule: "team-and-project-list"},
		{name: "team but project not in list", user: "alice@example.com", pool: "hybrid", project: "p-none",
			failed: []string{"project p-none not in the project list of deployment hybrid"}},
		{name: "project list but not in team", user: "carol@example.com", pool: "hybrid", project: "p-list",
			failed: []string{"user carol@example.com is not in team of deployment user svc-hybrid"}},
		{name: "pool without a deployment takes every job", user: "carol@example.com", pool: "default", project: "p-none"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := e.submitAs(tc.user, tc.pool, tc.project)
			if tc.failed == nil {
				r := hybrid
				if tc.pool != "hybrid" {
					r = other
				}
				_, m := r.next(t)
				require.Equal(t, id, m.GetJobId(), "a job the rules refuse was dispatched")
				require.Equal(t, tc.project, m.GetSpec().GetProject())
				if tc.rule != "" {
					x := e.explain(id)
					require.Len(t, x.Deployments, 1)
					require.True(t, x.Deployments[0].Allowed)
					require.Equal(t, tc.rule, x.Deployments[0].Rule)
				}
				return
			}
			j := e.waitGated(id)
			require.Equal(t, tc.user, j.User)
			require.Equal(t, tc.project, j.Project)
			x := e.explain(id)
			require.Equal(t, "QUEUED", x.State)
			require.Equal(t, "DEPLOYMENT_RULES", x.Reasons[0].Code)
			require.Len(t, x.Deployments, 1)
			require.False(t, x.Deployments[0].Allowed)
			for _, f := range tc.failed {
				require.Contains(t, x.Summary, f)
				require.True(t, containsPrefix(x.Deployments[0].Failed, f), "failed rules %q lack %q", x.Deployments[0].Failed, f)
			}
		})
	}
	hybrid.requireEmpty(t)
	other.requireEmpty(t)
}

func containsPrefix(list []string, s string) bool {
	for _, v := range list {
		if strings.HasPrefix(v, s) {
			return true
		}
	}
	return false
}

// TestGatedJobRunsOnceAllowed: a job of a user outside the deployment
// user's team, in a project of no environment, stays QUEUED and explain
// names both failed rules; once the user joins the team explain names the
// project's; once the project is associated with the deployment's
// environment the job is dispatched and runs.
func TestGatedJobRunsOnceAllowed(t *testing.T) {
	e := newRulesEnv(t)
	e.directory()
	e.must("PUT", "/api/v1/projects/p-42", map[string]any{"team": "t-data"})
	r := e.runner("default", "hybrid")

	id := e.submitAs("carol@example.com", "hybrid", "p-42")
	e.waitGated(id)
	x := e.explain(id)
	require.Contains(t, x.Summary, "user carol@example.com is not in team of deployment user svc-hybrid")
	require.Contains(t, x.Summary, "project p-42 not associated with environment gke-prod")

	e.must("PUT", "/api/v1/teams/t-data/members/carol@example.com", nil)
	require.Eventually(t, func() bool {
		x = e.explain(id)
		return len(x.Deployments) == 1 && !strings.Contains(strings.Join(x.Deployments[0].Failed, ";"), "not in team")
	}, waitFor, tick)
	require.Equal(t, "QUEUED", x.State)
	require.Contains(t, x.Summary, "project p-42 not associated with environment gke-prod")
	r.requireEmpty(t)

	e.must("PUT", "/api/v1/environments/gke-prod/projects/p-42", nil)
	d, m := r.next(t)
	require.Equal(t, id, m.GetJobId())
	require.Equal(t, "p-42", m.GetSpec().GetProject())
	require.NoError(t, d.Ack(e.ctx))
	e.status("default", id, jobsv1.JobState_JOB_STATE_RUNNING, 1)
	e.status("default", id, jobsv1.JobState_JOB_STATE_SUCCEEDED, 1)
	j := e.waitState("default", id, "SUCCEEDED")
	require.False(t, j.Held)
	require.False(t, e.waitNotGated(id))
	r.requireEmpty(t)
}

func (e *rulesEnv) waitNotGated(id string) bool {
	e.t.Helper()
	var j gatedView
	require.Eventually(e.t, func() bool {
		code, out := e.as("admin@example.com", "GET", "/api/v1/jobs/"+id, nil)
		j = decode[gatedView](e.t, out)
		return code == http.StatusOK && !j.Gated
	}, waitFor, tick)
	return j.Gated
}

// TestDeploymentRebind: registering a deployment with another credential
// binds it to that user, as reinstalling with a new API key does; the old
// deployment user's jobs then go by the rules like anyone's.
func TestDeploymentRebind(t *testing.T) {
	e := newRulesEnv(t)
	e.directory()
	r := e.runner("default", "hybrid")

	code, out := e.as("svc-new", "PUT", "/api/v1/deployments/hybrid", map[string]any{"environment": "gke-prod"})
	require.Equal(t, http.StatusOK, code, string(out))
	code, out = e.as("admin@example.com", "GET", "/api/v1/deployments/hybrid", nil)
	require.Equal(t, http.StatusOK, code, string(out))
	dep := decode[struct {
		User     string   `json:"user"`
		Projects []string `json:"projects"`
	}](t, out)
	require.Equal(t, "svc-new", dep.User)
	require.Empty(t, dep.Projects)

	old := e.submitAs("svc-hybrid", "hybrid", "")
	e.waitGated(old)
	require.Contains(t, e.explain(old).Summary, "user svc-hybrid is not in team of deployment user svc-new")
	mine := e.submitAs("svc-new", "hybrid", "")
	_, m := r.next(t)
	require.Equal(t, mine, m.GetJobId())

	// Without a deployment the pool takes every job again, the gated one
	// included.
	e.must("DELETE", "/api/v1/deployments/hybrid", nil)
	_, m = r.next(t)
	require.Equal(t, old, m.GetJobId())
	r.requireEmpty(t)
}

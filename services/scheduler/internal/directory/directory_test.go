package directory

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/auth"
)

// TestRouteRoles walks every route: reads need viewer, registering a
// deployment operator, every other write admin; none is left without a
// role.
func TestRouteRoles(t *testing.T) {
	a := NewAPI(func(http.ResponseWriter, *http.Request) (*Store, bool) { return nil, false }, APIOptions{})
	routes := a.Routes()
	require.NotEmpty(t, routes)
	seen := map[string]bool{}
	for _, rt := range routes {
		t.Run(rt.Pattern, func(t *testing.T) {
			require.False(t, seen[rt.Pattern], "route registered twice")
			seen[rt.Pattern] = true
			require.NotNil(t, rt.Handler)
			method, _, ok := strings.Cut(rt.Pattern, " ")
			require.True(t, ok, "pattern without a method")
			want := auth.RoleAdmin
			switch {
			case method == http.MethodGet:
				want = auth.RoleViewer
			case rt.Pattern == "PUT /api/v1/deployments/{pool}":
				want = auth.RoleOperator
			}
			require.Equal(t, want, rt.Role)
		})
	}
	router := auth.NewGuard(auth.GuardOptions{}).Router(http.NewServeMux())
	Register(router, routes)
	rules := router.Rules()
	require.Len(t, rules, len(routes))
	for i, rt := range routes {
		require.Equal(t, rt.Pattern, rules[i].Pattern)
		require.Equal(t, rt.Role, rules[i].Role)
	}
}

// TestEvaluate applies each rule and its negation to a snapshot.
func TestEvaluate(t *testing.T) {
	snap := &Snapshot{
		Teams:        []Team{{ID: "t", Members: []string{"alice", "svc"}}, {ID: "u", Members: []string{"carol"}}},
		Projects:     []Project{{ID: "p-admin", Team: "t", Admins: []string{"svc"}}, {ID: "p-env", Team: "t"}, {ID: "p-list", Team: "t"}, {ID: "p-42", Team: "t"}},
		Environments: []Environment{{Name: "gke-prod", Projects: []string{"p-env"}}},
	}
	d := &Deployment{Pool: "hybrid", User: "svc", Environment: "gke-prod", Projects: []string{"p-list"}}
	cases := []struct {
		name, user, project, rule string
		failed                    []string
	}{
		{name: "deployment user", user: "svc", rule: RuleDeploymentUser},
		{name: "deployment user, any project", user: "svc", project: "p-42", rule: RuleDeploymentUser},
		{name: "not in team", user: "carol", project: "p-admin", failed: []string{"user carol is not in team of deployment user svc"}},
		{name: "no user", project: "p-admin", failed: []string{"the job has no submitting user, so it is neither the deployment user svc nor in a team of it"}},
		{name: "team and admin", user: "alice", project: "p-admin", rule: RuleProjectAdmin},
		{name: "team and environment", user: "alice", project: "p-env", rule: RuleEnvironment},
		{name: "team and list", user: "alice", project: "p-list", rule: RuleProjectList},
		{name: "team, no project", user: "alice", failed: []string{"the job names no project, so no project rule can admit it"}},
		{name: "team, project of no rule", user: "alice", project: "p-42", failed: []string{
			"deployment user svc is not administrator of project p-42",
			"project p-42 not associated with environment gke-prod",
			"project p-42 not in the project list of deployment hybrid",
		}},
		{name: "neither team nor project", user: "carol", project: "p-42", failed: []string{
			"user carol is not in team of deployment user svc",
			"deployment user svc is not administrator of project p-42",
			"project p-42 not associated with environment gke-prod",
			"project p-42 not in the project list of deployment hybrid",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := snap.Evaluate(d, tc.user, tc.project)
			require.Equal(t, tc.failed == nil, c.Allowed)
			require.Equal(t, tc.rule, c.Rule)
			require.Equal(t, tc.failed, c.Failed)
			require.Equal(t, "hybrid", c.Pool)
			require.Equal(t, "svc", c.DeploymentUser)
		})
	}
	noEnv := &Deployment{Pool: "bare", User: "svc"}
	c := snap.Evaluate(noEnv, "alice", "p-env")
	require.False(t, c.Allowed)
	require.Contains(t, c.Failed, "deployment bare has no environment")
	require.Nil(t, snap.Check("other-pool", "carol", ""), "a pool without a deployment has no rules")
}

// TestCheckIDs: ids that could not be keys or subject tokens are refused
// with the field named.
func TestCheckIDs(t *testing.T) {
	for _, id := range []string{"", "a b", "a\tb", "x\x00", strings.Repeat("u", maxUserID+1), "\xff"} {
		err := CheckUserID(id, "user")
		require.ErrorIs(t, err, ErrInvalid, "%q", id)
		ie, ok := err.(*InvalidError)
		require.True(t, ok)
		require.Equal(t, "user", ie.Field)
	}
	for _, id := range []string{"alice@example.com", "apikey:opk_1", "svc-hybrid", "élise"} {
		require.NoError(t, CheckUserID(id, "user"), id)
	}
	require.ErrorIs(t, CheckName("a.b", "team"), ErrInvalid)
	require.NoError(t, CheckName("t-data_1", "team"))
}

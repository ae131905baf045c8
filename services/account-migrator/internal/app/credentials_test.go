package app

import (
	"context"
	"encoding/base64"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/auth"
	"github.com/outposthq/outpost/services/account-migrator/internal/config"
)

// definitionView is what POST, PUT and GET /credentials/type/kubernetes
// answer, as far as the tests look.
type definitionView struct {
	Type                  string              `json:"@type"`
	Name                  string              `json:"name"`
	KubeconfigFile        string              `json:"kubeconfigFile"`
	HasKubeconfigContents bool                `json:"hasKubeconfigContents"`
	Namespaces            []string            `json:"namespaces"`
	OmitKinds             []string            `json:"omitKinds"`
	Permissions           map[string][]string `json:"permissions"`
	IgnoredFields         []string            `json:"ignoredFields"`
	DynamicAccount        struct {
		State  string `json:"state"`
		Source string `json:"source"`
	} `json:"dynamicAccount"`
}

const kubeconfigSample = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:6443"}
users:
- name: u
  user: {token: "credentials-api-token-value"}
contexts:
- name: c
  context: {cluster: c, user: u}
current-context: c
`

func credentialsEnv(t *testing.T) *env {
	return newEnv(t, 1, func(c *config.Config) {
		c.KubeconfigKey = base64.StdEncoding.EncodeToString(make([]byte, 32))
		// Interception only: no source to scan.
		c.AutoMigration = config.AutoMigration{Enabled: true, Pattern: "^spin-", Interval: time.Hour, Secrets: config.Secrets{Key: "config"}}
	})
}

// TestCredentialsAPI: Spinnaker's account definitions become Dynamic
// Accounts; fields Outpost does not use are reported, unknown ones and
// other types refused; the inline kubeconfig is sealed and never returned.
func TestCredentialsAPI(t *testing.T) {
	e := credentialsEnv(t)

	refused := []struct {
		name, body, want string
	}{
		{"not an object", `[]`, "must be an object"},
		{"no type", `{"name":"spin-a"}`, `"kubernetes" is the supported account type`},
		{"other type", `{"@type":"aws","name":"spin-a"}`, `@type "aws" is not supported: only "kubernetes"`},
		{"unknown field", `{"@type":"kubernetes","name":"spin-a","kubeconfg":"x"}`, `unknown field "kubeconfg"`},
		{"no name", `{"@type":"kubernetes"}`, "name is required"},
		{"bad name", `{"@type":"kubernetes","name":"spin.a"}`, "want 1-64 characters"},
		{"wrong type", `{"@type":"kubernetes","name":"spin-a","namespaces":"web"}`, "wrong type"},
		{"omitNamespaces", `{"@type":"kubernetes","name":"spin-a","omitNamespaces":["kube-system"]}`, "omitNamespaces is not supported"},
		{"kinds and omitKinds", `{"@type":"kubernetes","name":"spin-a","kinds":["pod"],"omitKinds":["secret"]}`, "at most one of kinds and omitKinds"},
		{"file and contents", `{"@type":"kubernetes","name":"spin-a","kubeconfigFile":"/k","kubeconfigContents":"x"}`, "exclusive"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			code, out := e.do(http.MethodPost, "/credentials", tc.body)
			require.Equal(t, http.StatusBadRequest, code, "%s", out)
			require.Contains(t, decode[map[string]string](t, out)["error"], tc.want)
		})
	}
	code, out := e.do(http.MethodGet, "/credentials/type/aws", nil)
	require.Equal(t, http.StatusBadRequest, code, "%s", out)
	require.Contains(t, decode[map[string]string](t, out)["error"], `only "kubernetes"`)
	require.Empty(t, e.listCredentials(), "nothing refused was stored")

	// A name of the migration pattern is migrated; it carries the
	// kubeconfig sealed and its ignored fields reported.
	code, out = e.do(http.MethodPost, "/credentials", map[string]any{
		"@type": "kubernetes", "name": "spin-prod", "kubeconfigContents": kubeconfigSample,
		"namespaces": []string{"web"}, "cacheThreads": 4, "onlySpinnakerManaged": true, "environment": "prod",
		"permissions": map[string][]string{"READ": {"dev", "ops"}, "WRITE": {"ops"}},
	})
	require.Equal(t, http.StatusOK, code, "%s", out)
	require.NotContains(t, string(out), "credentials-api-token-value")
	def := decode[definitionView](t, out)
	require.Equal(t, "kubernetes", def.Type)
	require.True(t, def.HasKubeconfigContents)
	require.Equal(t, []string{"cacheThreads", "environment", "onlySpinnakerManaged"}, def.IgnoredFields)
	require.Equal(t, map[string][]string{"READ": {"dev", "ops"}, "WRITE": {"ops"}}, def.Permissions)
	require.Equal(t, "credentials", def.DynamicAccount.Source)
	require.Contains(t, []string{"TO_MIGRATE", "ACTIVATING", "FAILED"}, def.DynamicAccount.State, "a name of the pattern is migrated")

	// Any other name waits, INACTIVE.
	code, out = e.do(http.MethodPost, "/credentials", map[string]any{"@type": "kubernetes", "name": "manual", "kubeconfigFile": "encryptedFile:k8s!n:kc!k:config!ns:spinnaker"})
	require.Equal(t, http.StatusOK, code, "%s", out)
	require.Equal(t, "INACTIVE", decode[definitionView](t, out).DynamicAccount.State)
	code, out = e.do(http.MethodPost, "/credentials", map[string]any{"@type": "kubernetes", "name": "manual"})
	require.Equal(t, http.StatusConflict, code, "%s", out)

	// PUT replaces the definition; without credentials it keeps the
	// sealed kubeconfig (GET never returns it to send back).
	code, out = e.do(http.MethodGet, "/credentials/type/kubernetes?startingAccountName=spin-&limit=1", nil)
	require.Equal(t, http.StatusOK, code, "%s", out)
	defs := decode[[]map[string]any](t, out)
	require.Len(t, defs, 1)
	require.Equal(t, "spin-prod", defs[0]["name"])
	defs[0]["omitKinds"] = []string{"secrets"}
	delete(defs[0], "permissions")
	code, out = e.do(http.MethodPut, "/credentials", defs[0])
	require.Equal(t, http.StatusOK, code, "a GET sent back as a PUT is taken: %s", out)
	def = decode[definitionView](t, out)
	require.True(t, def.HasKubeconfigContents)
	require.Equal(t, []string{"secrets"}, def.OmitKinds)
	require.Equal(t, []string{"web"}, def.Namespaces)
	require.Empty(t, def.IgnoredFields, "the PUT sent none")
	require.Equal(t, map[string][]string{"READ": {}, "WRITE": {}}, def.Permissions, "PUT replaces: no permissions left")
	code, out = e.do(http.MethodPut, "/credentials", map[string]any{"@type": "kubernetes", "name": "missing"})
	require.Equal(t, http.StatusNotFound, code, "%s", out)

	// Spinnaker's list and detail shapes, the Dynamic Accounts state
	// alongside, never a kubeconfig.
	list := e.listCredentials()
	require.Len(t, list, 2)
	for _, a := range list {
		require.Equal(t, "kubernetes", a["type"])
		require.Equal(t, "kubernetes", a["cloudProvider"])
		require.Contains(t, a, "permissions")
		require.Contains(t, a["dynamicAccount"], "state")
	}
	code, out = e.do(http.MethodGet, "/credentials/spin-prod", nil)
	require.Equal(t, http.StatusOK, code, "%s", out)
	require.NotContains(t, string(out), "credentials-api-token-value")
	detail := decode[map[string]any](t, out)
	require.Equal(t, true, detail["hasKubeconfigContents"])
	require.Equal(t, []any{"secrets"}, detail["omitKinds"])

	// DELETE: an INACTIVE account goes at once.
	code, out = e.do(http.MethodDelete, "/credentials/manual", nil)
	require.Equal(t, http.StatusOK, code, "%s", out)
	code, _ = e.do(http.MethodGet, "/credentials/manual", nil)
	require.Equal(t, http.StatusNotFound, code)
	code, _ = e.do(http.MethodDelete, "/credentials/manual", nil)
	require.Equal(t, http.StatusNotFound, code)
	require.NotContains(t, e.logs.String(), "credentials-api-token-value")
}

func (e *env) listCredentials() []map[string]any {
	e.t.Helper()
	code, out := e.do(http.MethodGet, "/credentials", nil)
	require.Equal(e.t, http.StatusOK, code, "%s", out)
	return decode[[]map[string]any](e.t, out)
}

// TestCredentialsPermissions: an account with permissions is hidden from
// a caller in none of its groups, in both APIs, and shown to admins.
func TestCredentialsPermissions(t *testing.T) {
	e := credentialsEnv(t)
	code, out := e.do(http.MethodPost, "/credentials", map[string]any{
		"@type": "kubernetes", "name": "restricted", "permissions": map[string][]string{"READ": {"team-a"}, "WRITE": {"team-a"}},
	})
	require.Equal(t, http.StatusOK, code, "%s", out)
	code, out = e.do(http.MethodPost, "/credentials", map[string]any{"@type": "kubernetes", "name": "open"})
	require.Equal(t, http.StatusOK, code, "%s", out)

	_, viewer, err := auth.NewKeys(e.conn, nil).Create(context.Background(), auth.KeyRequest{Owner: "v", Tenants: []string{tenant}, Role: auth.RoleOperator})
	require.NoError(t, err)
	as := map[string]string{"Authorization": "Bearer " + viewer}
	cases := []struct {
		path     string
		wantCode int
	}{
		{"/credentials/restricted", http.StatusNotFound},
		{"/api/v1/accounts/restricted", http.StatusNotFound},
		{"/api/v1/accounts/restricted/objects", http.StatusNotFound},
		{"/credentials/open", http.StatusOK},
		{"/api/v1/accounts/open", http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			code, out := e.doOn(0, http.MethodGet, tc.path, nil, as)
			require.Equal(t, tc.wantCode, code, "%s", out)
		})
	}
	for _, path := range []string{"/credentials", "/api/v1/accounts", "/credentials/type/kubernetes"} {
		_, out := e.doOn(0, http.MethodGet, path, nil, as)
		require.NotContains(t, string(out), "restricted", path)
		require.Contains(t, string(out), `"open"`, path)
	}
	code, out = e.doOn(0, http.MethodPost, "/api/v1/accounts/restricted/operations", `{"type":"delete","apiVersion":"v1","kind":"ConfigMap","namespace":"y","name":"x"}`, as)
	require.Equal(t, http.StatusNotFound, code, "%s", out)
	// The admin sees it.
	code, out = e.do(http.MethodGet, "/credentials/restricted", nil)
	require.Equal(t, http.StatusOK, code, "%s", out)
	require.Contains(t, string(out), "team-a")
}

// TestInstancesEndpoint: the replica lists itself, ready, under both paths.
func TestInstancesEndpoint(t *testing.T) {
	e := newEnv(t, 1, func(c *config.Config) {
		c.Instance.ID = "migrator-0"
		c.Instance.BaseURL = "http://outpost-account-migrator:8081"
		c.Instance.HeartbeatInterval = 100 * time.Millisecond
	})
	for _, path := range []string{"/armory/clouddrivers", "/api/v1/instances"} {
		require.Eventually(t, func() bool {
			code, out, err := e.tryDo(0, http.MethodGet, path, nil, nil)
			if err != nil || code != http.StatusOK {
				return false
			}
			list := decode[[]map[string]any](t, out)
			return len(list) == 1 && list[0]["id"] == "migrator-0" && list[0]["ready"] == true &&
				list[0]["baseUrl"] == "http://outpost-account-migrator:8081" && list[0]["role"] == "account-migrator" &&
				list[0]["lastUpdated"] != nil && list[0]["version"] != ""
		}, wait, tick, path)
	}
}

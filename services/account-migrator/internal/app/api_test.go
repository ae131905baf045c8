package app

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/services/account-migrator/internal/accounts"
	"github.com/outposthq/outpost/services/account-migrator/internal/config"

	"github.com/outposthq/outpost/libs/seal"
)

func TestBadInput(t *testing.T) {
	e := newEnv(t, 1)
	big := `[{"name":"big","context":"` + strings.Repeat("x", int(e.cfg.MaxRequestBytes)) + `"}]`
	tests := []struct {
		name    string
		method  string
		body    string
		code    int
		field   string
		message string
	}{
		{"invalid JSON", http.MethodPost, `[{"name":"a"`, http.StatusBadRequest, "", "truncated"},
		{"not JSON", http.MethodPost, `name=a`, http.StatusBadRequest, "", "invalid JSON"},
		{"unknown field", http.MethodPost, `[{"name":"a"},{"name":"b","zone":"z"}]`, http.StatusBadRequest, "[1].zone", "unknown field"},
		{"wrong type", http.MethodPost, `[{"name":"a","namespaces":"ns"}]`, http.StatusBadRequest, "[0].namespaces", "wrong type"},
		{"empty body", http.MethodPost, ``, http.StatusBadRequest, "", "empty"},
		{"empty array", http.MethodPatch, `[]`, http.StatusBadRequest, "", "empty"},
		{"oversize", http.MethodPost, big, http.StatusRequestEntityTooLarge, "", "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, b := e.do(tt.method, "/api/v1/accounts", tt.body)
			require.Equal(t, tt.code, code, string(b))
			body := decode[struct {
				Error string `json:"error"`
				Field string `json:"field"`
			}](t, b)
			require.Equal(t, tt.field, body.Field)
			require.Contains(t, body.Error, tt.message)
		})
	}
	code, b := e.do(http.MethodGet, "/api/v1/accounts", nil)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "[]\n", string(b), "nothing of a refused request is applied")
}

func TestBatchResults(t *testing.T) {
	e := newEnv(t, 1)
	tests := []struct {
		name   string
		method string
		body   string
		code   int
		want   []result
	}{
		{"all created", http.MethodPost, `[{"name":"a"},{"name":"b","kubeconfigFile":"file:/etc/kube/b"}]`, http.StatusOK,
			[]result{{Name: "a", OK: true, State: "INACTIVE"}, {Name: "b", OK: true, State: "INACTIVE"}}},
		{"mixed", http.MethodPost, `[{"name":"c"},{"name":"a"},{"name":"bad.name"},{"name":"c"},{"name":"d","state":"PAUSED"},{"name":"e","kubeconfigFile":"encryptedFile:k8s!n:x"},{"name":"f","kubeconfigContents":"apiVersion: v1"}]`, http.StatusMultiStatus,
			[]result{
				{Name: "c", OK: true, State: "INACTIVE"},
				{Name: "a", Error: `account already exists: "a" (use PATCH to change it)`},
				{Name: "bad.name", Error: `invalid account: name "bad.name": want 1-64 characters of [a-zA-Z0-9_-]`},
				{Name: "c", Error: "account c appears more than once in the request"},
				{Name: "d", Error: `invalid account: state "PAUSED": want ACTIVE or INACTIVE`},
				{Name: "e", Error: `invalid account: kubeconfigFile "encryptedFile:k8s!n:x": n:<secret>, k:<key> and ns:<namespace> are required`},
				{Name: "f", Error: "invalid account: kubeconfigContents: inline kubeconfigs need kubeconfig_key to be configured"},
			}},
		{"all failed", http.MethodPatch, `[{"name":"nobody","state":"ACTIVE"},{"name":"a","serviceAccount":true,"kubeconfigFile":"/x"}]`, http.StatusBadRequest,
			[]result{{Name: "nobody", Error: `account not found: "nobody"`}, {Name: "a", Error: "invalid account: serviceAccount excludes kubeconfigFile and kubeconfigContents"}}},
		{"patch spec of an inactive account", http.MethodPatch, `{"name":"a","context":"prod","kinds":["ConfigMap"]}`, http.StatusOK,
			[]result{{Name: "a", OK: true, State: "INACTIVE"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, b := e.do(tt.method, "/api/v1/accounts", tt.body)
			require.Equal(t, tt.code, code, string(b))
			require.Equal(t, tt.want, decode[[]result](t, b))
		})
	}
	code, b := e.do(http.MethodGet, "/api/v1/accounts", nil)
	require.Equal(t, http.StatusOK, code)
	var got []string
	for _, a := range decode[[]account](t, b) {
		got = append(got, a.Name)
	}
	require.Equal(t, []string{"a", "b", "c"}, got, "failed entries left nothing behind")
	require.Equal(t, "file:/etc/kube/b", e.get("b").Spec.KubeconfigFile)
}

func TestTenants(t *testing.T) {
	e := newEnv(t, 1, func(c *config.Config) { c.Tenants = []string{"default", "acme"} })
	code, b := e.doOn(0, http.MethodPost, "/api/v1/accounts", `[{"name":"a"}]`, map[string]string{"X-Outpost-Tenant": "acme"})
	require.Equal(t, http.StatusOK, code, string(b))
	code, _ = e.doOn(0, http.MethodGet, "/api/v1/accounts/a", nil, map[string]string{"X-Outpost-Tenant": "acme"})
	require.Equal(t, http.StatusOK, code)
	code, _ = e.do(http.MethodGet, "/api/v1/accounts/a", nil)
	require.Equal(t, http.StatusNotFound, code, "accounts are per tenant")
	code, b = e.doOn(0, http.MethodGet, "/api/v1/accounts", nil, map[string]string{"X-Outpost-Tenant": "nobody"})
	require.Equal(t, http.StatusNotFound, code)
	require.Contains(t, string(b), `"field":"X-Outpost-Tenant"`)
}

func TestInlineKubeconfigSealed(t *testing.T) {
	key := make([]byte, config.KeySize)
	_, _ = rand.Read(key)
	e := newEnv(t, 1, func(c *config.Config) { c.KubeconfigKey = base64.StdEncoding.EncodeToString(key) })
	const secret = "client-key-data: TOP-SECRET-MATERIAL"
	l := e.leases("z1")
	e.startWatcher("z1", "w1")

	code, b := e.do(http.MethodPost, "/api/v1/accounts", []map[string]any{{"name": "inline", "state": "ACTIVE", "zoneId": "z1", "kubeconfigContents": secret}})
	require.Equal(t, http.StatusOK, code, string(b))

	store, err := e.conn.OpenStore(context.Background(), AccountsBucket)
	require.NoError(t, err)
	raw, err := store.Get(context.Background(), accounts.Key(tenant, "inline"))
	require.NoError(t, err)
	require.NotContains(t, string(raw.Value), "TOP-SECRET", "sealed at rest")
	rec, err := accounts.Decode(raw.Value)
	require.NoError(t, err)
	keys, err := seal.Parse(nil, base64.StdEncoding.EncodeToString(key))
	require.NoError(t, err)
	sealer := accounts.NewSealer(keys).ForTenant(tenant)
	id, ok := seal.KeyID(rec.Spec.KubeconfigSealed)
	require.True(t, ok, "the sealed value names its key")
	require.Equal(t, seal.DefaultKeyID, id)
	_, err = accounts.NewSealer(keys).ForTenant("other-tenant").Open(rec.Spec.KubeconfigSealed)
	require.ErrorIs(t, err, seal.ErrOpen, "sealed for its tenant only")
	plain, err := sealer.Open(rec.Spec.KubeconfigSealed)
	require.NoError(t, err)
	require.Equal(t, secret, string(plain))

	code, b = e.do(http.MethodGet, "/api/v1/accounts/inline", nil)
	require.Equal(t, http.StatusOK, code)
	require.NotContains(t, string(b), "TOP-SECRET")
	acc := decode[account](t, b)
	require.Equal(t, "<sealed>", acc.Spec.KubeconfigContents)
	require.True(t, acc.Spec.HasInlineKubeconfig)

	lease := e.waitLease(l, "inline", 1)
	plain, err = sealer.Open(lease.GetSpec().GetKubeconfigSealed())
	require.NoError(t, err)
	require.Equal(t, secret, string(plain), "the lease carries it sealed with the tenant's key")
	require.NotContains(t, e.logs.String(), "TOP-SECRET", "never logged")
}

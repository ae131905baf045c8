package app

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outposthq/outpost/libs/inventory"
	"github.com/outposthq/outpost/libs/seal"
	"github.com/outposthq/outpost/libs/testenv"
	accountsv1 "github.com/outposthq/outpost/proto/outpost/accounts/v1"
	watchv1 "github.com/outposthq/outpost/proto/outpost/watch/v1"
)

func TestActivation(t *testing.T) {
	e := newEnv(t)
	e.start(t, e.config(t))
	ns := e.kc.CreateNamespace(t)
	admin, err := os.ReadFile(e.kc.Kubeconfig)
	require.NoError(t, err)
	_, err = e.kc.Client().CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "cluster-creds"},
		Data:       map[string][]byte{"kubeconfig": admin},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	// Sealed the way the account-migrator seals: a key of this tenant
	// (derived from the installation's key, id "default"); and as before
	// key ids, which the same key still opens.
	keys, err := seal.Parse(nil, base64.StdEncoding.EncodeToString(e.key))
	require.NoError(t, err)
	box, err := keys.Seal(tenant, admin)
	require.NoError(t, err)
	legacyBox, err := seal.SealLegacy(e.key, admin)
	require.NoError(t, err)
	block, _ := pem.Decode(e.kc.CACertPEM)
	sum := sha256.Sum256(block.Bytes)

	tests := []struct {
		name   string
		mutate func(*accountsv1.AccountSpec)
	}{
		{name: "plain path", mutate: func(*accountsv1.AccountSpec) {}},
		{name: "file reference", mutate: func(s *accountsv1.AccountSpec) { s.KubeconfigFile = "file:" + e.kc.Kubeconfig }},
		{name: "encrypted file secret", mutate: func(s *accountsv1.AccountSpec) {
			s.KubeconfigFile = "encryptedFile:k8s!n:cluster-creds!k:kubeconfig!ns:" + ns
		}},
		{name: "sealed inline", mutate: func(s *accountsv1.AccountSpec) { s.KubeconfigFile, s.KubeconfigSealed = "", box }},
		{name: "sealed inline before key ids", mutate: func(s *accountsv1.AccountSpec) { s.KubeconfigFile, s.KubeconfigSealed = "", legacyBox }},
		{name: "service account", mutate: func(s *accountsv1.AccountSpec) { s.KubeconfigFile, s.ServiceAccount = "", true }},
		{name: "named context", mutate: func(s *accountsv1.AccountSpec) { s.Context = "kubetest" }},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := e.spec("act"+string(rune('a'+i)), ns)
			tt.mutate(spec)
			st := e.activated(t, spec, 1)
			require.Equal(t, e.kc.Server, st.GetCluster().GetHost())
			require.Equal(t, hex.EncodeToString(sum[:]), st.GetCluster().GetCaFingerprintSha256())
			require.NotEmpty(t, st.GetCluster().GetServerVersion())
			require.Equal(t, zone, st.GetZone())
			require.Len(t, st.GetKinds(), 1)
			require.Equal(t, "configmaps", st.GetKinds()[0].GetToken())
			require.Equal(t, "ConfigMap", st.GetKinds()[0].GetKind())
		})
	}
}

func TestActivationFailures(t *testing.T) {
	e := newEnv(t)
	e.start(t, e.config(t))
	ns := e.kc.CreateNamespace(t)
	// A healthy account on the same watcher keeps working throughout.
	e.activated(t, e.spec("healthy", ns), 1)

	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage")
	require.NoError(t, os.WriteFile(garbage, []byte("this: [is not a kubeconfig"), 0o600))
	admin, err := os.ReadFile(e.kc.Kubeconfig)
	require.NoError(t, err)
	unreachable := filepath.Join(dir, "unreachable")
	port := testenv.FreePort(t)
	require.NoError(t, os.WriteFile(unreachable, []byte(replaceServer(t, string(admin), e.kc.Server, "https://127.0.0.1:"+itoa(port))), 0o600))
	_, err = e.kc.Client().CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "creds"}, Data: map[string][]byte{"other": []byte("x")},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	otherKey := make([]byte, 32)
	box, err := seal.SealLegacy(otherKey, admin)
	require.NoError(t, err)
	keys, err := seal.Parse(nil, base64.StdEncoding.EncodeToString(e.key))
	require.NoError(t, err)
	otherTenant, err := keys.Seal("another-tenant", admin)
	require.NoError(t, err)
	rotated, err := seal.NewKeyring([]seal.Key{{ID: "next", Secret: otherKey}}, nil)
	require.NoError(t, err)
	unknownKey, err := rotated.Seal(tenant, admin)
	require.NoError(t, err)

	tests := []struct {
		name    string
		mutate  func(*accountsv1.AccountSpec)
		wantErr []string
	}{
		{name: "bad kubeconfig", mutate: func(s *accountsv1.AccountSpec) { s.KubeconfigFile = garbage }, wantErr: []string{"bad kubeconfig", garbage}},
		{name: "missing file", mutate: func(s *accountsv1.AccountSpec) { s.KubeconfigFile = "file:/nonexistent/kubeconfig" }, wantErr: []string{"bad kubeconfig", "does not exist"}},
		{name: "unreachable host", mutate: func(s *accountsv1.AccountSpec) { s.KubeconfigFile = unreachable }, wantErr: []string{"cluster unreachable", itoa(port)}},
		{name: "missing secret", mutate: func(s *accountsv1.AccountSpec) {
			s.KubeconfigFile = "encryptedFile:k8s!n:nope!k:kubeconfig!ns:" + ns
		}, wantErr: []string{"secret not found", "nope"}},
		{name: "missing secret key", mutate: func(s *accountsv1.AccountSpec) {
			s.KubeconfigFile = "encryptedFile:k8s!n:creds!k:kubeconfig!ns:" + ns
		}, wantErr: []string{"has no key", "kubeconfig"}},
		{name: "bad reference", mutate: func(s *accountsv1.AccountSpec) { s.KubeconfigFile = "encryptedFile:vault!x" }, wantErr: []string{"bad kubeconfig reference"}},
		{name: "rejected token", mutate: func(s *accountsv1.AccountSpec) {
			s.KubeconfigFile = e.kc.TokenKubeconfig(t, "bogus", "not-a-valid-token")
		}, wantErr: []string{"401"}},
		{name: "sealed with another key", mutate: func(s *accountsv1.AccountSpec) { s.KubeconfigFile, s.KubeconfigSealed = "", box }, wantErr: []string{"sealed kubeconfig", "wrong key"}},
		{name: "sealed for another tenant", mutate: func(s *accountsv1.AccountSpec) { s.KubeconfigFile, s.KubeconfigSealed = "", otherTenant }, wantErr: []string{"sealed kubeconfig", "wrong key"}},
		{name: "sealed with a key not held", mutate: func(s *accountsv1.AccountSpec) { s.KubeconfigFile, s.KubeconfigSealed = "", unknownKey }, wantErr: []string{"sealed kubeconfig", `key id "next"`}},
		{name: "no credentials", mutate: func(s *accountsv1.AccountSpec) { s.KubeconfigFile = "" }, wantErr: []string{"no kubeconfig"}},
		{name: "unknown context", mutate: func(s *accountsv1.AccountSpec) { s.Context = "elsewhere" }, wantErr: []string{"bad kubeconfig", "elsewhere"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := e.spec("fail"+itoa(i), ns)
			tt.mutate(spec)
			e.lease(t, spec, 1)
			st := e.waitStatus(t, spec.GetName(), 1, accountsv1.AccountStatus_TYPE_FAILED)
			for _, w := range tt.wantErr {
				require.Contains(t, st.GetErrorMessage(), w)
			}
		})
	}
	require.Eventually(t, func() bool { return e.leaseBacklog() == 1 }, waitFor, poll, "failed leases are acked, the healthy one is held")

	_, err = e.kc.Client().CoreV1().ConfigMaps(ns).Create(context.Background(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "still-watched"}, Data: map[string]string{"k": "v"},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	e.waitDelta(t, "healthy", "configmaps", ns, "still-watched", func(d *watchv1.ObjectDelta, _ map[string]string) bool {
		return d.GetType() == watchv1.ObjectDelta_TYPE_ADDED
	})
}

// TestNamespacedServiceAccount activates an account whose credentials may
// only read ConfigMaps of one namespace: every other kind is skipped with
// its reason, and the ConfigMaps are watched.
func TestNamespacedServiceAccount(t *testing.T) {
	e := newEnv(t)
	e.start(t, e.config(t))
	ns := e.kc.CreateNamespace(t)
	ctx := context.Background()
	rbac := e.kc.Client().RbacV1()
	_, err := rbac.Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "read-configmaps"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch"}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = rbac.RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "read-configmaps"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "read-configmaps"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "watcher", Namespace: ns}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	kubeconfig := e.kc.ServiceAccountKubeconfig(t, ns, "watcher")

	t.Run("namespace", func(t *testing.T) {
		st := e.activated(t, &accountsv1.AccountSpec{Name: "scoped", KubeconfigFile: kubeconfig, Namespaces: []string{ns}}, 1)
		require.Len(t, st.GetKinds(), 1)
		require.Equal(t, "configmaps", st.GetKinds()[0].GetToken())
		var skipped []string
		for _, s := range st.GetSkipped() {
			skipped = append(skipped, s.GetKind())
			require.Contains(t, s.GetReason(), "forbidden")
		}
		require.Contains(t, skipped, "secrets")
		require.Contains(t, skipped, "deployments.apps")
		_, err := e.kc.Client().CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "seen"}}, metav1.CreateOptions{})
		require.NoError(t, err)
		e.waitDelta(t, "scoped", "configmaps", ns, "seen", func(*watchv1.ObjectDelta, map[string]string) bool { return true })
	})
	t.Run("cluster", func(t *testing.T) {
		e.lease(t, &accountsv1.AccountSpec{Name: "wide", KubeconfigFile: kubeconfig, Kinds: []string{"configmaps", "namespaces"}}, 1)
		st := e.waitStatus(t, "wide", 1, accountsv1.AccountStatus_TYPE_FAILED)
		require.Contains(t, st.GetErrorMessage(), "no kind left to watch")
	})
}

func TestKindSelection(t *testing.T) {
	e := newEnv(t)
	e.start(t, e.config(t))
	tests := []struct {
		name       string
		spec       *accountsv1.AccountSpec
		want       []string
		namespaced bool
	}{
		{name: "kinds by Kind, resource and resource.group", spec: &accountsv1.AccountSpec{
			Kinds: []string{"configmap", "secrets", "deployments.apps", "Namespace"},
		}, want: []string{"configmaps", inventory.KindToken("apps", "deployments"), "namespaces", "secrets"}},
		{name: "omit kinds", spec: &accountsv1.AccountSpec{
			Kinds: []string{"ConfigMap", "secrets", "Deployment"}, OmitKinds: []string{"Secret", "deployments.apps"},
		}, want: []string{"configmaps"}},
		{name: "namespaces keep namespaced kinds only", spec: &accountsv1.AccountSpec{
			Kinds: []string{"configmaps", "namespaces", "clusterroles"}, Namespaces: []string{"default"},
		}, want: []string{"configmaps"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.spec.Name = "sel" + itoa(i)
			tt.spec.KubeconfigFile = e.kc.Kubeconfig
			st := e.activated(t, tt.spec, 1)
			var got []string
			for _, k := range st.GetKinds() {
				got = append(got, k.GetToken())
			}
			require.Equal(t, tt.want, got)
		})
	}
}

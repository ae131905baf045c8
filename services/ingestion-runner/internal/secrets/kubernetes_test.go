package secrets

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outposthq/outpost/libs/kubetest"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

// kubeFixture is a namespace with Secrets and a service account that may
// only get and list them (the runner's least privilege), as a kubeconfig.
func kubeFixture(t *testing.T) (c *kubetest.Cluster, ns, kubeconfig string) {
	t.Helper()
	c = kubetest.Shared(t)
	ns = c.CreateNamespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs := c.Client()
	label := map[string]string{"outpost.dev/secrets": "runner"}
	for _, s := range []corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Name: "db"}, Data: map[string][]byte{"password": []byte("pg-s3cret"), "PG_USER": []byte("app")}},
		{ObjectMeta: metav1.ObjectMeta{Name: "runner-b", Labels: label}, Data: map[string][]byte{"API_TOKEN": []byte("tok-b"), "ONLY_B": []byte("b")}},
		{ObjectMeta: metav1.ObjectMeta{Name: "runner-a", Labels: label}, Data: map[string][]byte{"API_TOKEN": []byte("tok-a")}},
		{ObjectMeta: metav1.ObjectMeta{Name: "unlabelled"}, Data: map[string][]byte{"HIDDEN": []byte("h")}},
	} {
		_, err := cs.CoreV1().Secrets(ns).Create(ctx, &s, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	_, err := cs.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "secret-reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list"}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	kubeconfig = c.ServiceAccountKubeconfig(t, ns, "runner")
	_, err = cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "runner-secret-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "secret-reader"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "runner", Namespace: ns}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	return c, ns, kubeconfig
}

func TestKubernetesProvider(t *testing.T) {
	c, ns, kubeconfig := kubeFixture(t)
	reader, err := NewSecretReader(kubeconfig, ns)
	require.NoError(t, err)
	mapping, err := ParseKubeMapping([]string{"PG_PASSWORD=db/password", "GONE=nope/key", "NO_KEY=db/nokey"})
	require.NoError(t, err)
	p := &Kubernetes{Client: reader, Namespace: ns, Mapping: mapping, Secrets: []string{"missing", "db"}, LabelSelector: "outpost.dev/secrets=runner"}

	tests := []struct {
		name, ref string
		want      string
		found     bool
	}{
		{"mapped name to secret and key", "PG_PASSWORD", "pg-s3cret", true},
		{"key of a listed secret, a missing one skipped", "PG_USER", "app", true},
		{"labelled secrets in name order", "API_TOKEN", "tok-a", true},
		{"labelled, second secret", "ONLY_B", "b", true},
		{"unlabelled secret is not read", "HIDDEN", "", false},
		{"mapped to a missing secret", "GONE", "", false},
		{"mapped to a missing key", "NO_KEY", "", false},
		{"unknown", "NOPE", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			v, ok, err := p.Lookup(ctx, tc.ref)
			require.NoError(t, err)
			require.Equal(t, tc.found, ok)
			require.Equal(t, tc.want, v)
		})
	}

	t.Run("rotation is picked up after the TTL", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		now := time.Unix(1_700_000_000, 0)
		cached := &Cached{Provider: p, TTL: 30 * time.Second, Now: func() time.Time { return now }}
		res := &Resolver{Providers: []Provider{cached}}
		got, err := res.NewSession().Expand(ctx, "${PG_PASSWORD}")
		require.NoError(t, err)
		require.Equal(t, "pg-s3cret", got)

		_, err = c.Client().CoreV1().Secrets(ns).Update(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "db"}, Data: map[string][]byte{"password": []byte("rotated")},
		}, metav1.UpdateOptions{})
		require.NoError(t, err)
		now = now.Add(29 * time.Second)
		got, err = res.NewSession().Expand(ctx, "${PG_PASSWORD}")
		require.NoError(t, err)
		require.Equal(t, "pg-s3cret", got, "within the TTL the cached value is used")
		now = now.Add(2 * time.Second)
		got, err = res.NewSession().Expand(ctx, "${PG_PASSWORD}")
		require.NoError(t, err)
		require.Equal(t, "rotated", got)
	})

	t.Run("no permission is an error that names no value", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		other, err := NewSecretReader(c.ServiceAccountKubeconfig(t, ns, "nobody"), ns)
		require.NoError(t, err)
		denied := &Kubernetes{Client: other, Namespace: ns, Mapping: mapping, LabelSelector: "outpost.dev/secrets=runner"}
		for _, ref := range []string{"PG_PASSWORD", "API_TOKEN"} {
			_, ok, err := denied.Lookup(ctx, ref)
			require.False(t, ok)
			require.Error(t, err)
			require.True(t, apierrors.IsForbidden(err), err.Error())
			require.NotContains(t, err.Error(), "s3cret")
			_, err = (&Resolver{Providers: []Provider{denied}}).NewSession().Expand(ctx, "${"+ref+"}")
			require.ErrorContains(t, err, "kubernetes provider")
			require.NotErrorIs(t, err, ErrUnknownSecret)
		}
	})
}

func TestParseKubeMapping(t *testing.T) {
	tests := []struct {
		in      []string
		want    map[string]KubeRef
		wantErr bool
	}{
		{in: []string{"A=s/k", " B.x=s-2/k.y "}, want: map[string]KubeRef{"A": {"s", "k"}, "B.x": {"s-2", "k.y"}}},
		{in: []string{"A=s"}, wantErr: true},
		{in: []string{"=s/k"}, wantErr: true},
		{in: []string{"A=s/k/j"}, wantErr: true},
		{in: []string{"A=/k"}, wantErr: true},
		{in: []string{"1A=s/k"}, wantErr: true},
	}
	for _, tc := range tests {
		got, err := ParseKubeMapping(tc.in)
		if tc.wantErr {
			require.ErrorIs(t, err, ErrMapping, tc.in)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, tc.want, got)
	}
}

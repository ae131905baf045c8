package inventory

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue"
)

func TestEscapeRoundTrip(t *testing.T) {
	cases := []struct{ in, want string }{
		{"app", "app"},
		{"kube-root-ca.crt", "kube-root-ca%2Ecrt"},
		{"system:controller:a", "system:controller:a"},
		{"a b*c>d", "a%20b%2Ac%3Ed"},
		{"ünï", "%C3%BCn%C3%AF"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got := EscapeToken(tc.in)
			require.Equal(t, tc.want, got)
			back, err := UnescapeToken(got)
			require.NoError(t, err)
			require.Equal(t, tc.in, back)
		})
	}
	_, err := UnescapeToken("bad%2")
	require.ErrorIs(t, err, ErrInvalidKey)
	_, err = UnescapeToken("bad%zz")
	require.ErrorIs(t, err, ErrInvalidKey)
}

func TestObjectSubject(t *testing.T) {
	s := queue.NewSubjects("outpost")
	cases := []struct {
		name                     string
		group, resource, ns, obj string
		want                     string
	}{
		{"core namespaced", "", "configmaps", "default", "kube-root-ca.crt", "outpost.acme.watch.prod.configmaps.default.kube-root-ca%2Ecrt"},
		{"grouped", "apps", "deployments", "web", "api", "outpost.acme.watch.prod.deployments%2Eapps.web.api"},
		{"cluster scoped", "rbac.authorization.k8s.io", "clusterroles", "", "system:basic-user", "outpost.acme.watch.prod.clusterroles%2Erbac%2Eauthorization%2Ek8s%2Eio._.system:basic-user"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			subj := ObjectSubject(s, "acme", "prod", KindToken(tc.group, tc.resource), tc.ns, tc.obj)
			require.Equal(t, tc.want, subj)
			k, err := ParseSubject(subj)
			require.NoError(t, err)
			require.Equal(t, Key{Account: "prod", KindToken: KindToken(tc.group, tc.resource), Namespace: tc.ns, Name: tc.obj}, k)
		})
	}
	_, err := ParseSubject("outpost.acme.watch.prod.configmaps")
	require.ErrorIs(t, err, ErrInvalidKey)
	_, err = ParseSubject("outpost.acme.jobs.a.b.c.d")
	require.ErrorIs(t, err, ErrInvalidKey)
}

func TestFilter(t *testing.T) {
	s := queue.NewSubjects("outpost")
	require.Equal(t, "outpost.t.watch.a.>", Filter(s, "t", "a", "", "", false))
	require.Equal(t, "outpost.t.watch.a.configmaps.*.*", Filter(s, "t", "a", "configmaps", "", false))
	require.Equal(t, "outpost.t.watch.a.*.web.*", Filter(s, "t", "a", "", "web", false))
	require.Equal(t, "outpost.t.watch.a.namespaces._.*", Filter(s, "t", "a", "namespaces", "", true))
}

func TestChecksumIsOrderIndependent(t *testing.T) {
	a := Checksum([]Line{{"ns", "b", "2"}, {"ns", "a", "1"}, {"", "c", "3"}})
	b := Checksum([]Line{{"", "c", "3"}, {"ns", "a", "1"}, {"ns", "b", "2"}})
	require.Equal(t, a, b)
	require.NotEqual(t, a, Checksum([]Line{{"ns", "a", "1"}, {"ns", "b", "3"}, {"", "c", "3"}}), "a changed resourceVersion changes the sum")
	require.Len(t, Checksum(nil), 64)
}

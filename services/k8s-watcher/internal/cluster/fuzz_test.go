package cluster

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzParseSecretRef checks that ParseSecretRef reads the reference of any
// secret, key and namespace in any order of its fields, and that any
// reference it accepts names all three and reads the same once written
// again; everything else is ErrBadReference.
func FuzzParseSecretRef(f *testing.F) {
	for _, ref := range []string{
		"encryptedFile:k8s!n:creds!k:kubeconfig!ns:team",
		"encryptedFile:k8s!ns:team!k:config!n:creds",
		"encryptedFile:vault!n:x",
		"encryptedFile:k8s",
		"encryptedFile:k8s!n:creds!k:config",
		"encryptedFile:k8s!n:creds!k:config!ns:a!x:y",
		"encryptedFile:k8s!n:a!n:b!k:c!ns:d",
		"encryptedFile:k8s!n!k:c!ns:d",
		"encryptedFile:k8s!n:a:b!k:c!ns:d",
		"file:/etc/kube/config",
	} {
		f.Add(ref, "creds", "config", "team", uint8(0))
	}

	f.Fuzz(func(t *testing.T, ref, name, key, namespace string, order uint8) {
		s, err := ParseSecretRef(ref)
		if err != nil {
			require.ErrorIs(t, err, ErrBadReference)
		} else {
			require.NotEmpty(t, s.Name)
			require.NotEmpty(t, s.Key)
			require.NotEmpty(t, s.Namespace)
			again, err := ParseSecretRef(format(s, 0))
			require.NoError(t, err)
			require.Equal(t, s, again)
		}

		want := SecretRef{Namespace: namespace, Name: name, Key: key}
		if name == "" || key == "" || namespace == "" || strings.Contains(name+key+namespace, "!") {
			return
		}
		got, err := ParseSecretRef(format(want, order))
		require.NoError(t, err)
		require.Equal(t, want, got)
	})
}

// format writes s as a reference, its fields in one of their six orders.
func format(s SecretRef, order uint8) string {
	fields := []string{"n:" + s.Name, "k:" + s.Key, "ns:" + s.Namespace}
	perms := [][3]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}}
	p := perms[int(order)%len(perms)]
	return "encryptedFile:k8s!" + fields[p[0]] + "!" + fields[p[1]] + "!" + fields[p[2]]
}

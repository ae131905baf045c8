package accounts

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzValidateKubeconfigFile checks that an encryptedFile reference is
// accepted only when it names a secret, a key and a namespace once each
// (what the watcher needs to read it), that any other text is accepted
// as a path unless blank, and that SecretRef writes references it accepts.
func FuzzValidateKubeconfigFile(f *testing.F) {
	for _, ref := range []string{
		"encryptedFile:k8s!n:kubeconfig!k:config!ns:spinnaker",
		"encryptedFile:k8s!ns:team!k:config!n:creds",
		"encryptedFile:k8s!n:kubeconfig!k:config",
		"/etc/kube/config",
		"file:/etc/kube/config",
		"encryptedFile:s3!b:bucket",
		"encryptedFile:k8s!n:kubeconfig",
		"encryptedFile:k8s!n:a!k:b!x:c",
		"encryptedFile:k8s!n:a!n:b!k:c!ns:d",
		"encryptedFile:k8s!n:a!k:b!ns:",
		"encryptedFile:k8s!n:a:b!k:c!ns:d",
		"encryptedFile:",
		"  ",
	} {
		f.Add(ref, "kubeconfig", "config", "spinnaker")
	}

	f.Fuzz(func(t *testing.T, ref, secret, key, namespace string) {
		err := ValidateKubeconfigFile(ref)
		body, encrypted := strings.CutPrefix(ref, encryptedFilePrefix)
		switch {
		case !encrypted && strings.TrimSpace(ref) == "":
			require.ErrorIs(t, err, ErrInvalid)
		case !encrypted:
			require.NoError(t, err, "any other text is a path")
		case err != nil:
			require.ErrorIs(t, err, ErrInvalid)
		default:
			parts := strings.Split(body, "!")
			require.Equal(t, "k8s", parts[0])
			fields := map[string]string{}
			for _, p := range parts[1:] {
				k, v, ok := strings.Cut(p, ":")
				require.True(t, ok)
				require.NotContains(t, fields, k, "each field once")
				fields[k] = v
			}
			require.Len(t, fields, 3)
			for _, k := range []string{"n", "k", "ns"} {
				require.NotEmpty(t, fields[k], k)
			}
		}

		if secret == "" || key == "" || namespace == "" || strings.Contains(secret+key+namespace, "!") {
			return
		}
		require.NoError(t, ValidateKubeconfigFile(SecretRef(secret, key, namespace)))
	})
}

package inventory

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue"
)

// FuzzEscapeToken checks that EscapeToken gives one subject token for any
// text and UnescapeToken reverses it, that an object's subject parses back
// into its key, and that UnescapeToken reads any token into text that
// escapes back to a token reading the same, or fails with ErrInvalidKey.
func FuzzEscapeToken(f *testing.F) {
	for _, s := range []string{
		"", "plain-name_1", "app.example.com", "a b*c>d", "100%", "%41", "%4", "%zz", "%", "é✓", "\x00\xff", "_", "a%2Eb",
	} {
		f.Add(s, "team-a")
	}

	f.Fuzz(func(t *testing.T, s, namespace string) {
		tok := EscapeToken(s)
		for i := 0; i < len(tok); i++ {
			c := tok[i]
			require.True(t, plain(c) || c == '%' || c >= '0' && c <= '9' || c >= 'A' && c <= 'F', "byte %q of %q", c, tok)
		}
		if s != "" {
			require.NotEmpty(t, tok)
		}
		back, err := UnescapeToken(tok)
		require.NoError(t, err)
		require.Equal(t, s, back, "unescape(escape(s)) = s")

		if u, err := UnescapeToken(s); err != nil {
			require.ErrorIs(t, err, ErrInvalidKey)
		} else {
			again, err := UnescapeToken(EscapeToken(u))
			require.NoError(t, err)
			require.Equal(t, u, again)
		}

		// Kubernetes names are never empty; no namespace is named "_".
		if s == "" || namespace == ClusterScope {
			return
		}
		subjects := queue.NewSubjects("")
		kind := KindToken("apps", "deployments")
		k, err := ParseSubject(ObjectSubject(subjects, "acme", "prod", kind, namespace, s))
		require.NoError(t, err)
		require.Equal(t, Key{Account: "prod", KindToken: kind, Namespace: namespace, Name: s}, k)
	})
}

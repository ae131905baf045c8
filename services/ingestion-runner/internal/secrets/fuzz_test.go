package secrets

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzExpand checks Expand against a model: text written with "$${" for
// each literal "${" and references to a known secret expands to the text
// with the secret's value in place of each reference, whatever the text
// and the value hold. Any other input expands without a "${" left to
// resolve or fails with ErrInvalidReference or ErrUnknownSecret, and an
// error never holds the value.
func FuzzExpand(f *testing.F) {
	f.Add("host=", "PW", "s3cr${et}", " end", "${S_PW}")
	f.Add("$${", "A.b-c", "", "$$", "$${S_PW} $$${S_PW} ${S_PW")
	f.Add("", "_", "v", "${", "${S_}")
	f.Add("a$", "X", "v", "", "${bad name} ${S_X}")
	f.Add("}", "X", "${S_X}", "{", "${1X}")
	f.Add("", "X", "v", "", "$")

	f.Fuzz(func(t *testing.T, lit1, name, value, lit2, raw string) {
		ctx := context.Background()
		ref := "S_" + name
		session := func(value string) *Session {
			env := Env{Prefixes: []string{"S_"}, LookupEnv: func(n string) (string, bool) {
				if n == ref {
					return value, true
				}
				return "", false
			}}
			return (&Resolver{Providers: []Provider{env}}).NewSession()
		}
		sess := session(value)

		out, err := sess.Expand(ctx, raw)
		if err != nil {
			require.True(t, errors.Is(err, ErrInvalidReference) || errors.Is(err, ErrUnknownSecret), "%v", err)
			_, other := session(value+"-other").Expand(ctx, raw)
			require.EqualError(t, other, err.Error(), "an error never holds a value")
		} else if !strings.Contains(raw, "${") {
			require.Equal(t, raw, out, "text without a reference is kept as it is")
		}

		// A "$" right before a reference reads as the "$${" escape, so
		// the model keeps literals from ending in one.
		if !validName(ref) || strings.HasSuffix(lit1, "$") || strings.HasSuffix(lit2, "$") {
			return
		}
		in := escape(lit1) + "${" + ref + "}" + escape(lit2) + "${" + ref + "}"
		out, err = sess.Expand(ctx, in)
		require.NoError(t, err, "%q", in)
		require.Equal(t, lit1+value+lit2+value, out)
		require.Equal(t, []string{value}, sess.Values(), "each name is looked up once and its value kept for masking")
	})
}

// escape writes s so that Expand gives it back: every "${" as "$${".
func escape(s string) string { return strings.ReplaceAll(s, "${", "$${") }

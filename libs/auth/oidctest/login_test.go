package oidctest_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/auth/oidctest"
)

// TestLoginFlow: the token endpoint redeems a code once, and only for the
// client, redirect URI and PKCE verifier of its authorization request.
func TestLoginFlow(t *testing.T) {
	is := oidctest.New(t, jose.RS256)
	const redirect = "http://127.0.0.1:1/cb"
	is.AllowLogin(oidctest.Login{ClientID: "c1", RedirectURI: redirect, Claims: oidctest.Claims{"sub": "u1"}})
	client := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	const verifier = "a-verifier-of-enough-length-for-pkce-0123456789"
	sum := sha256.Sum256([]byte(verifier))
	code := func(t *testing.T) string {
		t.Helper()
		q := url.Values{"response_type": {"code"}, "client_id": {"c1"}, "redirect_uri": {redirect}, "state": {"s1"}, "nonce": {"n1"},
			"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
		resp, err := client.Get(is.URL + "/authorize?" + q.Encode())
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusFound, resp.StatusCode)
		loc, err := url.Parse(resp.Header.Get("Location"))
		require.NoError(t, err)
		require.Equal(t, "s1", loc.Query().Get("state"))
		require.NotEmpty(t, loc.Query().Get("code"))
		return loc.Query().Get("code")
	}
	redeem := func(t *testing.T, form url.Values) (int, map[string]any) {
		t.Helper()
		resp, err := client.Post(is.URL+"/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		require.NoError(t, err)
		defer resp.Body.Close()
		var out map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		return resp.StatusCode, out
	}
	good := func(c string) url.Values {
		return url.Values{"grant_type": {"authorization_code"}, "code": {c}, "client_id": {"c1"}, "redirect_uri": {redirect}, "code_verifier": {verifier}}
	}
	for _, tc := range []struct {
		name string
		edit func(url.Values)
		want string
		// spent: the attempt used up the issued code.
		spent bool
	}{
		{"wrong verifier", func(f url.Values) { f.Set("code_verifier", "another-verifier-of-enough-length-0123456789") }, "invalid_grant", true},
		{"wrong client", func(f url.Values) { f.Set("client_id", "c2") }, "invalid_client", true},
		{"wrong redirect URI", func(f url.Values) { f.Set("redirect_uri", "http://127.0.0.1:1/other") }, "invalid_grant", true},
		{"unknown code", func(f url.Values) { f.Set("code", "nope") }, "invalid_grant", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := code(t)
			f := good(c)
			tc.edit(f)
			status, out := redeem(t, f)
			require.Equal(t, http.StatusBadRequest, status)
			require.Equal(t, tc.want, out["error"])
			status, _ = redeem(t, good(c))
			if tc.spent {
				require.Equal(t, http.StatusBadRequest, status, "a code is spent by any attempt to redeem it")
			} else {
				require.Equal(t, http.StatusOK, status)
			}
		})
	}

	c := code(t)
	status, out := redeem(t, good(c))
	require.Equal(t, http.StatusOK, status)
	require.NotEmpty(t, out["id_token"])
	status, out = redeem(t, good(c))
	require.Equal(t, http.StatusBadRequest, status, "a code is redeemed once")
	require.Equal(t, "invalid_grant", out["error"])
}

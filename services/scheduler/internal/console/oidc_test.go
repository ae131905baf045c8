package console_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/auth"
	"github.com/outposthq/outpost/libs/auth/oidctest"
	"github.com/outposthq/outpost/services/scheduler/internal/config"
)

const consoleClient = "outpost-console"

// newOIDCEnv is a scheduler whose console signs in through is, and whose
// API trusts is's ID tokens for the console's client id: a tenant and
// role claim, or the group "ops" (operator in default), give the roles.
func newOIDCEnv(t *testing.T, is *oidctest.Issuer) *env {
	t.Helper()
	return newEnvWith(t, func(cfg *config.Config, base string) {
		cfg.Auth.OIDC = []auth.IssuerConfig{{
			Issuer: is.URL, Audience: consoleClient, TenantClaim: "tenant", RoleClaim: "role",
			Groups: []auth.GroupGrant{{Group: "ops", Tenant: "default", Role: "operator"}},
		}}
		cfg.Console.OIDC.Issuer = is.URL
		cfg.Console.OIDC.ClientID = consoleClient
		cfg.Console.OIDC.RedirectURL = base + "/login/oidc/callback"
	})
}

// getURL fetches an absolute URL (the issuer's, or a callback).
func (b *browser) getURL(u string) (answer, string) {
	b.e.t.Helper()
	req, err := http.NewRequestWithContext(b.e.ctx, http.MethodGet, u, nil)
	require.NoError(b.e.t, err)
	return b.send(req)
}

// toCallback starts the OIDC login and follows the issuer's redirect: it
// returns the callback URL the issuer sent the browser to.
func (b *browser) toCallback() string {
	t := b.e.t
	t.Helper()
	resp, _ := b.get("/login/oidc?next=" + url.QueryEscape("/fleet"))
	require.Equal(t, http.StatusFound, resp.StatusCode)
	resp, body := b.getURL(resp.Header.Get("Location"))
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	cb := resp.Header.Get("Location")
	require.True(t, strings.HasPrefix(cb, b.e.url+"/login/oidc/callback?"), cb)
	return cb
}

func (b *browser) hasSession() bool {
	u, err := url.Parse(b.e.url)
	require.NoError(b.e.t, err)
	for _, ck := range b.http.Jar.Cookies(u) {
		if ck.Name == "outpost_session" {
			return true
		}
	}
	return false
}

func TestOIDCSignIn(t *testing.T) {
	is := oidctest.New(t, jose.RS256)
	e := newOIDCEnv(t, is)
	login := func(claims oidctest.Claims) oidctest.Login {
		return oidctest.Login{ClientID: consoleClient, RedirectURI: e.url + "/login/oidc/callback", Claims: claims}
	}
	viewer := oidctest.Claims{"sub": "v1", "email": "viewer@example.com", "tenant": "default", "role": "viewer"}
	operator := oidctest.Claims{"sub": "o1", "email": "ops@example.com", "groups": []string{"ops"}}

	_, page := e.browser().get("/login")
	require.Contains(t, page, `href="/login/oidc?next=%2fjobs"`, "the login page offers single sign-on")

	for _, tc := range []struct {
		name   string
		claims oidctest.Claims
		submit bool
		role   string
	}{
		{"viewer by tenant and role claims", viewer, false, "viewer"},
		{"operator by group", operator, true, "operator"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is.AllowLogin(login(tc.claims))
			b := e.browser()
			cb := b.toCallback()
			resp, page := b.getURL(cb)
			require.Equal(t, http.StatusSeeOther, resp.StatusCode, page)
			require.Equal(t, "/fleet", resp.Header.Get("Location"), "back where the sign-in started")
			require.True(t, b.hasSession())
			for _, ck := range resp.Cookies() {
				switch ck.Name {
				case "outpost_session":
					require.WithinDuration(t, time.Now().Add(time.Hour), ck.Expires, time.Minute, "the session ends with the ID token")
				case "outpost_login":
					require.Equal(t, "/login", ck.Path)
					require.Negative(t, ck.MaxAge, "the login state is removed")
				}
			}

			resp, page = b.get("/jobs")
			require.Equal(t, http.StatusOK, resp.StatusCode)
			require.Contains(t, page, `<span class="role">`+tc.role+`</span>`)
			require.Equal(t, tc.submit, strings.Contains(page, `id="submit-job"`))
			require.Contains(t, page, `<option value="default" selected>default</option>`)
			require.NotContains(t, page, `<option value="acme"`, "only the tenants the claims give")

			resp, _ = b.post("/jobs", url.Values{"csrf": {csrf(t, page)}, "pool": {"default"}, "kind": {"noop"}})
			if tc.submit {
				require.Equal(t, http.StatusSeeOther, resp.StatusCode)
			} else {
				require.Equal(t, http.StatusForbidden, resp.StatusCode, "a viewer's forged submit is refused")
			}

			// The login state is spent: the same callback again is
			// refused before the code is sent to the issuer.
			codes := is.Codes()
			resp, page = b.getURL(cb)
			require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
			require.Contains(t, page, "Single sign-on failed: the login took too long or cookies are blocked.")
			require.Equal(t, codes, is.Codes())
		})
	}

	is.AllowLogin(login(viewer))
	spent := func() string {
		b := e.browser()
		cb := b.toCallback()
		resp, _ := b.getURL(cb)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		u, err := url.Parse(cb)
		require.NoError(t, err)
		return u.Query().Get("code")
	}()
	for _, tc := range []struct {
		name  string
		login oidctest.Login
		// tamper changes the callback's query.
		tamper func(q url.Values)
		want   string
	}{
		{"wrong state", login(viewer), func(q url.Values) { q.Set("state", "forged") }, "the state does not match"},
		{"replayed code", login(viewer), func(q url.Values) { q.Set("code", spent) }, "the code was not accepted"},
		{"bad nonce", oidctest.Login{ClientID: consoleClient, RedirectURI: e.url + "/login/oidc/callback", Claims: viewer, Nonce: "another-login"}, nil, "the ID token is not valid"},
		{"expired token", oidctest.Login{ClientID: consoleClient, RedirectURI: e.url + "/login/oidc/callback", Claims: viewer, Expired: true}, nil, "the ID token is not valid"},
		{"issuer refused", login(viewer), func(q url.Values) { q.Del("code"); q.Set("error", "access_denied") }, "the issuer answered access_denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is.AllowLogin(tc.login)
			b := e.browser()
			cb := b.toCallback()
			if tc.tamper != nil {
				u, err := url.Parse(cb)
				require.NoError(t, err)
				q := u.Query()
				tc.tamper(q)
				u.RawQuery = q.Encode()
				cb = u.String()
			}
			resp, page := b.getURL(cb)
			require.Equal(t, http.StatusUnauthorized, resp.StatusCode, page)
			require.Contains(t, page, "Single sign-on failed: "+tc.want+".")
			require.Contains(t, page, `name="api_key"`, "the sign-in form is shown again")
			require.False(t, b.hasSession(), "no session")
			resp, _ = b.get("/jobs")
			require.Equal(t, http.StatusSeeOther, resp.StatusCode, "not signed in")
		})
	}
}

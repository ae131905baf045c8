package auth_test

import (
	"context"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/auth"
	"github.com/outposthq/outpost/libs/auth/oidctest"
)

func newOIDC(t *testing.T, issuers ...auth.IssuerConfig) *auth.OIDC {
	t.Helper()
	o, err := auth.NewOIDC(issuers, nil, 0, nil)
	require.NoError(t, err)
	return o
}

func TestOIDCVerify(t *testing.T) {
	rs := oidctest.New(t, jose.RS256)
	es := oidctest.New(t, jose.ES256)
	other := oidctest.New(t, jose.RS256)
	cfg := func(url string) auth.IssuerConfig {
		return auth.IssuerConfig{
			Issuer: url, Audience: "outpost", TenantClaim: "tenant", RoleClaim: "role",
			Groups: []auth.GroupGrant{{Group: "data-eng", Tenant: "acme", Role: "operator"}, {Group: "platform", Tenant: auth.AllTenants, Role: "admin"}},
		}
	}
	o := newOIDC(t, cfg(rs.URL), cfg(es.URL))
	good := oidctest.Claims{"sub": "u1", "aud": "outpost", "email": "u1@example.com", "tenant": "acme", "role": "viewer"}
	with := func(c oidctest.Claims, k string, v any) oidctest.Claims {
		out := oidctest.Claims{}
		for a, b := range c {
			out[a] = b
		}
		if v == nil {
			delete(out, k)
		} else {
			out[k] = v
		}
		return out
	}
	tests := []struct {
		name    string
		token   string
		tenants map[string]auth.Role
		err     error
	}{
		{"RS256 with tenant and role claims", rs.Token(good), map[string]auth.Role{"acme": auth.RoleViewer}, nil},
		{"ES256", es.Token(good), map[string]auth.Role{"acme": auth.RoleViewer}, nil},
		{"group grant raises the role", rs.Token(with(good, "groups", []string{"data-eng"})), map[string]auth.Role{"acme": auth.RoleOperator}, nil},
		{"platform group", rs.Token(with(with(good, "tenant", nil), "groups", []string{"platform"})), map[string]auth.Role{auth.AllTenants: auth.RoleAdmin}, nil},
		{"audience in a list", rs.Token(with(good, "aud", []string{"x", "outpost"})), map[string]auth.Role{"acme": auth.RoleViewer}, nil},
		{"no tenant", rs.Token(with(good, "tenant", nil)), nil, auth.ErrNoTenant},
		{"expired", rs.Expired(good), nil, auth.ErrUnauthenticated},
		{"expired within the skew", rs.Token(with(good, "exp", time.Now().Add(-5*time.Second).Unix())), map[string]auth.Role{"acme": auth.RoleViewer}, nil},
		{"not valid yet", rs.Token(with(good, "nbf", time.Now().Add(10*time.Minute).Unix())), nil, auth.ErrUnauthenticated},
		{"wrong audience", rs.Token(with(good, "aud", "someone-else")), nil, auth.ErrUnauthenticated},
		{"untrusted issuer", other.Token(good), nil, auth.ErrUnauthenticated},
		{"iss of a trusted issuer, key of another", other.Token(with(good, "iss", rs.URL)), nil, auth.ErrUnauthenticated},
		{"alg none", rs.AlgNone(good), nil, auth.ErrUnauthenticated},
		{"HS256 keyed with the public key", rs.HS256WithPublicKey(good), nil, auth.ErrUnauthenticated},
		{"malformed", "not.a-jwt", nil, auth.ErrUnauthenticated},
		{"garbage", "x", nil, auth.ErrUnauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := o.Verify(context.Background(), tt.token)
			if tt.err != nil {
				require.ErrorIs(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.tenants, p.Tenants)
			require.Equal(t, auth.KindOIDC, p.Kind)
			require.Equal(t, "u1@example.com", p.Name)
		})
	}
}

func TestOIDCKeyRotation(t *testing.T) {
	is := oidctest.New(t, jose.RS256)
	o := newOIDC(t, auth.IssuerConfig{Issuer: is.URL, Audience: "outpost", TenantClaim: "tenant", RoleClaim: "role"})
	claims := oidctest.Claims{"sub": "u1", "aud": "outpost", "tenant": "acme", "role": "admin"}
	old := is.Token(claims)
	_, err := o.Verify(context.Background(), old)
	require.NoError(t, err)

	is.Rotate()
	_, err = o.Verify(context.Background(), is.Token(claims))
	require.NoError(t, err, "a token signed with the new key verifies: the JWKS is fetched again")
	_, err = o.Verify(context.Background(), old)
	require.ErrorIs(t, err, auth.ErrUnauthenticated, "the retired key no longer verifies")
}

func TestIssuerConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  auth.IssuerConfig
		ok   bool
	}{
		{"https", auth.IssuerConfig{Issuer: "https://id.example.com", Audience: "a"}, true},
		{"plain http elsewhere", auth.IssuerConfig{Issuer: "http://id.example.com", Audience: "a"}, false},
		{"no audience", auth.IssuerConfig{Issuer: "https://id.example.com"}, false},
		{"HS256", auth.IssuerConfig{Issuer: "https://id.example.com", Audience: "a", Algorithms: []string{"HS256"}}, false},
		{"none", auth.IssuerConfig{Issuer: "https://id.example.com", Audience: "a", Algorithms: []string{"none"}}, false},
		{"bad group role", auth.IssuerConfig{Issuer: "https://id.example.com", Audience: "a", Groups: []auth.GroupGrant{{Group: "g", Tenant: "t", Role: "root"}}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.ok {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
			}
		})
	}
}

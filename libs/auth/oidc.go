package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// ErrUnauthenticated is wrapped by every error that means the credential
// is missing, malformed, expired, revoked or not trusted: answer 401.
var ErrUnauthenticated = errors.New("auth: not authenticated")

// ErrNoTenant is returned when a credential is valid but maps to no
// tenant: answer 403.
var ErrNoTenant = errors.New("auth: the credential grants no tenant")

// DefaultAlgorithms are the signing algorithms accepted when an issuer
// names none. "none" and the HMAC algorithms are never accepted.
var DefaultAlgorithms = []string{oidc.RS256, oidc.ES256, oidc.EdDSA}

// DefaultSkew is the clock skew allowed on a token's exp and nbf.
const DefaultSkew = 30 * time.Second

// GroupGrant gives the members of a group a role in a tenant.
type GroupGrant struct {
	Group  string `yaml:"group" json:"group"`
	Tenant string `yaml:"tenant" json:"tenant"`
	Role   string `yaml:"role" json:"role"`
}

// IssuerConfig is one trusted OIDC issuer.
type IssuerConfig struct {
	// Issuer is the issuer URL; discovery reads
	// <Issuer>/.well-known/openid-configuration.
	Issuer string `yaml:"issuer" json:"issuer"`
	// Audience is the required aud (the API's client id).
	Audience string `yaml:"audience" json:"audience"`
	// Algorithms are the accepted signing algorithms
	// (DefaultAlgorithms when empty).
	Algorithms []string `yaml:"algorithms" json:"algorithms"`
	// EmailClaim, GroupsClaim, TenantClaim and RoleClaim name the claims
	// read ("email", "groups"; tenant and role unset: not read). A token
	// with a tenant claim and a role claim holds that role in that tenant.
	EmailClaim  string `yaml:"email_claim" json:"email_claim"`
	GroupsClaim string `yaml:"groups_claim" json:"groups_claim"`
	TenantClaim string `yaml:"tenant_claim" json:"tenant_claim"`
	RoleClaim   string `yaml:"role_claim" json:"role_claim"`
	// Groups maps groups to roles in tenants; a principal holds the
	// highest role any of its groups or claims gives in each tenant.
	Groups []GroupGrant `yaml:"groups" json:"groups"`
}

// Validate checks the configuration.
func (c IssuerConfig) Validate() error {
	if !strings.HasPrefix(c.Issuer, "https://") && !strings.HasPrefix(c.Issuer, "http://127.0.0.1") && !strings.HasPrefix(c.Issuer, "http://localhost") {
		return fmt.Errorf("auth: issuer %q must be an https URL", c.Issuer)
	}
	if c.Audience == "" {
		return fmt.Errorf("auth: issuer %q: audience is required", c.Issuer)
	}
	for _, a := range c.Algorithms {
		if !slices.Contains([]string{oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.ES512, oidc.PS256, oidc.PS384, oidc.PS512, oidc.EdDSA}, a) {
			return fmt.Errorf("auth: issuer %q: algorithm %q is not allowed (asymmetric algorithms only)", c.Issuer, a)
		}
	}
	for _, g := range c.Groups {
		if _, err := ParseRole(g.Role); err != nil || g.Group == "" || g.Tenant == "" {
			return fmt.Errorf("auth: issuer %q: group grant %+v needs a group, a tenant and a role (viewer, operator, admin)", c.Issuer, g)
		}
	}
	return nil
}

// OIDC verifies JWTs from one or more issuers and maps their claims to a
// Principal. Each issuer is discovered on first use (and again after a
// failed discovery); its JWKS is cached and refreshed by go-oidc when a
// token names an unknown key, which is how key rotation is followed.
type OIDC struct {
	client *http.Client
	skew   time.Duration
	now    func() time.Time

	mu      sync.Mutex
	issuers map[string]*issuer
}

type issuer struct {
	cfg      IssuerConfig
	verifier *oidc.IDTokenVerifier
}

// NewOIDC returns a verifier for issuers. client may be nil
// (http.DefaultClient); skew 0 means DefaultSkew; now nil means time.Now.
func NewOIDC(issuers []IssuerConfig, client *http.Client, skew time.Duration, now func() time.Time) (*OIDC, error) {
	if skew <= 0 {
		skew = DefaultSkew
	}
	if now == nil {
		now = time.Now
	}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	o := &OIDC{client: client, skew: skew, now: now, issuers: map[string]*issuer{}}
	for _, c := range issuers {
		if err := c.Validate(); err != nil {
			return nil, err
		}
		o.issuers[strings.TrimSuffix(c.Issuer, "/")] = &issuer{cfg: c}
	}
	return o, nil
}

// Verify checks token and returns its principal. Errors wrap
// ErrUnauthenticated, or ErrNoTenant for a valid token granting no tenant.
func (o *OIDC) Verify(ctx context.Context, token string) (*Principal, error) {
	iss, err := unverifiedIssuer(token)
	if err != nil {
		return nil, err
	}
	v, cfg, err := o.verifier(ctx, iss)
	if err != nil {
		return nil, err
	}
	idt, err := v.Verify(ctx, token)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnauthenticated, err)
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return nil, fmt.Errorf("%w: claims: %w", ErrUnauthenticated, err)
	}
	// go-oidc allows 5 minutes on nbf; ours is the configured skew.
	if nbf, ok := claims["nbf"].(float64); ok && time.Unix(int64(nbf), 0).After(o.now().Add(o.skew)) {
		return nil, fmt.Errorf("%w: the token is not valid yet", ErrUnauthenticated)
	}
	return mapClaims(idt.Issuer, idt.Subject, claims, cfg)
}

func (o *OIDC) verifier(ctx context.Context, iss string) (*oidc.IDTokenVerifier, IssuerConfig, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	is, ok := o.issuers[strings.TrimSuffix(iss, "/")]
	if !ok {
		return nil, IssuerConfig{}, fmt.Errorf("%w: issuer %q is not trusted", ErrUnauthenticated, iss)
	}
	if is.verifier == nil {
		dctx, cancel := context.WithTimeout(oidc.ClientContext(context.WithoutCancel(ctx), o.client), 10*time.Second)
		defer cancel()
		p, err := oidc.NewProvider(dctx, is.cfg.Issuer)
		if err != nil {
			return nil, IssuerConfig{}, fmt.Errorf("%w: discover issuer %q: %w", ErrUnauthenticated, iss, err)
		}
		algs := is.cfg.Algorithms
		if len(algs) == 0 {
			algs = DefaultAlgorithms
		}
		skew, now := o.skew, o.now
		keys := oidc.NewRemoteKeySet(oidc.ClientContext(context.Background(), o.client), discoveredJWKS(p))
		is.verifier = oidc.NewVerifier(is.cfg.Issuer, keys, &oidc.Config{
			ClientID:             is.cfg.Audience,
			SupportedSigningAlgs: algs,
			// An expiry within the skew still passes.
			Now: func() time.Time { return now().Add(-skew) },
		})
	}
	return is.verifier, is.cfg, nil
}

// discoveredJWKS returns the provider's jwks_uri.
func discoveredJWKS(p *oidc.Provider) string {
	var c struct {
		JWKS string `json:"jwks_uri"`
	}
	_ = p.Claims(&c)
	return c.JWKS
}

// unverifiedIssuer reads the iss claim of a JWT without verifying it, to
// pick the issuer that verifies it.
func unverifiedIssuer(token string) (string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", fmt.Errorf("%w: malformed token", ErrUnauthenticated)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", fmt.Errorf("%w: malformed token payload", ErrUnauthenticated)
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal(raw, &c); err != nil || c.Iss == "" {
		return "", fmt.Errorf("%w: malformed token claims", ErrUnauthenticated)
	}
	return c.Iss, nil
}

func mapClaims(iss, sub string, claims map[string]any, cfg IssuerConfig) (*Principal, error) {
	p := &Principal{Subject: iss + "#" + sub, Kind: KindOIDC, Tenants: map[string]Role{}}
	emailClaim := cmpOr(cfg.EmailClaim, "email")
	p.Name, _ = claims[emailClaim].(string)
	if p.Name == "" {
		p.Name = sub
	}
	if gs, ok := claims[cmpOr(cfg.GroupsClaim, "groups")].([]any); ok {
		for _, g := range gs {
			if s, ok := g.(string); ok {
				p.Groups = append(p.Groups, s)
			}
		}
	}
	grant := func(tenant string, r Role) {
		if r > p.Tenants[tenant] {
			p.Tenants[tenant] = r
		}
	}
	if cfg.TenantClaim != "" && cfg.RoleClaim != "" {
		tenant, _ := claims[cfg.TenantClaim].(string)
		roleName, _ := claims[cfg.RoleClaim].(string)
		if r, err := ParseRole(roleName); err == nil && tenant != "" {
			grant(tenant, r)
		}
	}
	for _, g := range cfg.Groups {
		if p.InGroup(g.Group) {
			r, _ := ParseRole(g.Role)
			grant(g.Tenant, r)
		}
	}
	if len(p.Tenants) == 0 {
		return nil, fmt.Errorf("%w: subject %q", ErrNoTenant, p.Subject)
	}
	return p, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

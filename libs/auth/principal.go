// Package auth is the identity of Outpost's control-plane APIs: who makes a
// request (a Principal, from an OIDC token or an API key), which tenants it
// may act in and with which Role.
package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
)

// Role is what a principal may do within a tenant. Roles are ordered: each
// one may do everything the roles below it may.
type Role int

// The roles, lowest first.
const (
	// RoleNone may do nothing; it is the zero value.
	RoleNone Role = iota
	// RoleViewer reads: jobs, logs, sources, accounts, objects.
	RoleViewer
	// RoleOperator also submits and cancels jobs, runs sources and
	// operates on accounts.
	RoleOperator
	// RoleAdmin also manages tenants, limits, keys, accounts, users,
	// teams and projects.
	RoleAdmin
)

// ErrUnknownRole is returned by ParseRole for a name that is not a role.
var ErrUnknownRole = errors.New("auth: unknown role")

var roleNames = map[Role]string{RoleViewer: "viewer", RoleOperator: "operator", RoleAdmin: "admin"}

// String returns the role's name ("viewer", "operator", "admin"), or
// "none".
func (r Role) String() string {
	if n, ok := roleNames[r]; ok {
		return n
	}
	return "none"
}

// ParseRole returns the role named s.
func ParseRole(s string) (Role, error) {
	for r, n := range roleNames {
		if n == s {
			return r, nil
		}
	}
	return RoleNone, fmt.Errorf("%w %q (want viewer, operator or admin)", ErrUnknownRole, s)
}

// Kind says how a principal authenticated.
type Kind string

// The kinds of credential.
const (
	KindOIDC   Kind = "oidc"
	KindAPIKey Kind = "apikey"
)

// Principal is the authenticated caller of a request.
type Principal struct {
	// Subject identifies the caller: the token's issuer-scoped subject,
	// or "apikey:<key id>".
	Subject string
	// Name is who the caller is for people: the token's email, or the
	// API key's owner.
	Name string
	// Kind is the credential the caller presented.
	Kind Kind
	// KeyID is the API key's id (KindAPIKey only).
	KeyID string
	// Groups are the token's groups claim (KindOIDC only).
	Groups []string
	// Tenants maps each tenant the principal may act in to its role there.
	Tenants map[string]Role
}

// RoleIn returns the principal's role in tenant (RoleNone if it holds no
// role there).
func (p *Principal) RoleIn(tenant string) Role {
	if p == nil {
		return RoleNone
	}
	return p.Tenants[tenant]
}

// TenantNames returns the tenants the principal holds, sorted.
func (p *Principal) TenantNames() []string {
	if p == nil {
		return nil
	}
	names := make([]string, 0, len(p.Tenants))
	for t := range p.Tenants {
		names = append(names, t)
	}
	sort.Strings(names)
	return names
}

// InGroup reports whether the principal's token carried group g.
func (p *Principal) InGroup(g string) bool { return p != nil && slices.Contains(p.Groups, g) }

type principalKey struct{}

// WithPrincipal returns a copy of ctx carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal ctx carries, or nil.
func PrincipalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

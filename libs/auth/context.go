package auth

import "context"

// AllTenants in a principal's Tenants marks a platform principal: its role
// there applies in every tenant, and with RoleAdmin it may add tenants.
const AllTenants = "*"

// RoleOf returns p's role in tenant, counting its AllTenants role.
func RoleOf(p *Principal, tenant string) Role {
	if p == nil {
		return RoleNone
	}
	return max(p.RoleIn(tenant), p.Tenants[AllTenants])
}

// IsPlatformAdmin reports whether p is an admin of every tenant.
func IsPlatformAdmin(p *Principal) bool { return p != nil && p.Tenants[AllTenants] >= RoleAdmin }

type tenantKey struct{}

type requestIDKey struct{}

// WithTenant returns a copy of ctx carrying the request's tenant, resolved
// from its credential.
func WithTenant(ctx context.Context, tenant string) context.Context {
	return context.WithValue(ctx, tenantKey{}, tenant)
}

// TenantFrom returns the tenant ctx carries, or "".
func TenantFrom(ctx context.Context) string {
	t, _ := ctx.Value(tenantKey{}).(string)
	return t
}

// WithRequestID returns a copy of ctx carrying the request's id.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestIDFrom returns the request id ctx carries, or "".
func RequestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

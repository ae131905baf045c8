package accounts

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/auth"
)

func TestPermissionsAllows(t *testing.T) {
	restricted := &Permissions{Read: []string{"dev"}, Write: []string{"ops"}}
	principal := func(role auth.Role, groups ...string) *auth.Principal {
		return &auth.Principal{Subject: "s", Groups: groups, Tenants: map[string]auth.Role{"t": role}}
	}
	cases := []struct {
		name     string
		perms    *Permissions
		p        *auth.Principal
		read, op bool
	}{
		{"no permissions", nil, principal(auth.RoleViewer), true, true},
		{"empty lists", &Permissions{}, principal(auth.RoleViewer), true, true},
		{"READ group", restricted, principal(auth.RoleOperator, "dev"), true, false},
		{"WRITE group reads too", restricted, principal(auth.RoleOperator, "ops"), true, true},
		{"no group", restricted, principal(auth.RoleOperator, "other"), false, false},
		{"tenant admin", restricted, principal(auth.RoleAdmin), true, true},
		{"platform admin", restricted, &auth.Principal{Tenants: map[string]auth.Role{auth.AllTenants: auth.RoleAdmin}}, true, true},
		{"admin of another tenant", restricted, &auth.Principal{Tenants: map[string]auth.Role{"u": auth.RoleAdmin}}, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.read, tc.perms.Allows(tc.p, "t", ActionRead))
			require.Equal(t, tc.op, tc.perms.Allows(tc.p, "t", ActionWrite))
		})
	}
}

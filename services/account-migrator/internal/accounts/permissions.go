package accounts

import (
	"fmt"
	"slices"
	"strings"

	"github.com/outposthq/outpost/libs/auth"
)

// Permissions are Spinnaker's account permissions: the groups (Fiat
// roles) that may read the account and that may operate it. Set through
// the credentials API (or the accounts API's "permissions").
type Permissions struct {
	Read  []string `json:"READ,omitempty"`
	Write []string `json:"WRITE,omitempty"`
}

// Action is what a caller does with an account.
type Action int

// The actions permissions restrict.
const (
	// ActionRead: see the account, its inventory and its operations.
	ActionRead Action = iota
	// ActionWrite: submit operations to it.
	ActionWrite
)

// Restricted reports whether p restricts anything: with no group listed
// the tenant role alone decides, as for any account.
func (p *Permissions) Restricted() bool { return p != nil && (len(p.Read) > 0 || len(p.Write) > 0) }

// Allows reports whether principal may do act on an account of tenant
// with these permissions, on top of the role its route needs: an
// unrestricted account allows everyone the route lets in; a restricted one
// allows a tenant admin, and a principal in one of the action's groups
// (READ for reads, WRITE for operations; a WRITE group may also read), as
// Fiat does. Without a principal (no authentication configured) nothing
// is restricted.
func (p *Permissions) Allows(principal *auth.Principal, tenant string, act Action) bool {
	if !p.Restricted() || principal == nil || auth.RoleOf(principal, tenant) >= auth.RoleAdmin {
		return true
	}
	groups := p.Write
	if act == ActionRead {
		groups = slices.Concat(p.Read, p.Write)
	}
	return slices.ContainsFunc(groups, principal.InGroup)
}

func (p *Permissions) clone() *Permissions {
	if p == nil {
		return nil
	}
	return &Permissions{Read: slices.Clone(p.Read), Write: slices.Clone(p.Write)}
}

func (p *Permissions) validate() error {
	if p == nil {
		return nil
	}
	for name, groups := range map[string][]string{"READ": p.Read, "WRITE": p.Write} {
		for i, g := range groups {
			if strings.TrimSpace(g) == "" {
				return fmt.Errorf("%w: permissions.%s[%d] is empty", ErrInvalid, name, i)
			}
		}
	}
	return nil
}

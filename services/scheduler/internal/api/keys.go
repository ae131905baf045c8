package api

import (
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/outposthq/outpost/libs/auth"
	"github.com/outposthq/outpost/libs/httpjson"
	"github.com/outposthq/outpost/libs/queue"
)

// keyRequest is the body of POST /api/v1/keys. Tenants default to the
// request's tenant; ttl is a Go duration ("720h"), none for a key that
// does not expire.
type keyRequest struct {
	Owner   string   `json:"owner"`
	Tenants []string `json:"tenants"`
	Role    string   `json:"role"`
	TTL     string   `json:"ttl"`
}

// createKey makes an API key and answers its secret, this once. A caller
// gives no more than it holds: it must be admin of every tenant named.
func (a *API) createKey(w http.ResponseWriter, r *http.Request) {
	if a.opts.Keys == nil {
		httpjson.WriteError(w, http.StatusNotImplemented, "API keys are not configured", "")
		return
	}
	var req keyRequest
	if !a.decode(w, r, &req, false) {
		return
	}
	p := auth.PrincipalFrom(r.Context())
	if len(req.Tenants) == 0 {
		req.Tenants = []string{auth.TenantFrom(r.Context())}
	}
	for _, t := range req.Tenants {
		if auth.RoleOf(p, t) < auth.RoleAdmin {
			httpjson.WriteError(w, http.StatusForbidden, "a key can only be given tenants the caller administers", "tenants")
			return
		}
	}
	role, err := auth.ParseRole(req.Role)
	if err != nil {
		httpjson.WriteError(w, http.StatusBadRequest, "must be viewer, operator or admin", "role")
		return
	}
	var ttl time.Duration
	if req.TTL != "" {
		if ttl, err = time.ParseDuration(req.TTL); err != nil || ttl <= 0 {
			httpjson.WriteError(w, http.StatusBadRequest, "must be a positive duration such as \"720h\"", "ttl")
			return
		}
	}
	key, secret, err := a.opts.Keys.Create(r.Context(), auth.KeyRequest{Owner: req.Owner, Tenants: req.Tenants, Role: role, TTL: ttl})
	switch {
	case errors.Is(err, auth.ErrInvalidKey):
		httpjson.WriteError(w, http.StatusBadRequest, err.Error(), "")
	case err != nil:
		a.internal(w, r, "create key", err)
	default:
		httpjson.WriteJSON(w, http.StatusCreated, map[string]any{"key": key, "secret": secret})
	}
}

// listKeys lists the keys of the request's tenant (every key for a
// platform admin), never their secret or hash.
func (a *API) listKeys(w http.ResponseWriter, r *http.Request) {
	if a.opts.Keys == nil {
		httpjson.WriteError(w, http.StatusNotImplemented, "API keys are not configured", "")
		return
	}
	keys, err := a.opts.Keys.List(r.Context())
	if err != nil {
		a.internal(w, r, "list keys", err)
		return
	}
	tenant := auth.TenantFrom(r.Context())
	out := []auth.Key{}
	for _, k := range keys {
		if slices.Contains(k.Tenants, tenant) {
			out = append(out, k)
		}
	}
	httpjson.WriteJSON(w, http.StatusOK, map[string]any{"keys": out})
}

// revokeKey revokes a key the caller administers every tenant of; any
// other key is answered as missing.
func (a *API) revokeKey(w http.ResponseWriter, r *http.Request) {
	if a.opts.Keys == nil {
		httpjson.WriteError(w, http.StatusNotImplemented, "API keys are not configured", "")
		return
	}
	id := r.PathValue("id")
	p := auth.PrincipalFrom(r.Context())
	key, err := a.opts.Keys.Get(r.Context(), id)
	if err == nil && !slices.ContainsFunc(key.Tenants, func(t string) bool { return auth.RoleOf(p, t) < auth.RoleAdmin }) {
		key, err = a.opts.Keys.Revoke(r.Context(), id)
	} else if err == nil {
		err = auth.ErrKeyNotFound
	}
	switch {
	case errors.Is(err, auth.ErrKeyNotFound):
		httpjson.WriteError(w, http.StatusNotFound, "no such key", "id")
	case err != nil:
		a.internal(w, r, "revoke key", err)
	default:
		httpjson.WriteJSON(w, http.StatusOK, key)
	}
}

// auditLimit is how many of the last audit events GET /api/v1/audit
// answers.
const auditLimit = 1000

// audit lists the tenant's last audited calls, oldest first: from its audit
// subjects when they can be read, else those this replica served.
func (a *API) audit(w http.ResponseWriter, r *http.Request) {
	tenant := auth.TenantFrom(r.Context())
	if a.opts.AuditReader == nil {
		if a.opts.Audit == nil {
			httpjson.WriteError(w, http.StatusNotImplemented, "the audit log is not configured", "")
			return
		}
		events := a.opts.Audit.Recent(tenant)
		httpjson.WriteJSON(w, http.StatusOK, map[string]any{"events": events, "count": len(events)})
		return
	}
	events := []auth.Event{}
	err := a.opts.AuditReader.Read(r.Context(), a.opts.Subjects.All(tenant, queue.RoleAudit), queue.ReadOptions{}, func(m queue.StreamMessage) bool {
		e, err := auth.DecodeAudit(m)
		if err != nil {
			a.log.Warn("skip malformed audit event", "tenant", tenant, "sequence", m.Sequence, "error", err)
			return true
		}
		events = append(events, e)
		if len(events) > auditLimit {
			events = events[1:]
		}
		return true
	})
	if err != nil {
		a.internal(w, r, "read audit", err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, map[string]any{"events": events, "count": len(events)})
}

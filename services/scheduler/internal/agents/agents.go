// Package agents issues and revokes the broker credentials of agents:
//
//	POST   /api/v1/agents       {"role":"runner","tenant":"acme","pool":"remote","expiry":"720h"}
//	DELETE /api/v1/agents/{id}
//
// Required role: admin (auth.RoleAdmin) of the agent's tenant, for both
// routes. The handlers check it themselves from the request's principal
// (auth.PrincipalFrom), so a request that no authentication middleware
// vouched for is refused.
//
// A runner's credentials reach one tenant and one pool, a watcher's one
// tenant and one zone (natsauth.Permissions), and expire. DELETE adds the
// agent to the account's revocation list and pushes it to the broker: its
// connections are closed within seconds, without a broker restart.
package agents

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/outposthq/outpost/libs/auth"
	"github.com/outposthq/outpost/libs/httpjson"
	"github.com/outposthq/outpost/libs/natsauth"
	"github.com/outposthq/outpost/libs/queue"
)

// Defaults.
const (
	// DefaultExpiry is the validity of credentials whose request names none.
	DefaultExpiry = 30 * 24 * time.Hour
	// MaxExpiry bounds the validity a request may ask for.
	MaxExpiry = 365 * 24 * time.Hour
	// pushTimeout bounds a revocation's push to the broker.
	pushTimeout = 10 * time.Second
)

// Pusher sends the account's current JWT (with its revocations) to the
// broker.
type Pusher func(ctx context.Context) error

// Handler serves the agents routes.
type Handler struct {
	authority *natsauth.Authority
	push      Pusher
	stack     string
	layout    queue.Layout
	log       *slog.Logger
}

// New returns the handler issuing users of authority for the stack and
// layout the broker uses; push sends revocations to the broker.
func New(authority *natsauth.Authority, push Pusher, stack string, layout queue.Layout, log *slog.Logger) *Handler {
	return &Handler{authority: authority, push: push, stack: stack, layout: layout, log: log}
}

// Register adds the routes to router. Both need RoleAdmin of the
// request's tenant (the router) and of the agent's tenant (the handlers).
func (h *Handler) Register(router *auth.Router) {
	router.HandleFunc("POST /api/v1/agents", auth.RoleAdmin, h.create)
	router.HandleFunc("DELETE /api/v1/agents/{id}", auth.RoleAdmin, h.revoke)
}

type createRequest struct {
	Role   string `json:"role"`
	Tenant string `json:"tenant"`
	Pool   string `json:"pool,omitempty"`
	Zone   string `json:"zone,omitempty"`
	Name   string `json:"name,omitempty"`
	Expiry string `json:"expiry,omitempty"`
}

type agentResponse struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Role        string    `json:"role"`
	Tenant      string    `json:"tenant"`
	Pool        string    `json:"pool,omitempty"`
	Zone        string    `json:"zone,omitempty"`
	ExpiresAt   time.Time `json:"expires_at"`
	Revoked     bool      `json:"revoked,omitempty"`
	Credentials string    `json:"credentials,omitempty"`
}

// admin reports whether the request's principal is an admin of tenant,
// answering 401 or 403 if not.
func admin(w http.ResponseWriter, r *http.Request, tenant string) bool {
	p := auth.PrincipalFrom(r.Context())
	if p == nil {
		httpjson.WriteError(w, http.StatusUnauthorized, "authentication required", "")
		return false
	}
	if auth.RoleOf(p, tenant) < auth.RoleAdmin {
		httpjson.WriteError(w, http.StatusForbidden, "admin of the tenant required", "tenant")
		return false
	}
	return true
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request) {
	raw, err := httpjson.ReadBody(w, r, 1<<16)
	if err != nil {
		httpjson.WriteError(w, http.StatusBadRequest, "unreadable body", "")
		return
	}
	var req createRequest
	if err := httpjson.Decode(raw, &req, ""); err != nil {
		var fe *httpjson.FieldError
		if errors.As(err, &fe) {
			httpjson.WriteError(w, http.StatusBadRequest, fe.Message, fe.Field)
			return
		}
		httpjson.WriteError(w, http.StatusBadRequest, "invalid JSON", "")
		return
	}
	if !admin(w, r, req.Tenant) {
		return
	}
	role := natsauth.Role(req.Role)
	if role != natsauth.RoleRunner && role != natsauth.RoleWatcher {
		httpjson.WriteError(w, http.StatusBadRequest, `role must be "runner" or "watcher"`, "role")
		return
	}
	ttl := DefaultExpiry
	if req.Expiry != "" {
		if ttl, err = time.ParseDuration(req.Expiry); err != nil || ttl < time.Minute || ttl > MaxExpiry {
			httpjson.WriteError(w, http.StatusBadRequest, "expiry must be a duration between 1m and 8760h", "expiry")
			return
		}
	}
	if req.Name == "" {
		req.Name = req.Role + "-" + req.Tenant + "-" + req.Pool + req.Zone
	}
	scope := natsauth.Scope{Role: role, Stack: h.stack, Layout: h.layout, Tenant: req.Tenant, Pool: req.Pool, Zone: req.Zone}
	c, err := h.authority.IssueRecorded(req.Name, scope, ttl)
	if errors.Is(err, natsauth.ErrInvalidScope) {
		httpjson.WriteError(w, http.StatusBadRequest, "a runner needs a tenant and a pool, a watcher a tenant and a zone (subject tokens)", "")
		return
	}
	if err != nil {
		h.log.Error("issue agent credentials failed", "error", err)
		httpjson.WriteError(w, http.StatusInternalServerError, "credentials not issued", "")
		return
	}
	h.log.Info("agent credentials issued", "agent", c.ID, "role", req.Role, "tenant", req.Tenant, "pool", req.Pool, "zone", req.Zone, "expires_at", c.Expires)
	httpjson.WriteJSON(w, http.StatusCreated, agentResponse{
		ID: c.ID, Name: req.Name, Role: req.Role, Tenant: req.Tenant, Pool: req.Pool, Zone: req.Zone,
		ExpiresAt: c.Expires, Credentials: string(c.File),
	})
}

func (h *Handler) revoke(w http.ResponseWriter, r *http.Request) {
	rec, err := h.authority.Lookup(r.PathValue("id"))
	if errors.Is(err, natsauth.ErrUnknownUser) {
		// Answered before the role check only for ids this broker never
		// issued, which reveals nothing about any tenant.
		httpjson.WriteError(w, http.StatusNotFound, "no such agent", "id")
		return
	}
	if err != nil {
		h.log.Error("look up agent failed", "error", err)
		httpjson.WriteError(w, http.StatusInternalServerError, "agent not revoked", "")
		return
	}
	if !admin(w, r, rec.Tenant) {
		return
	}
	if err := h.authority.Revoke(rec.ID); err != nil {
		h.log.Error("revoke agent failed", "agent", rec.ID, "error", err)
		httpjson.WriteError(w, http.StatusInternalServerError, "agent not revoked", "")
		return
	}
	// Every server of a cluster must confirm the revocation; one that
	// does not within pushTimeout makes the caller retry, not wait.
	pctx, cancel := context.WithTimeout(r.Context(), pushTimeout)
	defer cancel()
	if err := h.push(pctx); err != nil {
		// The revocation is stored: a later push or a broker restart
		// applies it. The caller retries the DELETE to push again.
		h.log.Error("push revocation to the broker failed", "agent", rec.ID, "error", err)
		httpjson.WriteUnavailable(w, 5*time.Second, "revocation stored, not yet applied by the broker; retry")
		return
	}
	h.log.Info("agent credentials revoked", "agent", rec.ID, "tenant", rec.Tenant)
	httpjson.WriteJSON(w, http.StatusOK, agentResponse{
		ID: rec.ID, Name: rec.Name, Role: string(rec.Role), Tenant: rec.Tenant, Pool: rec.Pool, Zone: rec.Zone,
		ExpiresAt: rec.Expires, Revoked: true,
	})
}

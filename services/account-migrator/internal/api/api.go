// Package api is the Dynamic Accounts REST API, served identically under
// /api/v1/accounts and /armory/accounts (so that Armory's curl examples
// work unchanged): accounts, their inventory and operations, the zones
// with their watchers under /api/v1/zones and the watcher fleet under
// /api/v1/watchers.
//
// Every route is registered on an auth.Router with the role it needs; the
// request's tenant comes from the caller's credential (see libs/auth).
// Errors are {"error": "...", "field": "..."}; batch
// requests answer per entry.
package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/outposthq/outpost/libs/apispec"
	"github.com/outposthq/outpost/libs/auth"
	"github.com/outposthq/outpost/libs/httpjson"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/services/account-migrator/internal/accounts"
	"github.com/outposthq/outpost/services/account-migrator/internal/objects"
	"github.com/outposthq/outpost/services/account-migrator/internal/openapi"
	"github.com/outposthq/outpost/services/account-migrator/internal/operations"
	"github.com/outposthq/outpost/services/account-migrator/internal/presence"
)

// TenantHeader names the tenant of a request made by a principal holding
// several tenants.
const TenantHeader = auth.TenantHeader

// Prefixes under which the accounts API is served.
var Prefixes = []string{"/api/v1/accounts", "/armory/accounts"}

// Accounts is the lifecycle engine as the API uses it.
type Accounts interface {
	Create(ctx context.Context, tenant string, in accounts.Input, source string) (*accounts.Record, error)
	Patch(ctx context.Context, tenant string, in accounts.Input) (*accounts.Record, error)
	Delete(ctx context.Context, tenant, name string) (*accounts.Record, bool, error)
	Get(ctx context.Context, tenant, name string) (*accounts.Record, error)
	List(ctx context.Context, tenant string) ([]*accounts.Record, error)
	Presence(tenant string) *presence.Tracker
}

// Inventory reads accounts' objects.
type Inventory interface {
	List(ctx context.Context, tenant, account string, kind *accounts.Kind, namespace string) ([]objects.Item, error)
	Get(ctx context.Context, tenant, account string, kind accounts.Kind, namespace, name string) (*objects.Item, error)
}

// Operations submits and reads operations.
type Operations interface {
	Submit(ctx context.Context, tenant, account string, req operations.Request) (*operations.Record, error)
	Get(ctx context.Context, tenant, id string) (*operations.Record, error)
	Wait(ctx context.Context, tenant, id string, d time.Duration) (*operations.Record, error)
}

// Tenants says which tenants exist.
type Tenants interface {
	Known(name string) bool
}

// Options configure the API.
type Options struct {
	DefaultTenant    string
	MaxRequestBytes  int64
	MaxOperationWait time.Duration
	Logger           *slog.Logger
	Now              func() time.Time
}

// API serves the REST API.
type API struct {
	accounts Accounts
	objects  Inventory
	ops      Operations
	tenants  Tenants
	opts     Options
	log      *slog.Logger
}

// New returns the API.
func New(acc Accounts, inv Inventory, ops Operations, tenants Tenants, opts Options) *API {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &API{accounts: acc, objects: inv, ops: ops, tenants: tenants, opts: opts, log: opts.Logger}
}

// Register adds the API's routes to r, each with the role it needs in the
// request's tenant (the README's route table): reads are for viewers,
// operations for operators, and accounts themselves for admins.
func (a *API) Register(r *auth.Router) {
	const v, o, ad = auth.RoleViewer, auth.RoleOperator, auth.RoleAdmin
	for _, p := range Prefixes {
		r.HandleFunc("POST "+p, ad, a.withTenant(a.create))
		r.HandleFunc("PATCH "+p, ad, a.withTenant(a.patch))
		r.HandleFunc("DELETE "+p, ad, a.withTenant(a.deleteMany))
		r.HandleFunc("GET "+p, v, a.withTenant(a.list))
		r.HandleFunc("GET "+p+"/{name}", v, a.withTenant(a.get))
		r.HandleFunc("DELETE "+p+"/{name}", ad, a.withTenant(a.deleteOne))
		r.HandleFunc("GET "+p+"/{name}/objects", v, a.withTenant(a.listObjects))
		r.HandleFunc("GET "+p+"/{name}/objects/{kind}/{namespace}/{object}", v, a.withTenant(a.getObject))
		r.HandleFunc("POST "+p+"/{name}/operations", o, a.withTenant(a.submitOperation))
		r.HandleFunc("GET "+p+"/{name}/operations/{id}", v, a.withTenant(a.getOperation))
	}
	// Where the Dynamic Accounts documentation says to check an account.
	r.HandleFunc("GET /agents/kubernetes/accounts/{name}", v, a.withTenant(a.get))
	r.HandleFunc("GET /api/v1/zones", v, a.withTenant(a.zones))
	r.HandleFunc("GET /api/v1/watchers", v, a.withTenant(a.watchers))
	// The API's OpenAPI document, for any credential: it says what the
	// API is, nothing of a tenant's data.
	r.Handle("GET "+apispec.Path, v, specHandler)
	notFound := func(w http.ResponseWriter, r *http.Request) {
		httpjson.WriteError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path, "")
	}
	r.HandleFunc("/api/", v, notFound)
	r.HandleFunc("/armory/", v, notFound)
}

// specHandler serves the committed document; a document that is not valid
// OpenAPI fails every test of the API, so it cannot ship.
var specHandler = func() http.Handler {
	h, err := apispec.Handler(openapi.Spec)
	if err != nil {
		panic(fmt.Sprintf("account-migrator: OpenAPI document: %v", err))
	}
	return h
}()

type tenantHandler func(w http.ResponseWriter, r *http.Request, tenant string)

// withTenant checks the request's tenant, which the guard resolved from
// the credential.
func (a *API) withTenant(h tenantHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := auth.TenantFrom(r.Context())
		if !a.tenants.Known(name) {
			httpjson.WriteError(w, http.StatusNotFound, "unknown tenant \""+name+"\"", TenantHeader)
			return
		}
		h(w, r, name)
	}
}

func (a *API) internal(w http.ResponseWriter, r *http.Request, op string, err error) {
	if r.Context().Err() != nil {
		return // the client is gone
	}
	if queue.IsUnavailable(err) {
		// The broker or its record store did not answer: it is
		// restarting or electing a leader. The client may retry.
		a.log.Warn("request failed, broker unavailable", "method", r.Method, "path", r.URL.Path, "op", op, "error", err)
		httpjson.WriteUnavailable(w, retryAfter, op+": the broker is unavailable for the moment; retry later")
		return
	}
	// The error stays in the log: the client gets the request id to
	// quote, never internals.
	rid := auth.RequestIDFrom(r.Context())
	a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "op", op, "request_id", rid, "error", err)
	httpjson.WriteInternal(w, rid)
}

// retryAfter is what a 503 asks the client to wait before trying again.
const retryAfter = 2 * time.Second

func (a *API) zones(w http.ResponseWriter, _ *http.Request, tenant string) {
	type zone struct {
		ZoneID   string             `json:"zoneId"`
		Live     bool               `json:"live"`
		Watchers []presence.Watcher `json:"watchers"`
	}
	out := []zone{}
	if tr := a.accounts.Presence(tenant); tr != nil {
		for id, ws := range tr.Watchers(a.opts.Now()) {
			z := zone{ZoneID: id, Watchers: ws}
			for _, wt := range ws {
				z.Live = z.Live || wt.Live
			}
			out = append(out, z)
		}
	}
	sortZones(out, func(z zone) string { return z.ZoneID })
	httpjson.WriteJSON(w, http.StatusOK, map[string]any{"zones": out, "count": len(out)})
}

// Package credentials serves Spinnaker's account management API
// (Clouddriver's /credentials) on the account-migrator, as Armory's
// Dynamic Accounts intercept it: a Kubernetes account definition POSTed
// or PUT there becomes a Dynamic Account (migrated to a watcher when its
// name matches the automatic-migration pattern, INACTIVE otherwise);
// DELETE deletes it; GETs list the accounts in Spinnaker's shapes with
// their Dynamic Accounts state alongside. An inline kubeconfig is sealed
// and never returned.
package credentials

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/outposthq/outpost/libs/auth"
	"github.com/outposthq/outpost/libs/httpjson"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/services/account-migrator/internal/accounts"
	"github.com/outposthq/outpost/services/account-migrator/internal/engine"
)

// Source is the source recorded on accounts created here.
const Source = "credentials"

// retryAfter is what a 503 asks the client to wait.
const retryAfter = 2 * time.Second

// Accounts is the lifecycle engine as the credentials API uses it.
type Accounts interface {
	Create(ctx context.Context, tenant string, in accounts.Input, source string) (*accounts.Record, error)
	Patch(ctx context.Context, tenant string, in accounts.Input) (*accounts.Record, error)
	Delete(ctx context.Context, tenant, name string) (*accounts.Record, bool, error)
	Get(ctx context.Context, tenant, name string) (*accounts.Record, error)
	List(ctx context.Context, tenant string) ([]*accounts.Record, error)
}

// Tenants says which tenants exist.
type Tenants interface {
	Known(name string) bool
}

// Options configure the API.
type Options struct {
	// Migrate is the automatic-migration pattern: a created account whose
	// name matches is migrated at once; nil migrates none.
	Migrate *regexp.Regexp
	// ZoneID is the zone of migrated accounts (empty: offered to every
	// zone).
	ZoneID          string
	MaxRequestBytes int64
	Logger          *slog.Logger
}

// API serves /credentials.
type API struct {
	accounts Accounts
	tenants  Tenants
	opts     Options
	log      *slog.Logger
}

// New returns the API.
func New(acc Accounts, tenants Tenants, opts Options) *API {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &API{accounts: acc, tenants: tenants, opts: opts, log: opts.Logger}
}

// Register adds the routes to r: writes for admins, as the accounts API's
// own, reads for viewers (further narrowed by each account's
// permissions).
func (a *API) Register(r *auth.Router) {
	const v, ad = auth.RoleViewer, auth.RoleAdmin
	r.HandleFunc("POST /credentials", ad, a.withTenant(a.create))
	r.HandleFunc("PUT /credentials", ad, a.withTenant(a.update))
	r.HandleFunc("DELETE /credentials/{accountName}", ad, a.withTenant(a.remove))
	r.HandleFunc("GET /credentials", v, a.withTenant(a.list))
	r.HandleFunc("GET /credentials/{accountName}", v, a.withTenant(a.get))
	r.HandleFunc("GET /credentials/type/{accountType}", v, a.withTenant(a.listType))
}

type tenantHandler func(w http.ResponseWriter, r *http.Request, tenant string)

func (a *API) withTenant(h tenantHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := auth.TenantFrom(r.Context())
		if !a.tenants.Known(name) {
			httpjson.WriteError(w, http.StatusNotFound, "unknown tenant \""+name+"\"", auth.TenantHeader)
			return
		}
		h(w, r, name)
	}
}

// read decodes the body's definition or answers 400 (413).
func (a *API) read(w http.ResponseWriter, r *http.Request) (decoded, bool) {
	raw, err := httpjson.ReadBody(w, r, a.opts.MaxRequestBytes)
	if err == nil {
		var d decoded
		if d, err = decode(raw); err == nil {
			return d, true
		}
	}
	switch fe, ok := errors.AsType[*httpjson.FieldError](err); {
	case errors.Is(err, httpjson.ErrTooLarge):
		httpjson.WriteError(w, http.StatusRequestEntityTooLarge, err.Error(), "")
	case ok:
		httpjson.WriteError(w, http.StatusBadRequest, fe.Message, fe.Field)
	default:
		httpjson.WriteError(w, http.StatusBadRequest, err.Error(), "")
	}
	return decoded{}, false
}

func (a *API) create(w http.ResponseWriter, r *http.Request, tenant string) {
	d, ok := a.read(w, r)
	if !ok {
		return
	}
	in := d.input(false)
	if a.opts.Migrate != nil && a.opts.Migrate.MatchString(in.Name) {
		// Armory's interception: a name of the migration pattern goes
		// to a watcher at once.
		active := string(accounts.Active)
		in.State = &active
		if a.opts.ZoneID != "" {
			in.ZoneID = &a.opts.ZoneID
		}
	}
	rec, err := a.accounts.Create(r.Context(), tenant, in, Source)
	if err != nil {
		a.fail(w, r, "create account", in.Name, err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, definitionOf(rec))
}

func (a *API) update(w http.ResponseWriter, r *http.Request, tenant string) {
	d, ok := a.read(w, r)
	if !ok {
		return
	}
	// Only admins PUT, and permissions never narrow an admin's reach.
	in := d.input(true)
	rec, err := a.accounts.Patch(r.Context(), tenant, in)
	if err != nil {
		a.fail(w, r, "update account", in.Name, err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, definitionOf(rec))
}

func (a *API) remove(w http.ResponseWriter, r *http.Request, tenant string) {
	name := r.PathValue("accountName")
	rec, removed, err := a.accounts.Delete(r.Context(), tenant, name)
	switch {
	case errors.Is(err, accounts.ErrInvalid):
		a.fail(w, r, "delete account", name, engine.ErrNotFound)
	case err != nil:
		a.fail(w, r, "delete account", name, err)
	case removed:
		httpjson.WriteJSON(w, http.StatusOK, map[string]string{"name": name, "state": "DELETED"})
	default:
		// Gone once the watcher holding it lets go.
		httpjson.WriteJSON(w, http.StatusAccepted, map[string]string{"name": name, "state": string(rec.State)})
	}
}

// readable lists the tenant's accounts the caller's groups may read.
func (a *API) readable(r *http.Request, tenant string) ([]*accounts.Record, error) {
	recs, err := a.accounts.List(r.Context(), tenant)
	if err != nil {
		return nil, err
	}
	p := auth.PrincipalFrom(r.Context())
	out := recs[:0]
	for _, rec := range recs {
		if rec.Permissions.Allows(p, tenant, accounts.ActionRead) {
			out = append(out, rec)
		}
	}
	return out, nil
}

func (a *API) list(w http.ResponseWriter, r *http.Request, tenant string) {
	recs, err := a.readable(r, tenant)
	if err != nil {
		a.fail(w, r, "list accounts", "", err)
		return
	}
	out := make([]map[string]any, 0, len(recs))
	for _, rec := range recs {
		out = append(out, summaryOf(rec))
	}
	httpjson.WriteJSON(w, http.StatusOK, out)
}

func (a *API) get(w http.ResponseWriter, r *http.Request, tenant string) {
	name := r.PathValue("accountName")
	rec, err := a.accounts.Get(r.Context(), tenant, name)
	if err == nil && !rec.Permissions.Allows(auth.PrincipalFrom(r.Context()), tenant, accounts.ActionRead) {
		err = engine.ErrNotFound
	}
	if err != nil {
		a.fail(w, r, "get account", name, err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, detailOf(rec))
}

// listType answers the definitions of one type, sorted by name, from
// ?startingAccountName= (inclusive), at most ?limit= of them.
func (a *API) listType(w http.ResponseWriter, r *http.Request, tenant string) {
	if t := r.PathValue("accountType"); t != TypeKubernetes {
		httpjson.WriteError(w, http.StatusBadRequest, "account type "+strconv.Quote(t)+" is not supported: only \""+TypeKubernetes+"\" accounts are managed here", "accountType")
		return
	}
	limit := 0
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			httpjson.WriteError(w, http.StatusBadRequest, "limit must be a positive integer", "limit")
			return
		}
		limit = n
	}
	from := r.URL.Query().Get("startingAccountName")
	recs, err := a.readable(r, tenant)
	if err != nil {
		a.fail(w, r, "list accounts", "", err)
		return
	}
	out := []definitionView{}
	for _, rec := range recs {
		if rec.Name < from {
			continue
		}
		if limit > 0 && len(out) == limit {
			break
		}
		out = append(out, definitionOf(rec))
	}
	httpjson.WriteJSON(w, http.StatusOK, out)
}

// fail answers err: the caller's mistakes with their message, the rest
// logged and answered without internals.
func (a *API) fail(w http.ResponseWriter, r *http.Request, op, name string, err error) {
	switch {
	case errors.Is(err, engine.ErrNotFound):
		httpjson.WriteError(w, http.StatusNotFound, "account "+name+" not found", "")
	case errors.Is(err, engine.ErrExists):
		httpjson.WriteError(w, http.StatusConflict, "account "+name+" already exists (use PUT /credentials to change it)", "name")
	case errors.Is(err, accounts.ErrInvalid):
		httpjson.WriteError(w, http.StatusBadRequest, err.Error(), "")
	case r.Context().Err() != nil:
		// The client is gone.
	case queue.IsUnavailable(err):
		a.log.Warn("credentials request failed, broker unavailable", "method", r.Method, "op", op, "account", name, "error", err)
		httpjson.WriteUnavailable(w, retryAfter, op+": the broker is unavailable for the moment; retry later")
	default:
		rid := auth.RequestIDFrom(r.Context())
		a.log.Error("credentials request failed", "method", r.Method, "op", op, "account", name, "request_id", rid, "error", err)
		httpjson.WriteInternal(w, rid)
	}
}

package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/outposthq/outpost/libs/auth"
	"github.com/outposthq/outpost/libs/httpjson"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/services/account-migrator/internal/accounts"
	"github.com/outposthq/outpost/services/account-migrator/internal/engine"
	"github.com/outposthq/outpost/services/account-migrator/internal/presence"
)

// sourceAPI is the source recorded on accounts created through the API.
const sourceAPI = "api"

// stateDeleted is the state shown for an account DELETE removed.
const stateDeleted = "DELETED"

// sealedMarker stands for an inline kubeconfig in responses: it is never
// shown, not even sealed.
const sealedMarker = "<sealed>"

// entryResult is one entry of a batch response.
type entryResult struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	State string `json:"state,omitempty"`
	Error string `json:"error,omitempty"`
}

// batchStatus is 200 when every entry succeeded, 400 when none did and 207
// otherwise.
func batchStatus(results []entryResult) int {
	ok := 0
	for _, r := range results {
		if r.OK {
			ok++
		}
	}
	switch ok {
	case len(results):
		return http.StatusOK
	case 0:
		return http.StatusBadRequest
	}
	return http.StatusMultiStatus
}

// runBatch decodes the entries and applies fn to each; a name given twice
// fails its later entries.
func (a *API) runBatch(w http.ResponseWriter, r *http.Request, op string, fn func(ctx context.Context, in accounts.Input) (string, error)) {
	raw, err := httpjson.ReadBody(w, r, a.opts.MaxRequestBytes)
	if err != nil {
		writeDecodeError(w, err)
		return
	}
	entries, err := decodeEntries[accounts.Input](raw)
	if err != nil {
		writeDecodeError(w, err)
		return
	}
	results := make([]entryResult, 0, len(entries))
	seen := map[string]bool{}
	unavailable := false
	for _, in := range entries {
		res := entryResult{Name: in.Name}
		switch {
		case seen[in.Name]:
			res.Error = "account " + in.Name + " appears more than once in the request"
		default:
			seen[in.Name] = true
			state, err := fn(r.Context(), in)
			if err != nil {
				res.Error = a.entryError(r, op, in.Name, err)
				unavailable = unavailable || queue.IsUnavailable(err)
			} else {
				res.OK, res.State = true, state
			}
		}
		results = append(results, res)
	}
	code := batchStatus(results)
	if code == http.StatusBadRequest && unavailable {
		// Nothing was done and the broker is (part of) why: the same
		// request may succeed later.
		code = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", strconv.Itoa(int(retryAfter.Seconds())))
	}
	httpjson.WriteJSON(w, code, results)
}

// entryError is the message of a failed entry; unexpected errors are logged.
func (a *API) entryError(r *http.Request, op, name string, err error) string {
	switch {
	case errors.Is(err, accounts.ErrInvalid), errors.Is(err, accounts.ErrIllegalTransition),
		errors.Is(err, engine.ErrExists), errors.Is(err, engine.ErrNotFound):
		return err.Error()
	case queue.IsUnavailable(err):
		a.log.Warn("account request failed, broker unavailable", "method", r.Method, "op", op, "account", name, "error", err)
		return op + " failed: the broker is unavailable for the moment; retry later"
	}
	a.log.Error("account request failed", "method", r.Method, "op", op, "account", name, "error", err)
	return op + " failed: " + err.Error()
}

func (a *API) create(w http.ResponseWriter, r *http.Request, tenant string) {
	a.runBatch(w, r, "create", func(ctx context.Context, in accounts.Input) (string, error) {
		rec, err := a.accounts.Create(ctx, tenant, in, sourceAPI)
		if err != nil {
			return "", err
		}
		return string(rec.State), nil
	})
}

func (a *API) patch(w http.ResponseWriter, r *http.Request, tenant string) {
	a.runBatch(w, r, "patch", func(ctx context.Context, in accounts.Input) (string, error) {
		rec, err := a.accounts.Patch(ctx, tenant, in)
		if err != nil {
			return "", err
		}
		return string(rec.State), nil
	})
}

func (a *API) deleteMany(w http.ResponseWriter, r *http.Request, tenant string) {
	a.runBatch(w, r, "delete", func(ctx context.Context, in accounts.Input) (string, error) {
		return a.delete(ctx, tenant, in.Name)
	})
}

func (a *API) delete(ctx context.Context, tenant, name string) (string, error) {
	rec, removed, err := a.accounts.Delete(ctx, tenant, name)
	if err != nil {
		return "", err
	}
	if removed {
		return stateDeleted, nil
	}
	return string(rec.State), nil
}

func (a *API) deleteOne(w http.ResponseWriter, r *http.Request, tenant string) {
	name := r.PathValue("name")
	state, err := a.delete(r.Context(), tenant, name)
	switch {
	case errors.Is(err, engine.ErrNotFound), errors.Is(err, accounts.ErrInvalid):
		httpjson.WriteError(w, http.StatusNotFound, "account "+name+" not found", "")
	case err != nil:
		a.internal(w, r, "delete account", err)
	case state == stateDeleted:
		httpjson.WriteJSON(w, http.StatusOK, entryResult{Name: name, OK: true, State: state})
	default:
		// Deletion waits for the watcher to release the account.
		httpjson.WriteJSON(w, http.StatusAccepted, entryResult{Name: name, OK: true, State: state})
	}
}

// specView is the account's spec as responses show it: an inline
// kubeconfig is only said to exist.
type specView struct {
	KubeconfigFile      string   `json:"kubeconfigFile,omitempty"`
	KubeconfigContents  string   `json:"kubeconfigContents,omitempty"`
	HasInlineKubeconfig bool     `json:"hasInlineKubeconfig"`
	ServiceAccount      bool     `json:"serviceAccount"`
	Context             string   `json:"context,omitempty"`
	Namespaces          []string `json:"namespaces,omitempty"`
	Kinds               []string `json:"kinds,omitempty"`
	OmitKinds           []string `json:"omitKinds,omitempty"`
}

// accountView is GET's account.
type accountView struct {
	Name         string                `json:"name"`
	State        accounts.State        `json:"state"`
	ZoneID       string                `json:"zoneId,omitempty"`
	Agent        string                `json:"agent,omitempty"`
	FailedCount  int                   `json:"failedCount"`
	ErrorMessage string                `json:"errorMessage,omitempty"`
	Cluster      *accounts.Cluster     `json:"cluster,omitempty"`
	Kinds        []accounts.Kind       `json:"kinds"`
	SkippedKinds []accounts.Skipped    `json:"skippedKinds"`
	LastSeen     *time.Time            `json:"lastSeen,omitempty"`
	Generation   uint64                `json:"generation"`
	Deleting     bool                  `json:"deleting,omitempty"`
	Source       string                `json:"source,omitempty"`
	Spec         specView              `json:"spec"`
	OfferedZones []string              `json:"offeredZones,omitempty"`
	OfferErrors  map[string]string     `json:"offerErrors,omitempty"`
	CreatedAt    time.Time             `json:"createdAt"`
	UpdatedAt    time.Time             `json:"updatedAt"`
	StateSince   time.Time             `json:"stateSince"`
	Drift        map[string]int        `json:"checksumMismatches,omitempty"`
	Permissions  *accounts.Permissions `json:"permissions,omitempty"`
	// History is shown by the account's GET only: the list stays small.
	History []accounts.Transition `json:"history,omitempty"`
}

func viewOf(rec *accounts.Record, pv *presence.View) accountView {
	v := accountView{
		Name: rec.Name, State: rec.State, ZoneID: rec.ZoneID, Agent: rec.Agent,
		FailedCount: rec.FailedCount, ErrorMessage: rec.ErrorMessage, Cluster: rec.Cluster,
		Kinds: rec.Kinds, SkippedKinds: rec.Skipped, Generation: rec.Generation,
		Deleting: rec.Deleting, Source: rec.Source, OfferedZones: rec.Offered, OfferErrors: rec.OfferFailures,
		CreatedAt: rec.CreatedAt, UpdatedAt: rec.UpdatedAt, StateSince: rec.StateSince, Drift: rec.Drift,
		Permissions: rec.Permissions,
		Spec: specView{
			KubeconfigFile: rec.Spec.KubeconfigFile, HasInlineKubeconfig: len(rec.Spec.KubeconfigSealed) > 0,
			ServiceAccount: rec.Spec.UsesServiceAccount(), Context: rec.Spec.Context,
			Namespaces: rec.Spec.Namespaces, Kinds: rec.Spec.Kinds, OmitKinds: rec.Spec.OmitKinds,
		},
	}
	if v.Spec.HasInlineKubeconfig {
		v.Spec.KubeconfigContents = sealedMarker
	}
	if v.Kinds == nil {
		v.Kinds = []accounts.Kind{}
	}
	if v.SkippedKinds == nil {
		v.SkippedKinds = []accounts.Skipped{}
	}
	if pv != nil && rec.ZoneID != "" {
		if t, ok := pv.LastSeen(rec.ZoneID, rec.Name); ok {
			v.LastSeen = &t
		}
	}
	return v
}

func (a *API) presenceView(tenant string) *presence.View {
	tr := a.accounts.Presence(tenant)
	if tr == nil {
		return nil
	}
	v := tr.Snapshot(a.opts.Now())
	return &v
}

func (a *API) list(w http.ResponseWriter, r *http.Request, tenant string) {
	recs, err := a.accounts.List(r.Context(), tenant)
	if err != nil {
		a.internal(w, r, "list accounts", err)
		return
	}
	state := strings.ToUpper(r.URL.Query().Get("state"))
	pv := a.presenceView(tenant)
	out := make([]accountView, 0, len(recs))
	p := auth.PrincipalFrom(r.Context())
	for _, rec := range recs {
		if (state == "" || string(rec.State) == state) && rec.Permissions.Allows(p, tenant, accounts.ActionRead) {
			out = append(out, viewOf(rec, pv))
		}
	}
	httpjson.WriteJSON(w, http.StatusOK, out)
}

func (a *API) get(w http.ResponseWriter, r *http.Request, tenant string) {
	rec, ok := a.account(w, r, tenant)
	if ok {
		v := viewOf(rec, a.presenceView(tenant))
		v.History = rec.History
		httpjson.WriteJSON(w, http.StatusOK, v)
	}
}

// account loads the path's account or writes 404: an account the
// caller's groups may not read (its permissions) is not found either.
func (a *API) account(w http.ResponseWriter, r *http.Request, tenant string) (*accounts.Record, bool) {
	name := r.PathValue("name")
	rec, err := a.accounts.Get(r.Context(), tenant, name)
	if err == nil && !rec.Permissions.Allows(auth.PrincipalFrom(r.Context()), tenant, accounts.ActionRead) {
		err = engine.ErrNotFound
	}
	switch {
	case errors.Is(err, engine.ErrNotFound):
		httpjson.WriteError(w, http.StatusNotFound, "account "+name+" not found", "")
		return nil, false
	case err != nil:
		a.internal(w, r, "get account", err)
		return nil, false
	}
	return rec, true
}

// sortZones sorts by key.
func sortZones[T any](s []T, key func(T) string) {
	slices.SortFunc(s, func(a, b T) int { return strings.Compare(key(a), key(b)) })
}

package api

import (
	"errors"
	"net/http"

	"github.com/outposthq/outpost/libs/httpjson"
	"github.com/outposthq/outpost/libs/inventory"
	"github.com/outposthq/outpost/services/account-migrator/internal/accounts"
	"github.com/outposthq/outpost/services/account-migrator/internal/objects"
)

func (a *API) listObjects(w http.ResponseWriter, r *http.Request, tenant string) {
	rec, ok := a.account(w, r, tenant)
	if !ok {
		return
	}
	q := r.URL.Query()
	var kind *accounts.Kind
	if k := q.Get("kind"); k != "" {
		resolved, err := objects.ResolveKind(rec.Kinds, k)
		if err != nil {
			httpjson.WriteError(w, http.StatusBadRequest, err.Error(), "kind")
			return
		}
		kind = &resolved
	}
	items, err := a.objects.List(r.Context(), tenant, rec.Name, kind, q.Get("namespace"))
	switch {
	case errors.Is(err, objects.ErrClusterScoped):
		httpjson.WriteError(w, http.StatusBadRequest, err.Error(), "namespace")
	case err != nil:
		a.internal(w, r, "list objects", err)
	default:
		httpjson.WriteJSON(w, http.StatusOK, map[string]any{"items": items, "count": len(items)})
	}
}

func (a *API) getObject(w http.ResponseWriter, r *http.Request, tenant string) {
	rec, ok := a.account(w, r, tenant)
	if !ok {
		return
	}
	kind, err := objects.ResolveKind(rec.Kinds, r.PathValue("kind"))
	if err != nil {
		httpjson.WriteError(w, http.StatusBadRequest, err.Error(), "kind")
		return
	}
	ns := r.PathValue("namespace")
	if ns == inventory.ClusterScope {
		ns = ""
	}
	item, err := a.objects.Get(r.Context(), tenant, rec.Name, kind, ns, r.PathValue("object"))
	switch {
	case errors.Is(err, objects.ErrNotFound):
		httpjson.WriteError(w, http.StatusNotFound, err.Error(), "")
	case err != nil:
		a.internal(w, r, "get object", err)
	default:
		httpjson.WriteJSON(w, http.StatusOK, item)
	}
}

package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/outposthq/outpost/libs/auth"
	"github.com/outposthq/outpost/libs/httpjson"
	"github.com/outposthq/outpost/services/account-migrator/internal/accounts"
	"github.com/outposthq/outpost/services/account-migrator/internal/operations"
)

// submitOperation sends an operation to the account's holder. With
// ?wait=<duration> (bounded by max_operation_wait) it waits for the result
// and answers 200 with it; otherwise, or when the wait runs out, 202 with
// the pending record.
func (a *API) submitOperation(w http.ResponseWriter, r *http.Request, tenant string) {
	var wait time.Duration
	if s := r.URL.Query().Get("wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			httpjson.WriteError(w, http.StatusBadRequest, "wait must be a duration such as 30s", "wait")
			return
		}
		wait = min(d, a.opts.MaxOperationWait)
	}
	raw, err := httpjson.ReadBody(w, r, a.opts.MaxRequestBytes)
	if err != nil {
		writeDecodeError(w, err)
		return
	}
	var req operations.Request
	if err := decodeStrict(raw, &req, ""); err != nil {
		writeDecodeError(w, err)
		return
	}
	rec, ok := a.account(w, r, tenant)
	if !ok {
		return
	}
	if !rec.Permissions.Allows(auth.PrincipalFrom(r.Context()), tenant, accounts.ActionWrite) {
		httpjson.WriteError(w, http.StatusForbidden, "account "+rec.Name+"'s permissions do not let you operate it (WRITE)", "")
		return
	}
	if rec.State != accounts.Active {
		httpjson.WriteError(w, http.StatusConflict, "account "+rec.Name+" is "+string(rec.State)+": operations need an ACTIVE account", "")
		return
	}
	op, err := a.ops.Submit(r.Context(), tenant, rec.Name, req)
	switch {
	case errors.Is(err, operations.ErrInvalid):
		httpjson.WriteError(w, http.StatusBadRequest, err.Error(), "")
		return
	case err != nil:
		a.internal(w, r, "submit operation", err)
		return
	}
	if wait > 0 {
		done, err := a.ops.Wait(r.Context(), tenant, op.ID, wait)
		if err != nil {
			a.internal(w, r, "wait for operation", err)
			return
		}
		if done.Done() {
			httpjson.WriteJSON(w, http.StatusOK, done)
			return
		}
		op = done
	}
	httpjson.WriteJSON(w, http.StatusAccepted, op)
}

func (a *API) getOperation(w http.ResponseWriter, r *http.Request, tenant string) {
	name, id := r.PathValue("name"), r.PathValue("id")
	if _, ok := a.account(w, r, tenant); !ok {
		return
	}
	op, err := a.ops.Get(r.Context(), tenant, id)
	switch {
	case errors.Is(err, operations.ErrNotFound), err == nil && op.Account != name:
		httpjson.WriteError(w, http.StatusNotFound, "operation "+id+" of account "+name+" not found", "")
	case err != nil:
		a.internal(w, r, "get operation", err)
	default:
		httpjson.WriteJSON(w, http.StatusOK, op)
	}
}

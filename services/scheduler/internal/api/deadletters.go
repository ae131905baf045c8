package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/outposthq/outpost/libs/httpjson"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/services/scheduler/internal/deadletters"
	"github.com/outposthq/outpost/services/scheduler/internal/tenants"
)

// DeadLetters carries out the dead-letter operations
// (deadletters.Service).
type DeadLetters interface {
	List(ctx context.Context, tenant string, q queue.DeadLetterQuery) ([]deadletters.Entry, string, error)
	Get(ctx context.Context, tenant, id string) (deadletters.Entry, error)
	Replay(ctx context.Context, tenant, id string) (deadletters.Entry, error)
	Delete(ctx context.Context, tenant, id string) error
}

// deadLetterView is a dead letter as the API shows it.
type deadLetterView struct {
	ID              string    `json:"id"`
	Tenant          string    `json:"tenant"`
	Role            string    `json:"role"`
	Subject         string    `json:"subject,omitempty"`
	DeadLetterSubj  string    `json:"dead_letter_subject"`
	Type            string    `json:"type,omitempty"`
	Reason          string    `json:"reason"`
	ReasonClass     string    `json:"reason_class"`
	Attempts        int       `json:"attempts"`
	FirstTime       time.Time `json:"first_time"`
	LastTime        time.Time `json:"last_time"`
	Size            int       `json:"size"`
	PublishedDirect bool      `json:"published_directly,omitempty"`
	Replays         int       `json:"replays"`
	// ReplayHistory lists the last replays (GET of one, and replay).
	ReplayHistory []deadletters.Replay `json:"replay_history,omitempty"`
	// Headers and Data (base64) are the stored message (GET of one).
	Headers map[string]string `json:"headers,omitempty"`
	Data    []byte            `json:"data,omitempty"`
}

func viewDeadLetter(e deadletters.Entry, full bool) deadLetterView {
	v := deadLetterView{
		ID: e.ID, Tenant: e.Tenant, Role: string(e.Role), Subject: e.OriginalSubject, DeadLetterSubj: e.DeadLetter.Subject,
		Type: e.Header[queue.HeaderType], Reason: e.Reason, ReasonClass: e.Class, Attempts: e.Attempts,
		FirstTime: e.FirstTime.UTC(), LastTime: e.Time.UTC(), Size: e.Size(), PublishedDirect: e.Direct,
		Replays: e.Record.Count,
	}
	if full {
		v.ReplayHistory, v.Headers, v.Data = e.Record.Replays, e.Header, e.Data
	}
	return v
}

// listDeadLetters answers GET /api/v1/deadletters?role=&limit=&after=:
// the tenant's dead letters, oldest first, a page at a time; "next" is the
// "after" of the next page, absent on the last.
func (a *API) listDeadLetters(w http.ResponseWriter, r *http.Request, t *tenants.Tenant) {
	q := r.URL.Query()
	dq := queue.DeadLetterQuery{Role: queue.Role(q.Get("role")), After: q.Get("after"), Limit: a.opts.ListLimit}
	if dq.Role != "" && !queue.ValidToken(string(dq.Role)) {
		httpjson.WriteError(w, http.StatusBadRequest, "must be a role such as jobs, submit or job-events", "role")
		return
	}
	if dq.After != "" {
		if n, err := strconv.ParseUint(dq.After, 10, 64); err != nil || n == 0 {
			httpjson.WriteError(w, http.StatusBadRequest, "must be the id of a dead letter (the next of the previous page)", "after")
			return
		}
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > a.opts.MaxListLimit {
			httpjson.WriteError(w, http.StatusBadRequest, "must be an integer between 1 and "+strconv.Itoa(a.opts.MaxListLimit), "limit")
			return
		}
		dq.Limit = n
	}
	entries, next, err := a.opts.DeadLetters.List(r.Context(), t.Name, dq)
	if err != nil {
		a.deadLetterError(w, r, "list dead letters", err)
		return
	}
	out := make([]deadLetterView, 0, len(entries))
	for _, e := range entries {
		out = append(out, viewDeadLetter(e, false))
	}
	body := map[string]any{"deadletters": out}
	if next != "" {
		body["next"] = next
	}
	httpjson.WriteJSON(w, http.StatusOK, body)
}

func (a *API) getDeadLetter(w http.ResponseWriter, r *http.Request, t *tenants.Tenant) {
	e, err := a.opts.DeadLetters.Get(r.Context(), t.Name, r.PathValue("id"))
	if err != nil {
		a.deadLetterError(w, r, "get dead letter", err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, viewDeadLetter(e, true))
}

// replayDeadLetter answers POST /api/v1/deadletters/{id}/replay: the
// message goes back to its original subject with a fresh deduplication
// id; the dead letter stays (with the replay recorded) until deleted.
func (a *API) replayDeadLetter(w http.ResponseWriter, r *http.Request, t *tenants.Tenant) {
	e, err := a.opts.DeadLetters.Replay(r.Context(), t.Name, r.PathValue("id"))
	if err != nil {
		a.deadLetterError(w, r, "replay dead letter", err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, viewDeadLetter(e, true))
}

func (a *API) deleteDeadLetter(w http.ResponseWriter, r *http.Request, t *tenants.Tenant) {
	if err := a.opts.DeadLetters.Delete(r.Context(), t.Name, r.PathValue("id")); err != nil {
		a.deadLetterError(w, r, "delete dead letter", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) deadLetterError(w http.ResponseWriter, r *http.Request, op string, err error) {
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		httpjson.WriteError(w, http.StatusNotImplemented, deadletters.ErrUnsupported.Error(), "")
	case errors.Is(err, queue.ErrDeadLetterNotFound):
		httpjson.WriteError(w, http.StatusNotFound, "no dead letter "+strconv.Quote(r.PathValue("id"))+" in this tenant", "id")
	case errors.Is(err, deadletters.ErrNotReplayable):
		httpjson.WriteError(w, http.StatusConflict, err.Error(), "")
	case errors.Is(err, deadletters.ErrConcurrentReplay):
		httpjson.WriteError(w, http.StatusConflict, deadletters.ErrConcurrentReplay.Error(), "")
	case errors.Is(err, queue.ErrLimitExceeded):
		httpjson.WriteError(w, http.StatusTooManyRequests, "the tenant's queue is full: the dead letter stays, replay it later", "")
	case errors.Is(err, queue.ErrInvalidSubject):
		httpjson.WriteError(w, http.StatusConflict, "its original subject is no longer accepted by the queue", "")
	default:
		a.internal(w, r, op, err)
	}
}

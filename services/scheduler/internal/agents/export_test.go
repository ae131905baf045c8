package agents

import "net/http"

// RegisterUnguarded adds the handlers to mux without the guard, for tests
// that put the principal in the request's context themselves: the handlers
// check the agent's tenant on their own.
func (h *Handler) RegisterUnguarded(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/agents", h.create)
	mux.HandleFunc("DELETE /api/v1/agents/{id}", h.revoke)
}

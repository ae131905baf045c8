package service

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

type fakeFrontend struct{ err error }

func (f fakeFrontend) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.WriteHeader(http.StatusTeapot)
}
func (f fakeFrontend) Ready() error { return f.err }

func TestDeferred(t *testing.T) {
	d := NewDeferred("scheduler")
	rec := httptest.NewRecorder()
	d.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/jobs", nil))
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	require.JSONEq(t, `{"error":"the scheduler is starting: not connected to the broker yet"}`, rec.Body.String())
	require.Equal(t, "1", rec.Header().Get("Retry-After"))
	require.ErrorIs(t, d.Ready(), ErrStarting)
	require.Nil(t, d.Get())

	down := errors.New("broker down")
	d.Set(fakeFrontend{err: down})
	rec = httptest.NewRecorder()
	d.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/jobs", nil))
	require.Equal(t, http.StatusTeapot, rec.Code, "requests go to the service once set")
	require.ErrorIs(t, d.Ready(), down, "readiness is the service's own once set")
}

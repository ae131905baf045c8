package ingest_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/policy"
)

// TestHTTPSinkRedirectHeldToPolicy: an allowed host that answers with a
// redirect to a host the policy does not list gets the records, but the
// redirect is not followed: the other host never sees the token.
func TestHTTPSinkRedirectHeldToPolicy(t *testing.T) {
	db, source := sinkSource(t)
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { elsewhere.Add(1) }))
	defer other.Close()
	// The same server under another name: "localhost" is not allowed.
	target := strings.Replace(other.URL, "127.0.0.1", "localhost", 1)
	allowed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target+"/stolen", http.StatusTemporaryRedirect)
	}))
	defer allowed.Close()

	dir := t.TempDir()
	writeSecret(t, dir, "PG_PASSWORD", db.Password)
	writeSecret(t, dir, "HOOK_TOKEN", "hook-token-value")
	task := newTask(dir, nil)
	task.Policy = &policy.Policy{Hosts: []string{"127.0.0.1"}}
	text := source + fmt.Sprintf("sink:\n  type: http\n  config: {url: '%s/hook', retry_max_times: 1, headers: {X-Token: '${HOOK_TOKEN}'}}\n", allowed.URL)
	res, out := run(t, task, text)
	require.Error(t, res.Err)
	require.ErrorIs(t, res.Err, policy.ErrRefused, out.text())
	require.Contains(t, res.Err.Error(), "sink http redirect host localhost")
	require.Zero(t, elsewhere.Load(), "the redirect was not followed")
}

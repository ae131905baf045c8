package console_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/services/scheduler/internal/config"
)

// accountsAnswers are account GET answers in the account-migrator's
// schema: one account with a lifecycle history, one stored before the
// history was kept.
var accountsAnswers = map[string]string{
	"moved": `{"name":"moved","state":"ACTIVE","zoneId":"z1","agent":"w2","failedCount":0,"kinds":[],"skippedKinds":[],
		"generation":2,"spec":{"hasInlineKubeconfig":false,"serviceAccount":true},"createdAt":"2026-01-02T03:04:00Z",
		"updatedAt":"2026-01-02T03:09:00Z","stateSince":"2026-01-02T03:09:00Z","history":[
		{"from":"INACTIVE","to":"TO_MIGRATE","at":"2026-01-02T03:04:00Z","reason":"created active"},
		{"from":"TO_MIGRATE","to":"ACTIVATING","at":"2026-01-02T03:05:00Z","reason":"lease of generation 2 sent to z1"},
		{"from":"ACTIVATING","to":"FAILED","at":"2026-01-02T03:06:00Z","reason":"failed","error":"forbidden: <pods>"},
		{"from":"FAILED","to":"ACTIVE","at":"2026-01-02T03:09:00Z","reason":"activated by watcher w2 in zone z1"}]}`,
	"old": `{"name":"old","state":"INACTIVE","failedCount":0,"kinds":[],"skippedKinds":[],"generation":0,
		"spec":{"hasInlineKubeconfig":false,"serviceAccount":true},"createdAt":"2026-01-02T03:04:00Z",
		"updatedAt":"2026-01-02T03:04:00Z","stateSince":"2026-01-02T03:04:00Z"}`,
}

// TestAccountHistory: the account page shows the lifecycle history,
// latest first, with the errors escaped; an account without history says
// so.
func TestAccountHistory(t *testing.T) {
	var bearer string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := strings.CutPrefix(r.URL.Path, "/api/v1/accounts/")
		body, found := accountsAnswers[name]
		switch {
		case r.Header.Get("Authorization") != "Bearer "+bearer:
			http.Error(w, `{"error":"unauthenticated"}`, http.StatusUnauthorized)
		case !ok || !found || r.Method != http.MethodGet:
			http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
		default:
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(body))
		}
	}))
	t.Cleanup(api.Close)
	e := newEnvWith(t, func(cfg *config.Config, _ string) { cfg.Console.AccountsURL = api.URL })
	bearer = e.key("viewer")
	b := e.browser()
	b.signIn(bearer)

	for _, tc := range []struct {
		name    string
		rows    []string
		contain []string
		absent  []string
	}{
		{
			name: "moved",
			rows: []string{"ACTIVE", "FAILED", "ACTIVATING", "TO_MIGRATE"},
			contain: []string{
				`<h2 id="history-title">Lifecycle history</h2>`,
				`<td class="reason">failed: forbidden: &lt;pods&gt;</td>`,
				`<td class="reason">activated by watcher w2 in zone z1</td>`,
				`<time datetime="2026-01-02T03:06:00Z">`,
			},
			absent: []string{"No transitions recorded yet."},
		},
		{name: "old", contain: []string{"No transitions recorded yet."}, absent: []string{`<table id="history"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, page := b.get("/accounts/" + tc.name)
			require.Equal(t, http.StatusOK, resp.StatusCode, page)
			var rows []string
			for _, m := range regexpAll(`<tr data-to="([A-Z_]+)">`, page) {
				rows = append(rows, m[1])
			}
			require.Equal(t, tc.rows, rows, "the latest transition first")
			for _, s := range tc.contain {
				require.Contains(t, page, s)
			}
			for _, s := range tc.absent {
				require.NotContains(t, page, s)
			}
		})
	}
}

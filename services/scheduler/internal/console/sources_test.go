package console_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const recipe = "source:\n  type: postgres\n  config: {host_port: 'db:5432', database: app, username: u, password: '${PG_PASSWORD}'}\nsink:\n  type: outpost\n"

func TestSources(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	token := b.signIn(e.admin)

	for _, tc := range []struct {
		name, recipe, cron, tz, field string
	}{
		{"unknown sink type", strings.Replace(recipe, "type: outpost", "type: nowhere", 1), "", "", "task.ingest.recipe.sink.type"},
		{"unknown source type", "source: {type: x}", "", "", "task.ingest.recipe.source.type"},
		{"bad cron", recipe, "every hour", "", "schedule.cron"},
		{"bad time zone", recipe, "0 3 * * *", "Mars/Olympus", "schedule.time_zone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, page := b.post("/sources", url.Values{"csrf": {token}, "pool": {"etl"}, "recipe": {tc.recipe}, "cron": {tc.cron}, "time_zone": {tc.tz}})
			require.Equal(t, http.StatusBadRequest, resp.StatusCode, page)
			require.Contains(t, page, `<strong class="field-path">`+tc.field+`</strong>`, "the error is shown at its path")
			require.Contains(t, page, `name="pool" value="etl"`, "the form keeps what was typed")
		})
	}

	resp, page := b.post("/sources", url.Values{"csrf": {token}, "id": {"pg-prod"}, "pool": {"etl"}, "recipe": {recipe}, "cron": {"0 3 * * *"}, "time_zone": {"Europe/Paris"}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, page)
	require.Equal(t, "/sources/pg-prod", resp.Header.Get("Location"))
	_, page = b.get("/sources/pg-prod")
	require.Contains(t, page, `<ol id="next-fires">`)
	require.Equal(t, 5, strings.Count(page, `T01:00:00Z</time>`)+strings.Count(page, `T02:00:00Z</time>`), "five fires at 03:00 Paris time: %s", page)
	require.Contains(t, page, "No runs yet.")

	resp, _ = b.post("/sources/pg-prod/run", url.Values{"csrf": {token}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	job := strings.TrimPrefix(resp.Header.Get("Location"), "/jobs/")
	require.NotEmpty(t, job)
	_, page = b.get("/sources/pg-prod")
	require.Contains(t, page, `<a href="/jobs/`+job+`">`, "the run is in the history")
	_, page = b.get("/sources")
	require.Contains(t, page, `<a href="/sources/pg-prod">pg-prod</a>`)
}

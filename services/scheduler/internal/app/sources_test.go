package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/natsembed/natstest"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/backend"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
	"github.com/outposthq/outpost/services/scheduler/internal/sources"
)

type sourceView struct {
	ID       string     `json:"id"`
	Pool     string     `json:"pool"`
	Enabled  bool       `json:"enabled"`
	LastFire time.Time  `json:"last_fire"`
	NextFire *time.Time `json:"next_fire"`
	Schedule *struct {
		Cron     string `json:"cron"`
		TimeZone string `json:"time_zone"`
	} `json:"schedule"`
	Task json.RawMessage `json:"task"`
}

type runsView struct {
	Runs []struct {
		JobID       string `json:"job_id"`
		State       string `json:"state"`
		Trigger     string `json:"trigger"`
		ScheduledAt string `json:"scheduled_at"`
	} `json:"runs"`
	Total int `json:"total"`
}

func (e *env) runs(id string) runsView {
	e.t.Helper()
	code, out := e.do("GET", "/api/v1/sources/"+id+"/runs", "", nil)
	require.Equal(e.t, http.StatusOK, code, string(out))
	return decode[runsView](e.t, out)
}

const testRecipe = "source:\n  type: postgres\n  config: {host_port: 'db:5432', database: app, username: u, password: '${PG_PASSWORD}'}\nsink:\n  type: outpost\n"

func TestSourcesAPI(t *testing.T) {
	e := newEnv(t)
	body := map[string]any{
		"id": "pg-prod", "pool": "etl",
		"task":     map[string]any{"ingest": map[string]any{"recipe": testRecipe}},
		"schedule": map[string]any{"cron": "0 3 * * *", "time_zone": "Europe/Paris"},
	}
	code, out := e.do("POST", "/api/v1/sources", "", body)
	require.Equal(t, http.StatusCreated, code, string(out))
	s := decode[sourceView](t, out)
	require.True(t, s.Enabled, "enabled by default")
	require.NotNil(t, s.NextFire)
	require.Equal(t, 3, s.NextFire.In(mustZone(t, "Europe/Paris")).Hour())
	require.JSONEq(t, `{"ingest":{"recipe":`+jsonString(testRecipe)+`,"format":"yaml"}}`, string(s.Task))

	code, out = e.do("POST", "/api/v1/sources", "", body)
	require.Equal(t, http.StatusConflict, code, string(out))

	for _, c := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"task": map[string]any{"ingest": map[string]any{"recipe": "source: {type: x}"}}}, "task.ingest.recipe.source.type"},
		{map[string]any{"task": map[string]any{"noop": map[string]any{}}, "schedule": map[string]any{"cron": "0 3 * *"}}, "schedule.cron"},
		{map[string]any{"task": map[string]any{"noop": map[string]any{}}, "schedule": map[string]any{"cron": "0 3 * * *", "time_zone": "Paris"}}, "schedule.time_zone"},
		{map[string]any{"id": "a.b", "task": map[string]any{"noop": map[string]any{}}}, "id"},
		{map[string]any{}, "task"},
	} {
		code, out := e.do("POST", "/api/v1/sources", "", c.body)
		require.Equal(t, http.StatusBadRequest, code, string(out))
		require.Equal(t, c.field, decode[map[string]any](t, out)["field"], string(out))
	}

	code, out = e.do("PATCH", "/api/v1/sources/pg-prod", "", map[string]any{"enabled": false})
	require.Equal(t, http.StatusOK, code, string(out))
	s = decode[sourceView](t, out)
	require.False(t, s.Enabled)
	require.Nil(t, s.NextFire)

	code, out = e.do("GET", "/api/v1/sources", "", nil)
	require.Equal(t, http.StatusOK, code)
	require.Len(t, decode[map[string][]sourceView](t, out)["sources"], 1)

	// Run now: a job of the source's task, listed under the source.
	code, out = e.do("POST", "/api/v1/sources/pg-prod/run", "", nil)
	require.Equal(t, http.StatusCreated, code, string(out))
	j := decode[jobView](t, out)
	require.Equal(t, "etl", j.Pool)
	runs := e.runs("pg-prod")
	require.Equal(t, 1, runs.Total)
	require.Equal(t, j.ID, runs.Runs[0].JobID)
	require.Equal(t, "manual", runs.Runs[0].Trigger)
	require.Equal(t, "QUEUED", runs.Runs[0].State)

	code, _ = e.do("DELETE", "/api/v1/sources/pg-prod", "", nil)
	require.Equal(t, http.StatusNoContent, code)
	code, _ = e.do("GET", "/api/v1/sources/pg-prod", "", nil)
	require.Equal(t, http.StatusNotFound, code)
	code, out = e.do("POST", "/api/v1/sources", "", body)
	require.Equal(t, http.StatusCreated, code, "a deleted id can be used again: %s", out)
}

// Two scheduler replicas on one JetStream fire a source every two seconds:
// each fire is one job, dispatched once.
func TestScheduleTwoReplicasOneJobPerFire(t *testing.T) {
	url := natstest.RunServer(t).ClientURL()
	a := newEnvOn(t, url)
	b := newEnvOn(t, url)

	var mu sync.Mutex
	dispatched := map[string]int{}
	c, err := a.conn.Consume(a.ctx, queue.ConsumerConfig{Name: "runners-sched", Subject: a.subjects.Jobs("default", "sched"), AckWait: time.Minute, Concurrency: 10},
		func(ctx context.Context, d queue.Delivery) {
			m, err := events.DecodeAs[*jobsv1.JobDispatched](d.Header(), d.Data())
			if err == nil {
				mu.Lock()
				dispatched[m.JobId]++
				mu.Unlock()
			}
			_ = d.Ack(ctx)
		})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Stop(context.Background()) })

	code, out := a.do("POST", "/api/v1/sources", "", map[string]any{
		"id": "tick", "pool": "sched", "task": map[string]any{"noop": map[string]any{}},
		"schedule": map[string]any{"cron": "*/2 * * * * *"},
	})
	require.Equal(t, http.StatusCreated, code, string(out))
	require.Eventually(t, func() bool { return b.runs("tick").Total >= 4 }, 30*time.Second, 100*time.Millisecond)
	code, _ = b.do("PATCH", "/api/v1/sources/tick", "", map[string]any{"enabled": false})
	require.Equal(t, http.StatusOK, code)

	runs := a.runs("tick")
	seen := map[string]bool{}
	for _, r := range runs.Runs {
		require.Equal(t, "schedule", r.Trigger)
		require.False(t, seen[r.ScheduledAt], "two jobs for the fire at %s", r.ScheduledAt)
		seen[r.ScheduledAt] = true
		at, err := time.Parse(time.RFC3339, r.ScheduledAt)
		require.NoError(t, err)
		require.Equal(t, sources.FireJobID("tick", at), r.JobID)
		require.Zero(t, at.Second()%2)
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(dispatched) == a.runs("tick").Total
	}, waitFor, tick)
	mu.Lock()
	defer mu.Unlock()
	for id, n := range dispatched {
		require.Equal(t, 1, n, "job %s dispatched %d times", id, n)
	}
}

// A source whose fires were missed while no scheduler ran (three yearly
// fires) runs once on start, for the latest missed fire.
func TestScheduleMissedFiresRunOnce(t *testing.T) {
	url := natstest.RunServer(t).ClientURL()
	ctx := context.Background()
	conn := openBroker(t, ctx, url, backend.DefaultSettings("seed"))
	store, err := conn.OpenStore(ctx, "sources_default")
	require.NoError(t, err)
	now := time.Now().UTC()
	src := sources.Source{
		ID: "yearly", Tenant: "default", Pool: "default", Enabled: true,
		Task:     taskOf(t, `{"noop":{}}`),
		Schedule: &sources.Cron{Cron: "0 0 1 1 *"},
		LastFire: now.AddDate(-3, -1, 0), CreatedAt: now.AddDate(-4, 0, 0),
	}
	b, err := json.Marshal(src)
	require.NoError(t, err)
	_, err = store.Create(ctx, "yearly", b)
	require.NoError(t, err)

	e := newEnvOn(t, url)
	want := time.Date(now.Year(), 1, 1, 0, 0, 0, 0, time.UTC)
	require.Eventually(t, func() bool {
		code, out := e.do("GET", "/api/v1/sources/yearly", "", nil)
		return code == http.StatusOK && decode[sourceView](t, out).LastFire.Equal(want)
	}, waitFor, tick)
	// A second replica starting now owes nothing either.
	e2 := newEnvOn(t, url)
	require.Eventually(t, func() bool { return e2.runs("yearly").Total == 1 }, waitFor, tick)
	runs := e.runs("yearly")
	require.Equal(t, 1, runs.Total)
	require.Equal(t, want.Format(time.RFC3339), runs.Runs[0].ScheduledAt)
	require.Equal(t, sources.FireJobID("yearly", want), runs.Runs[0].JobID)
}

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	l, err := time.LoadLocation(name)
	require.NoError(t, err)
	return l
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func taskOf(t *testing.T, raw string) (task jobs.Task) {
	t.Helper()
	require.NoError(t, json.Unmarshal([]byte(raw), &task))
	return task
}

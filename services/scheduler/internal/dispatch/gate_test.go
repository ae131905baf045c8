package dispatch

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/libs/events"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/directory"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
)

// TestGate covers the gated jobs' bookkeeping: the record's mark, the
// index, and what a re-check does with each.
func TestGate(t *testing.T) {
	ctx := context.Background()
	spec := &jobsv1.JobSpec{Pool: "p", Task: &jobsv1.Task{Kind: &jobsv1.Task_Noop{Noop: &jobsv1.NoopTask{}}}}
	setup := func(t *testing.T) *fixture {
		f := newFixture(t)
		_, _, err := f.t.Directory.PutUser(ctx, "svc", "", t0)
		require.NoError(t, err)
		_, _, err = f.t.Directory.BindDeployment(ctx, "p", "svc", "", nil, false, t0)
		require.NoError(t, err)
		return f
	}
	submit := func(f *fixture, id, user string) *fakeDelivery {
		d := f.delivery(t, f.subjs.Submit("acme"), &jobsv1.SubmitJob{Envelope: events.NewEnvelope("acme", 0, "", ""), JobId: id, Spec: spec, User: user}, 1)
		f.e.handleSubmit(f.t)(ctx, d)
		return d
	}
	record := func(t *testing.T, f *fixture, id string) *jobs.Record {
		r, err := f.t.Jobs.Get(ctx, id)
		require.NoError(t, err)
		return r
	}
	indexed := func(t *testing.T, f *fixture) []string {
		g, err := f.t.Directory.ListGated(ctx)
		require.NoError(t, err)
		var ids []string
		for _, x := range g {
			ids = append(ids, x.Job)
		}
		return ids
	}

	t.Run("the deployment user's job is dispatched, another's gated", func(t *testing.T) {
		f := setup(t)
		require.Equal(t, "ack", submit(f, "mine", "svc").settled())
		require.Equal(t, "ack", submit(f, "theirs", "carol").settled())
		msgs := f.b.published()
		require.Len(t, msgs, 1)
		require.Equal(t, "dispatch/mine", msgs[0].DedupeID)
		var dispatched jobsv1.JobDispatched
		require.NoError(t, proto.Unmarshal(msgs[0].Data, &dispatched))
		require.Equal(t, "svc", dispatched.GetUser(), "the runner gets the submitting user")
		r := record(t, f, "theirs")
		require.True(t, r.Gated)
		require.Equal(t, jobs.StateQueued, r.State)
		require.Equal(t, "carol", r.User)
		require.Equal(t, []string{"theirs"}, indexed(t, f))
	})
	t.Run("a held job the rules refuse is gated on resume", func(t *testing.T) {
		f := setup(t)
		_, _, err := f.e.SetPaused(ctx, f.t, "p", true)
		require.NoError(t, err)
		submit(f, "j1", "carol")
		require.True(t, record(t, f, "j1").Held)
		require.Empty(t, indexed(t, f))
		_, _, err = f.e.SetPaused(ctx, f.t, "p", false)
		require.NoError(t, err)
		require.Empty(t, f.b.published())
		r := record(t, f, "j1")
		require.False(t, r.Held)
		require.True(t, r.Gated)
		require.Equal(t, []string{"j1"}, indexed(t, f))
	})
	t.Run("a gated record without an index is indexed at start, then admitted", func(t *testing.T) {
		f := setup(t)
		submit(f, "j1", "carol")
		require.NoError(t, f.t.Directory.UnmarkGated(ctx, "j1")) // a gate cut short
		f.e.releaseAllHeld(ctx, f.t)
		require.Equal(t, []string{"j1"}, indexed(t, f))
		require.NoError(t, f.e.regate(ctx, f.t))
		require.Empty(t, f.b.published(), "still refused")
		require.NoError(t, f.t.Directory.DeleteDeployment(ctx, "p"))
		require.NoError(t, f.e.regate(ctx, f.t))
		msgs := f.b.published()
		require.Len(t, msgs, 1)
		require.Equal(t, "dispatch/j1", msgs[0].DedupeID)
		require.False(t, record(t, f, "j1").Gated)
		require.Empty(t, indexed(t, f))
		require.NoError(t, f.e.regate(ctx, f.t))
		require.Len(t, f.b.published(), 1, "an admitted job is dispatched once")
	})
	t.Run("an index entry of a job no longer gated is dropped", func(t *testing.T) {
		f := setup(t)
		submit(f, "j1", "svc")
		require.NoError(t, f.t.Directory.MarkGated(ctx, directory.Gated{Job: "j1", Pool: "p", At: t0}))
		require.NoError(t, f.t.Directory.MarkGated(ctx, directory.Gated{Job: "gone", Pool: "p", At: t0}))
		require.NoError(t, f.e.regate(ctx, f.t))
		require.Len(t, f.b.published(), 1)
		require.Empty(t, indexed(t, f))
	})
	t.Run("a cancelled gated job is dropped, never dispatched", func(t *testing.T) {
		f := setup(t)
		submit(f, "j1", "carol")
		_, err := f.e.Cancel(ctx, f.t, "j1", "no longer needed")
		require.NoError(t, err)
		require.NoError(t, f.t.Directory.DeleteDeployment(ctx, "p"))
		require.NoError(t, f.e.regate(ctx, f.t))
		require.Empty(t, f.b.published())
		require.Empty(t, indexed(t, f))
	})
	t.Run("an invalid user fails the job with the reason", func(t *testing.T) {
		f := setup(t)
		require.Equal(t, "ack", submit(f, "j1", "a b").settled())
		r := record(t, f, "j1")
		require.Equal(t, jobs.StateFailed, r.State)
		require.Contains(t, r.Reason, "user: must be")
		require.Empty(t, f.b.published())
	})
}

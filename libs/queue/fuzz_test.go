package queue_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue"
)

// FuzzParseSubject checks that ParseSubject accepts only subjects of a
// known role whose parts put back together give the subject, that every
// other subject is ErrInvalidSubject, and that the subjects Subjects
// builds from valid tokens parse back into those tokens.
func FuzzParseSubject(f *testing.F) {
	s := queue.NewSubjects("")
	for _, subject := range []string{
		s.Submit("acme"), s.Jobs("acme", "remote"), s.RunnerControl("acme", "remote", "r1"),
		s.JobStatus("acme", "j1"), s.AllJobLogs("acme"), s.DeadLetter("acme", queue.RoleJobs),
		s.All("acme", queue.RoleWatch), s.WatcherPresence("acme", "eu", "w1"),
		"outpost.acme.nope.x", "outpost..jobs.x", ".acme.jobs", "outpost.acme", "outpost.acme.jobs.",
		"outpost.acme.submit.", "outpost.acme.jobs.a..b", "", "...", "a.b.watch.x.y.z.w",
	} {
		f.Add(subject, "acme", "pool-1")
	}

	f.Fuzz(func(t *testing.T, subject, tenant, key string) {
		p, err := queue.ParseSubject(subject)
		if err != nil {
			require.ErrorIs(t, err, queue.ErrInvalidSubject)
		} else {
			require.True(t, p.Role.Known())
			parts := []string{p.Stack, p.Tenant, string(p.Role)}
			if p.Key != "" {
				parts = append(parts, p.Key)
			}
			require.NotContains(t, strings.Split(subject, "."), "", "no empty token")
			require.Equal(t, subject, strings.Join(parts, "."), "the parts make the subject")
		}

		if !queue.ValidToken(tenant) || !queue.ValidToken(key) {
			return
		}
		for _, tc := range []struct {
			subject string
			role    queue.Role
			key     string
		}{
			{s.Submit(tenant), queue.RoleSubmit, ""},
			{s.Jobs(tenant, key), queue.RoleJobs, key},
			{s.JobStatus(tenant, key), queue.RoleJobEvents, key + ".status"},
			{s.RunnerControl(tenant, key, key), queue.RoleControl, key + "." + key},
			{s.Ops(tenant, key), queue.RoleOps, key},
		} {
			p, err := queue.ParseSubject(tc.subject)
			require.NoError(t, err)
			require.Equal(t, queue.Parsed{Stack: queue.DefaultStack, Tenant: tenant, Role: tc.role, Key: tc.key}, p)
		}
	})
}

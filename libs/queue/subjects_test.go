package queue_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue"
)

func TestSubjects(t *testing.T) {
	s := queue.NewSubjects("")
	cases := []struct {
		name    string
		subject string
		want    string
		role    queue.Role
		key     string
	}{
		{"submit", s.Submit("acme"), "outpost.acme.submit", queue.RoleSubmit, ""},
		{"jobs", s.Jobs("acme", "remote"), "outpost.acme.jobs.remote", queue.RoleJobs, "remote"},
		{"pool control", s.Control("acme", "remote"), "outpost.acme.control.remote", queue.RoleControl, "remote"},
		{"runner control", s.RunnerControl("acme", "remote", "runner-1"), "outpost.acme.control.remote.runner-1", queue.RoleControl, "remote.runner-1"},
		{"job status", s.JobStatus("acme", "j1"), "outpost.acme.job-events.j1.status", queue.RoleJobEvents, "j1.status"},
		{"every job's logs", s.AllJobLogs("acme"), "outpost.acme.job-events.*.logs", queue.RoleJobEvents, "*.logs"},
		{"dead letters", s.DeadLetter("acme", queue.RoleJobs), "outpost.acme.dlq.jobs", queue.RoleDeadLetter, "jobs"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, tc.subject)
			p, err := queue.ParseSubject(tc.subject)
			require.NoError(t, err)
			require.Equal(t, queue.Parsed{Stack: "outpost", Tenant: "acme", Role: tc.role, Key: tc.key}, p)
		})
	}
}

package sqs

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue"
)

// offline builds a broker that is never connected, for tests of the parts
// that make no request.
func offline(t *testing.T, cfg Config) *Broker {
	t.Helper()
	cfg, err := cfg.withDefaults()
	require.NoError(t, err)
	return &Broker{
		cfg:      cfg,
		fifo:     cfg.QueueType == QueueFIFO,
		subjects: queue.NewSubjects(cfg.Stack),
		log:      cfg.Logger,
		metrics:  newMetrics(nil, cfg.Stack),
		queues:   map[string]*queueInfo{},
		sent:     newWindow(cfg.DuplicateWindow),
		handled:  newWindow(cfg.DuplicateWindow),
	}
}

func TestQueueName(t *testing.T) {
	s := queue.NewSubjects("outpost")
	cases := []struct {
		name    string
		cfg     Config
		subject string
		want    string
	}{
		{"submit fifo", Config{}, s.Submit("acme"), "outpost-acme-submit.fifo"},
		{"jobs per pool", Config{}, s.Jobs("acme", "remote"), "outpost-acme-jobs-remote.fifo"},
		{"standard queues", Config{QueueType: QueueStandard}, s.Jobs("acme", "remote"), "outpost-acme-jobs-remote"},
		{"prefix", Config{QueuePrefix: "prod-"}, s.Submit("acme"), "prod-outpost-acme-submit.fifo"},
		{"control per pool", Config{}, s.Control("acme", "remote"), "outpost-acme-control-remote.fifo"},
		{"runners per pool", Config{}, s.Runners("acme", "remote"), "outpost-acme-runners-remote.fifo"},
		{"control per runner: dot becomes a dash", Config{}, s.RunnerControl("acme", "remote", "runner-1"), "outpost-acme-control-remote-runner-1.fifo"},
		{"control per runner, standard", Config{QueueType: QueueStandard}, s.RunnerControl("acme", "remote", "r_2"), "outpost-acme-control-remote-r_2"},
		{"job status: one queue for every job", Config{}, s.JobStatus("acme", "job-123"), "outpost-acme-job-events-status.fifo"},
		{"job logs: one queue for every job", Config{}, s.JobLogs("acme", "job-9"), "outpost-acme-job-events-logs.fifo"},
		{"dead letters per role", Config{}, s.DeadLetter("acme", queue.RoleJobs), "outpost-acme-dlq-jobs.fifo"},
		{"other stack", Config{Stack: "blue"}, queue.NewSubjects("blue").Submit("acme"), "blue-acme-submit.fifo"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := offline(t, tc.cfg).QueueName(tc.subject)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestQueueNameLong(t *testing.T) {
	long := strings.Repeat("t", 64)
	pool := strings.Repeat("p", 64)
	cases := []struct {
		name string
		fifo bool
	}{{"fifo", true}, {"standard", false}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := QueueNameFor("", "outpost", long, queue.RoleJobs, pool, tc.fifo)
			b := QueueNameFor("", "outpost", long, queue.RoleJobs, pool[:63]+"q", tc.fifo)
			require.LessOrEqual(t, len(a), maxQueueName)
			require.LessOrEqual(t, len(b), maxQueueName)
			require.NotEqual(t, a, b, "shortened names stay distinct")
			require.True(t, strings.HasPrefix(a, "outpost-"+long[:20]))
			require.Equal(t, tc.fifo, strings.HasSuffix(a, fifoSuffix))
		})
	}
}

func TestQueueNameInvalid(t *testing.T) {
	b := offline(t, Config{})
	cases := map[string]string{
		"empty":             "",
		"other stack":       "blue.acme.submit",
		"unknown role":      "outpost.acme.bogus.x",
		"submit with key":   "outpost.acme.submit.x",
		"jobs without pool": "outpost.acme.jobs",
		"pool of 2 tokens":  "outpost.acme.jobs.a.b",
		"job event no kind": "outpost.acme.job-events.job-1",
		"dlq of dlq":        "outpost.acme.dlq.dlq",
		"dlq unknown role":  "outpost.acme.dlq.bogus",
		"wildcard":          "outpost.acme.jobs.*",
		"control of 3 keys": "outpost.acme.control.pool.runner.x",
		"control no runner": "outpost.acme.control.pool.",
		"runner bad token":  "outpost.acme.control.pool.r@1",
	}
	for name, subject := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := b.QueueName(subject)
			require.ErrorIs(t, err, queue.ErrInvalidSubject)
		})
	}
}

func TestFilterQueues(t *testing.T) {
	b := offline(t, Config{QueueType: QueueStandard})
	s := b.subjects
	cases := []struct {
		name     string
		filter   string
		want     []string
		discover bool
		err      error
	}{
		{"submit", s.Submit("acme"), []string{"outpost-acme-submit"}, false, nil},
		{"one pool", s.Jobs("acme", "remote"), []string{"outpost-acme-jobs-remote"}, false, nil},
		{"one runner's control", s.RunnerControl("acme", "remote", "r1"), []string{"outpost-acme-control-remote-r1"}, false, nil},
		{"every pool", s.All("acme", queue.RoleJobs), nil, true, nil},
		{"every pool, star", "outpost.acme.jobs.*", nil, true, nil},
		{"every control pool", s.All("acme", queue.RoleControl), nil, true, nil},
		{"all job status", s.AllJobStatus("acme"), []string{"outpost-acme-job-events-status"}, false, nil},
		{"all job events", s.All("acme", queue.RoleJobEvents), []string{"outpost-acme-job-events-status", "outpost-acme-job-events-logs", "outpost-acme-job-events-records"}, true, nil},
		{"dead letters of jobs", s.DeadLetter("acme", queue.RoleJobs), []string{"outpost-acme-dlq-jobs"}, false, nil},
		{"all dead letters", s.All("acme", queue.RoleDeadLetter), []string{
			"outpost-acme-dlq-submit", "outpost-acme-dlq-jobs", "outpost-acme-dlq-job-events", "outpost-acme-dlq-control", "outpost-acme-dlq-runners",
		}, false, nil},
		{"one job's status", s.JobStatus("acme", "job-1"), nil, false, ErrFilterUnsupported},
		{"one job's events", "outpost.acme.job-events.job-1.>", nil, false, ErrFilterUnsupported},
		{"pool prefix wildcard", "outpost.acme.jobs.a.>", nil, false, queue.ErrInvalidSubject},
		{"wildcard tenant", "outpost.*.submit", nil, false, queue.ErrInvalidSubject},
		{"submit wildcard", "outpost.acme.submit.>", nil, false, queue.ErrInvalidSubject},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			set, err := b.filterQueues(tc.filter)
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				if errors.Is(tc.err, ErrFilterUnsupported) {
					require.ErrorIs(t, err, errors.ErrUnsupported)
				}
				return
			}
			require.NoError(t, err)
			var got []string
			for _, id := range set.fixed {
				got = append(got, b.queueName(id))
			}
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.discover, set.discover)
			require.Equal(t, "acme", set.tenant)
		})
	}
}

func TestAccountRolesUnsupported(t *testing.T) {
	b := offline(t, Config{})
	s := queue.NewSubjects("outpost")
	for _, subject := range []string{
		s.Leases("acme", "zone-a"),
		s.Ops("acme", "prod"),
		s.AccountStatus("acme"),
		s.Watch("acme", "prod") + ".configmaps.default.app",
	} {
		t.Run(subject, func(t *testing.T) {
			_, err := b.QueueName(subject)
			require.ErrorIs(t, err, ErrRoleUnsupported)
			require.ErrorIs(t, err, errors.ErrUnsupported)
		})
	}
}

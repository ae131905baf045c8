package natsjs

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue"
)

func TestSplitSubjectMatchesParseSubject(t *testing.T) {
	for _, s := range []string{
		"outpost.acme.submit",
		"outpost.acme.jobs.pool-a",
		"outpost.acme.job-events.j1.status",
		"outpost.acme.dlq.jobs",
		"outpost.acme.jobs.>",
	} {
		p, err := queue.ParseSubject(s)
		require.NoError(t, err, s)
		stack, tenant, role, key, ok := splitSubject(s)
		require.True(t, ok, s)
		require.Equal(t, queue.Parsed{Stack: stack, Tenant: tenant, Role: queue.Role(role), Key: key}, p, s)
	}
	for _, s := range []string{"", "outpost", "outpost.acme", ".acme.submit", "outpost..submit", "outpost.acme."} {
		_, _, _, _, ok := splitSubject(s)
		require.False(t, ok, s)
	}
}

func TestSplitSubjectDoesNotAllocate(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		_, _, _, _, _ = splitSubject("outpost.acme.jobs.pool-a")
	})
	require.Zero(t, allocs)
}

func TestCheckSubject(t *testing.T) {
	c := &Conn{subjects: queue.NewSubjects("outpost")}
	cases := []struct {
		subject string
		filter  bool
		ok      bool
	}{
		{"outpost.acme.submit", false, true},
		{"outpost.acme.jobs.pool-a", false, true},
		{"outpost.acme.job-events.j-1.status", false, true},
		{"outpost.acme.jobs.>", true, true},
		{"outpost.acme.job-events.*.status", true, true},
		{"outpost.acme.jobs.>", false, false},              // no wildcards in a publish
		{"outpost.acme.job-events.*.status", false, false}, // same
		{"outpost.acme.jobs.>.x", true, false},             // '>' must be last
		{"outpost.acme.jobs.a*", true, false},              // wildcard inside a token
		{"outpost.acme.submit.x", false, false},            // submit takes no key
		{"outpost.acme.jobs", false, false},                // jobs needs a pool
		{"outpost.acme.jobs.a..b", false, false},           // empty token
		{"outpost.acme.jobs.a.", false, false},             // trailing dot
		{"outpost.acme.jobs.a b", false, false},            // white space
		{"other.acme.submit", false, false},                // another stack
		{"outpost.*.submit", true, false},                  // wildcard tenant
		{"outpost.ac/me.submit", false, false},             // bad tenant
		{"outpost.acme.bogus.x", false, false},             // unknown role
		{"outpost.acme.jobs.x.y", false, false},            // a pool is one token
		{"outpost.acme.jobs.*.>", true, false},             // nothing reads deeper
		{"outpost.acme.leases.x.y", false, false},          // a zone is one token
		{"outpost.acme.ops.a.b", false, false},             // an account is one token
		{"outpost.acme.dlq.jobs", false, true},
		{"outpost.acme.watch.acct.pods.ns.name", false, true},
		{"outpost.acme.watch.acct.>", true, true},
		{"outpost.acme.watch.acct.pods", false, false}, // an object subject has four key tokens
	}
	for _, tc := range cases {
		_, _, err := c.checkSubject(tc.subject, tc.filter)
		if tc.ok {
			require.NoError(t, err, tc.subject)
		} else {
			require.ErrorIs(t, err, queue.ErrInvalidSubject, tc.subject)
		}
	}
}

func TestStreamNames(t *testing.T) {
	per := &Conn{cfg: Config{Stack: "outpost", Layout: LayoutPerTenant}, prefix: "OUTPOST", subjects: queue.NewSubjects("outpost")}
	require.Equal(t, "OUTPOST_acme_WORK", per.StreamName("acme", queue.RoleSubmit))
	require.Equal(t, "OUTPOST_acme_WORK", per.StreamName("acme", queue.RoleJobs))
	require.Equal(t, "OUTPOST_acme_EVENTS", per.StreamName("acme", queue.RoleJobEvents))
	require.Equal(t, "OUTPOST_acme_EVENTS", per.StreamName("acme", queue.RoleControl))
	require.Equal(t, "OUTPOST_acme_EVENTS", per.StreamName("acme", queue.RoleRunners))
	require.Equal(t, "OUTPOST_acme_DLQ", per.StreamName("acme", queue.RoleDeadLetter))

	work := per.streamConfig("acme", kindWork, queue.TenantLimits{MaxBytes: 1 << 20, MaxMessages: 10})
	require.Equal(t, []string{"outpost.acme.submit", "outpost.acme.jobs.*"}, work.Subjects)
	require.EqualValues(t, 1<<20, work.MaxBytes)
	require.EqualValues(t, 10, work.MaxMsgs)
	events := per.streamConfig("acme", kindEvents, queue.TenantLimits{})
	require.Equal(t, []string{"outpost.acme.job-events.>", "outpost.acme.control.>", "outpost.acme.runners.>", "outpost.acme.audit.>", "outpost.acme.instances.>"}, events.Subjects)
	require.EqualValues(t, -1, events.MaxBytes)
	require.Equal(t, "OUTPOST_acme_ACCOUNT_WORK", per.StreamName("acme", queue.RoleLeases))
	require.Equal(t, "OUTPOST_acme_ACCOUNT_WORK", per.StreamName("acme", queue.RoleOps))
	require.Equal(t, "OUTPOST_acme_ACCOUNT_EVENTS", per.StreamName("acme", queue.RoleAccounts))
	require.Equal(t, "OUTPOST_acme_WATCH", per.StreamName("acme", queue.RoleWatch))
	aw := per.streamConfig("acme", kindAccountWork, queue.TenantLimits{})
	require.Equal(t, []string{"outpost.acme.leases.*", "outpost.acme.ops.*"}, aw.Subjects)
	require.Equal(t, jetstream.WorkQueuePolicy, aw.Retention)
	require.Equal(t, []string{"outpost.acme.accounts.>"}, per.streamConfig("acme", kindAccountEvents, queue.TenantLimits{}).Subjects)

	shared := &Conn{cfg: Config{Stack: "outpost", Layout: LayoutShared}, prefix: "OUTPOST", subjects: queue.NewSubjects("outpost")}
	require.Equal(t, "OUTPOST_WORK", shared.StreamName("acme", queue.RoleJobs))
	sw := shared.streamConfig("acme", kindWork, queue.TenantLimits{MaxMessages: 10})
	require.Equal(t, []string{"outpost.*.submit", "outpost.*.jobs.*"}, sw.Subjects)
	require.EqualValues(t, -1, sw.MaxMsgs, "limits are not applied to shared streams")
	require.Equal(t, []string{"outpost.*.dlq.>"}, shared.streamConfig("", kindDLQ, queue.TenantLimits{}).Subjects)
	watch := per.streamConfig("acme", kindWatch, queue.TenantLimits{})
	require.Equal(t, []string{"outpost.acme.watch.*.*.*.*"}, watch.Subjects)
	require.Equal(t, int64(1), watch.MaxMsgsPerSubject, "the watch stream keeps the last state of each object")
	require.Zero(t, watch.MaxAge)
}

func TestSanitizeAndConsumerName(t *testing.T) {
	require.Equal(t, "a_b_c-d", sanitizeName("a.b c-d"))
	require.Equal(t, "ok_name-1", sanitizeName("ok_name-1"))

	a := ConsumerName("runner remote", "outpost.acme.jobs.pool-a")
	b := ConsumerName("runner remote", "outpost.acme.jobs.pool-b")
	require.NotEqual(t, a, b, "same name on another subject is another consumer")
	require.Equal(t, a, ConsumerName("runner remote", "outpost.acme.jobs.pool-a"), "stable")
	require.Regexp(t, `^runner_remote_acme_jobs_[0-9a-f]+$`, a)
	long := ConsumerName(string(make([]byte, 500)), "outpost.acme.jobs.>")
	require.LessOrEqual(t, len(long), 255)
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := Config{}.withDefaults()
	require.NoError(t, err)
	require.Equal(t, "outpost", cfg.Stack)
	require.Equal(t, LayoutPerTenant, cfg.Layout)
	require.Equal(t, 1, cfg.Replicas)
	require.Equal(t, DefaultEventsMaxAge, cfg.EventsMaxAge)
	require.Equal(t, DefaultDuplicateWindow, cfg.DuplicateWindow)

	for _, bad := range []Config{{Stack: "a.b"}, {Replicas: 2}, {Layout: "mixed"}, {MaxPayload: -1}} {
		_, err := bad.withDefaults()
		require.Error(t, err, "%+v", bad)
	}
}

func TestSubjectMatches(t *testing.T) {
	for _, c := range []struct {
		pattern, subject string
		want             bool
	}{
		{"a.b", "a.b", true},
		{"a.b", "a.c", false},
		{"a.*", "a.b", true},
		{"a.*", "a.b.c", false},
		{"a.>", "a.b.c", true},
		{"a.>", "a", false},
		{"$JS.API.CONSUMER.MSG.NEXT.S.*", "$JS.API.CONSUMER.MSG.NEXT.S.c", true},
		{"a.b.c", "a.b", false},
	} {
		t.Run(c.pattern+" "+c.subject, func(t *testing.T) {
			require.Equal(t, c.want, subjectMatches(c.pattern, c.subject))
		})
	}
}

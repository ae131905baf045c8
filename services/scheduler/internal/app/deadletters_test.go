package app_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/config"
)

// deadLetterView is the part of a dead letter the tests look at.
type deadLetterView struct {
	ID                string            `json:"id"`
	Tenant            string            `json:"tenant"`
	Role              string            `json:"role"`
	Subject           string            `json:"subject"`
	DeadLetterSubject string            `json:"dead_letter_subject"`
	Type              string            `json:"type"`
	Reason            string            `json:"reason"`
	ReasonClass       string            `json:"reason_class"`
	Attempts          int               `json:"attempts"`
	FirstTime         time.Time         `json:"first_time"`
	LastTime          time.Time         `json:"last_time"`
	Size              int               `json:"size"`
	Direct            bool              `json:"published_directly"`
	Replays           int               `json:"replays"`
	Headers           map[string]string `json:"headers"`
	Data              []byte            `json:"data"`
	ReplayHistory     []struct {
		At       time.Time `json:"at"`
		DedupeID string    `json:"dedupe_id"`
		Subject  string    `json:"subject"`
	} `json:"replay_history"`
}

type deadLetterList struct {
	DeadLetters []deadLetterView `json:"deadletters"`
	Next        string           `json:"next"`
}

func (e *env) deadLetters(tenant, query string) deadLetterList {
	e.t.Helper()
	code, out := e.do("GET", "/api/v1/deadletters"+query, tenant, nil)
	require.Equal(e.t, http.StatusOK, code, string(out))
	return decode[deadLetterList](e.t, out)
}

// A submission that decodes but keeps failing (its pool's record in the
// store is corrupt) is dead-lettered after max deliveries with the reason,
// is listed, is replayed once the cause is gone and runs, and is purged.
func TestDeadLetterReplayEndToEnd(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Consumers.MaxDeliveries = 3 })
	r := e.runner("default", "gpu")
	pools, err := e.conn.OpenStore(e.ctx, "pools_default")
	require.NoError(t, err)
	_, err = pools.Create(e.ctx, "gpu", []byte("{not json"))
	require.NoError(t, err)

	spec := &jobsv1.JobSpec{Pool: "gpu", Task: &jobsv1.Task{Kind: &jobsv1.Task_Noop{Noop: &jobsv1.NoopTask{Sleep: durationpb.New(time.Millisecond)}}}}
	submit := e.subjects.Submit("default")
	e.publish(submit, &jobsv1.SubmitJob{Envelope: events.NewEnvelope("default", 0, "", ""), JobId: "stuck-1", Spec: spec}, "submit/stuck-1")

	var dl deadLetterView
	require.Eventually(t, func() bool {
		l := e.deadLetters("", "")
		if len(l.DeadLetters) != 1 {
			return false
		}
		dl = l.DeadLetters[0]
		return true
	}, waitFor, tick, "dead-lettered after 3 deliveries")
	require.Equal(t, "default", dl.Tenant)
	require.Equal(t, "submit", dl.Role)
	require.Equal(t, submit, dl.Subject)
	require.Equal(t, e.subjects.DeadLetter("default", queue.RoleSubmit), dl.DeadLetterSubject)
	require.Equal(t, events.TypeName(&jobsv1.SubmitJob{}), dl.Type)
	require.Equal(t, "max deliveries (3) exceeded", dl.Reason)
	require.Equal(t, queue.ClassMaxDeliveries, dl.ReasonClass)
	require.Equal(t, 3, dl.Attempts)
	require.Positive(t, dl.Size)
	require.False(t, dl.FirstTime.After(dl.LastTime))
	require.Zero(t, dl.Replays)
	require.Eventually(t, func() bool {
		return e.metric("outpost_dead_letters_total", map[string]string{"role": "submit", "reason": queue.ClassMaxDeliveries}) == 1
	}, waitFor, tick)
	code, out := e.do("GET", "/api/v1/jobs/stuck-1", "", nil)
	require.Equal(t, http.StatusNotFound, code, string(out))

	// The other tenant does not see it; filters and pages.
	require.Empty(t, e.deadLetters("acme", "").DeadLetters)
	require.Empty(t, e.deadLetters("", "?role=jobs").DeadLetters)
	require.Len(t, e.deadLetters("", "?role=submit&limit=1").DeadLetters, 1)
	for _, q := range []string{"?limit=0", "?limit=100000", "?role=a.b", "?after=x"} {
		code, out := e.do("GET", "/api/v1/deadletters"+q, "", nil)
		require.Equal(t, http.StatusBadRequest, code, q+": "+string(out))
	}
	code, out = e.do("GET", "/api/v1/deadletters/"+dl.ID, "acme", nil)
	require.Equal(t, http.StatusNotFound, code, string(out))
	one := e.deadLetter("", dl.ID)
	require.Equal(t, dl.ID, one.ID)
	require.NotEmpty(t, one.Data)
	require.Equal(t, dl.Reason, one.Headers[queue.HeaderDeadLetterReason])

	// Replayed while the cause is still there, it fails again and comes
	// back as a new dead letter: the loop is bounded.
	code, out = e.do("POST", "/api/v1/deadletters/"+dl.ID+"/replay", "", nil)
	require.Equal(t, http.StatusOK, code, string(out))
	var again deadLetterView
	require.Eventually(t, func() bool {
		l := e.deadLetters("", "")
		if len(l.DeadLetters) != 2 {
			return false
		}
		again = l.DeadLetters[1]
		return true
	}, waitFor, tick)
	require.Equal(t, "max deliveries (3) exceeded", again.Reason)
	require.Equal(t, 1, e.deadLetter("", dl.ID).Replays, "the replay is recorded on the entry")
	require.Equal(t, dl.ID, e.deadLetter("", again.ID).Headers[queue.HeaderReplayOf])

	// The cause is gone; the next replay, with a new dedupe id, runs the job.
	require.NoError(t, pools.Delete(e.ctx, "gpu", 0))
	code, out = e.do("POST", "/api/v1/deadletters/"+dl.ID+"/replay", "", nil)
	require.Equal(t, http.StatusOK, code, string(out))
	replayed := decode[deadLetterView](t, out)
	require.Equal(t, 2, replayed.Replays)
	require.Len(t, replayed.ReplayHistory, 2)
	require.Equal(t, "replay/"+dl.ID+"/2", replayed.ReplayHistory[1].DedupeID)
	require.Equal(t, submit, replayed.ReplayHistory[1].Subject)
	_, m := r.next(t)
	require.Equal(t, "stuck-1", m.JobId)
	require.Equal(t, "QUEUED", e.waitState("default", "stuck-1", "QUEUED").State)
	require.Equal(t, 2.0, e.metric("outpost_dead_letter_replays_total", map[string]string{"role": "submit"}))

	// Purged.
	code, out = e.do("DELETE", "/api/v1/deadletters/"+dl.ID, "", nil)
	require.Equal(t, http.StatusNoContent, code, string(out))
	code, _ = e.do("GET", "/api/v1/deadletters/"+dl.ID, "", nil)
	require.Equal(t, http.StatusNotFound, code)
	code, _ = e.do("DELETE", "/api/v1/deadletters/"+dl.ID, "", nil)
	require.Equal(t, http.StatusNotFound, code)
	code, _ = e.do("POST", "/api/v1/deadletters/"+dl.ID+"/replay", "", nil)
	require.Equal(t, http.StatusNotFound, code)
	require.Equal(t, []string{again.ID}, ids(e.deadLetters("", "").DeadLetters))
	code, _ = e.do("DELETE", "/api/v1/deadletters/"+again.ID, "", nil)
	require.Equal(t, http.StatusNoContent, code)
	require.Empty(t, e.deadLetters("", "").DeadLetters)
}

func ids(ds []deadLetterView) []string {
	out := make([]string, 0, len(ds))
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return out
}

// Garbage published straight onto a dead-letter subject is listed with a
// reason, counted, and cannot be replayed (it has no original subject);
// one whose headers name another tenant's subject is not replayed there.
func TestDeadLetterPublishedDirectly(t *testing.T) {
	e := newEnv(t)
	require.NoError(t, e.conn.Publish(e.ctx, queue.Message{Subject: e.subjects.DeadLetter("default", queue.RoleJobs), Data: []byte{0xde, 0xad}}))
	require.NoError(t, e.conn.Publish(e.ctx, queue.Message{Subject: e.subjects.DeadLetter("default", "no-such-role"), Data: []byte("x")}))
	require.NoError(t, e.conn.Publish(e.ctx, queue.Message{
		Subject: e.subjects.DeadLetter("default", queue.RoleJobs), Data: []byte("y"),
		Header: map[string]string{
			queue.HeaderDeadLetterReason:  "forged",
			queue.HeaderDeadLetterSubject: e.subjects.Jobs("acme", "default"),
		},
	}))
	var l deadLetterList
	require.Eventually(t, func() bool {
		l = e.deadLetters("", "")
		return len(l.DeadLetters) == 3
	}, waitFor, tick)
	for i, role := range []string{"jobs", "unknown"} {
		d := l.DeadLetters[i]
		require.True(t, d.Direct)
		require.Equal(t, queue.ReasonPublishedDirectly, d.Reason)
		require.Equal(t, queue.ClassDirect, d.ReasonClass)
		require.Equal(t, role, d.Role, "an unknown role is not a metric label")
		require.Empty(t, d.Subject)
		code, out := e.do("POST", "/api/v1/deadletters/"+d.ID+"/replay", "", nil)
		require.Equal(t, http.StatusConflict, code, string(out))
		require.Contains(t, string(out), "published directly")
	}
	code, out := e.do("POST", "/api/v1/deadletters/"+l.DeadLetters[2].ID+"/replay", "", nil)
	require.Equal(t, http.StatusConflict, code, string(out))
	require.Contains(t, string(out), "not a subject of tenant")
	require.Eventually(t, func() bool {
		return e.metric("outpost_dead_letters_total", map[string]string{"role": "jobs", "reason": queue.ClassDirect}) == 1 &&
			e.metric("outpost_dead_letters_total", map[string]string{"role": "unknown", "reason": queue.ClassDirect}) == 1
	}, waitFor, tick)
	code, out = e.do("GET", "/api/v1/deadletters/999999", "", nil)
	require.Equal(t, http.StatusNotFound, code, string(out))
	require.Contains(t, string(out), "999999")
}

func (e *env) deadLetter(tenant, id string) deadLetterView {
	e.t.Helper()
	code, out := e.do("GET", "/api/v1/deadletters/"+id, tenant, nil)
	require.Equal(e.t, http.StatusOK, code, string(out))
	return decode[deadLetterView](e.t, out)
}

// A dead-lettered dispatch fails its job; replaying the dispatch would only
// have the runner fenced, so the API refuses it and says what to do.
func TestDeadLetteredDispatchIsNotReplayed(t *testing.T) {
	e := newEnv(t)
	r := e.runner("default", "default")
	j := e.submit("", noopJob(nil))
	d, _ := r.next(t)
	require.NoError(t, d.Term(e.ctx, "attempt 4 exceeds max_attempts 3"))
	e.waitState("default", j.ID, "FAILED")
	l := e.deadLetters("", "?role=jobs")
	require.Len(t, l.DeadLetters, 1)
	dl := l.DeadLetters[0]
	require.Equal(t, queue.ClassRejected, dl.ReasonClass)
	require.Equal(t, 1, dl.Attempts)
	code, out := e.do("POST", "/api/v1/deadletters/"+dl.ID+"/replay", "", nil)
	require.Equal(t, http.StatusConflict, code, string(out))
	require.Contains(t, string(out), "POST /api/v1/jobs")
	r.requireEmpty(t)
	require.Eventually(t, func() bool {
		return e.metric("outpost_dead_letters_total", map[string]string{"role": "jobs", "reason": queue.ClassRejected}) == 1
	}, waitFor, tick)
}

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/natsauth"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/natsjs"
	"github.com/outposthq/outpost/tests/harness"
)

// TestAgentCredentials runs the full stack on one broker node and on a
// 3-node cluster, both in operator mode. A runner whose credentials the
// control plane issued (POST /api/v1/agents) for tenant a, pool p runs a's
// jobs; with the same credentials every reach into tenant b, into another
// pool, or (with a watcher's) into job subjects is a permissions
// violation, and b's queued job is untouched until b's own runner takes
// it. Revoking the runner (DELETE /api/v1/agents/{id}) cuts it off within
// seconds: it is no longer ready and takes no more of the pool's jobs.
// Anonymous and foreign credentials are refused by every node.
func TestAgentCredentials(t *testing.T) {
	for _, nodes := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d nodes", nodes), func(t *testing.T) { agentCredentials(t, nodes) })
	}
}

func agentCredentials(t *testing.T, nodes int) {
	s := harness.StartStack(t, harness.StackOptions{
		Tenant: "a", Pool: "p", Nodes: nodes, RunnerEnv: runnerEnv,
		SchedulerEnv: map[string]string{"OUTPOST_TENANTS": "a,b"},
	})
	ca, cb := s.TenantClient("a"), s.TenantClient("b")
	subj := queue.NewSubjects("")

	t.Run("anonymous and foreign credentials are refused", func(t *testing.T) {
		foreign, err := natsauth.Open(t.TempDir())
		require.NoError(t, err)
		foreignCreds := filepath.Join(t.TempDir(), "foreign.creds")
		_, err = foreign.WriteCredentials(foreignCreds, "foreign", natsauth.Scope{Role: natsauth.RoleScheduler}, time.Hour)
		require.NoError(t, err)
		for _, url := range strings.Split(s.BrokerURL, ",") {
			_, err := nats.Connect(url, nats.NoReconnect())
			require.ErrorIs(t, err, nats.ErrAuthorization, "anonymous at %s", url)
			_, err = harness.Dial(url, foreignCreds, nats.NoReconnect())
			require.ErrorIs(t, err, nats.ErrAuthorization, "foreign credentials at %s", url)
		}
	})

	runnerA := s.StartRunner("runner-a", nil)
	require.NotNil(t, runnerA.Agent)
	require.Equal(t, "a", runnerA.Agent.Tenant)
	require.Equal(t, "p", runnerA.Agent.Pool)
	jobA := ca.Submit(harness.Command("p", "echo", "from-a"))
	done := ca.WaitTerminal(jobA.ID, time.Minute)
	require.Equal(t, "SUCCEEDED", done.State, done.String())
	require.Equal(t, "runner-a", done.RunnerID)
	jobB := cb.Submit(harness.Command("p", "echo", "from-b"))
	bJobs := subj.Jobs("b", "p")
	observer := s.NATS.Observer()
	require.Eventually(t, func() bool {
		n, err := pending(observer, bJobs)
		return err == nil && n == 1
	}, 30*time.Second, 50*time.Millisecond, "b's job never reached b's queue")

	t.Run("a runner of a cannot reach b or another pool", func(t *testing.T) {
		r := s.NATS.Dial(runnerA.Agent.File)
		bWork := natsjs.StreamNameFor("", "", "b", queue.RoleJobs)
		bCons := natsjs.ConsumerName("runners-p", bJobs)
		attempts := []struct {
			name, subject string
			do            func() error
		}{
			{"subscribe to b's jobs", bJobs, func() error { _, err := r.SubscribeSync(bJobs); return err }},
			{"subscribe to b's job events", subj.AllJobStatus("b"), func() error { _, err := r.SubscribeSync(subj.AllJobStatus("b")); return err }},
			{"publish to b's jobs", bJobs, func() error { return r.Publish(bJobs, []byte("forged")) }},
			{"publish b's job status", subj.JobStatus("b", jobB.ID), func() error { return r.Publish(subj.JobStatus("b", jobB.ID), []byte("forged")) }},
			{"publish to pool q", subj.Jobs("a", "q"), func() error { return r.Publish(subj.Jobs("a", "q"), []byte("forged")) }},
			{"create a consumer on b's jobs", "$JS.API.CONSUMER.CREATE." + bWork, func() error {
				return r.PublishRequest("$JS.API.CONSUMER.CREATE."+bWork+"."+bCons+"."+bJobs, r.NewRespInbox(), []byte(`{}`))
			}},
			{"pull from b's runners", "$JS.API.CONSUMER.MSG.NEXT." + bWork, func() error {
				return r.PublishRequest("$JS.API.CONSUMER.MSG.NEXT."+bWork+"."+bCons, r.NewRespInbox(), []byte(`{"batch":1}`))
			}},
			{"read b's stream", "$JS.API.STREAM.MSG.GET." + bWork, func() error {
				return r.PublishRequest("$JS.API.STREAM.MSG.GET."+bWork, r.NewRespInbox(), []byte(`{"seq":1}`))
			}},
		}
		for _, a := range attempts {
			t.Run(a.name, func(t *testing.T) {
				require.NoError(t, a.do())
				require.NoError(t, r.Flush())
				r.WaitViolated(t, a.subject)
			})
		}
	})

	t.Run("a watcher of a cannot reach job subjects", func(t *testing.T) {
		w := s.NATS.Dial(s.IssueAgent(harness.AgentRequest{Role: "watcher", Tenant: "a", Zone: "z", Name: "watcher-a"}).File)
		aJobs := subj.Jobs("a", "p")
		for _, subject := range []string{aJobs, subj.JobStatus("a", jobA.ID), subj.Submit("a")} {
			require.NoError(t, w.Publish(subject, []byte("forged")))
			require.NoError(t, w.Flush())
			w.WaitViolated(t, subject)
		}
		_, err := w.SubscribeSync(aJobs)
		require.NoError(t, err)
		w.WaitViolated(t, "Subscription to \""+aJobs)
	})

	// b's job was not touched: still queued, its message still on b's
	// queue, until b's own runner runs it.
	got := cb.Get(jobB.ID)
	require.Equal(t, "QUEUED", got.State, got.String())
	n, err := pending(observer, bJobs)
	require.NoError(t, err)
	require.Equal(t, uint64(1), n, "b's queue")
	s.StartRunner("runner-b", map[string]string{"OUTPOST_TENANT": "b"})
	done = cb.WaitTerminal(jobB.ID, time.Minute)
	require.Equal(t, "SUCCEEDED", done.State, done.String())
	require.Equal(t, "runner-b", done.RunnerID)

	t.Run("a revoked runner is cut off", func(t *testing.T) {
		s.RevokeAgent(runnerA.Agent.ID)
		revoked := time.Now()
		require.Eventually(t, func() bool { return !ready(runnerA) }, 15*time.Second, 50*time.Millisecond,
			"runner-a is still ready after its credentials were revoked")
		t.Logf("runner-a not ready %s after the revocation", time.Since(revoked).Round(time.Millisecond))
		for _, url := range strings.Split(s.BrokerURL, ",") {
			_, err := harness.Dial(url, runnerA.Agent.File, nats.NoReconnect())
			require.ErrorIs(t, err, nats.ErrAuthorization, "revoked credentials at %s", url)
		}
		// The pool's next job is not taken by runner-a; a runner with
		// credentials of its own runs it.
		next := ca.Submit(harness.Command("p", "echo", "after-revocation"))
		require.Never(t, func() bool { return ca.Get(next.ID).State != "QUEUED" }, 2*time.Second, 100*time.Millisecond,
			"the job left the queue with no runner of the pool connected")
		s.StartRunner("runner-a2", nil)
		done := ca.WaitTerminal(next.ID, time.Minute)
		require.Equal(t, "SUCCEEDED", done.State, done.String())
		require.Equal(t, "runner-a2", done.RunnerID)
	})
}

// ready reports whether a runner answers 200 on /readyz; one that exited
// is not ready.
func ready(p *harness.Process) bool {
	if p.Proc.Exited() {
		return false
	}
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(p.Ops + "/readyz")
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// pending counts the messages stored on one subject of a work stream.
func pending(c *harness.BrokerConn, subject string) (uint64, error) {
	js, err := jetstream.New(c.Conn)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	name, err := js.StreamNameBySubject(ctx, subject)
	if err != nil {
		return 0, err
	}
	stream, err := js.Stream(ctx, name)
	if err != nil {
		return 0, err
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return 0, err
	}
	return info.State.Subjects[subject], nil
}

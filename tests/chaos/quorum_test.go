package chaos

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/tests/harness"
)

// status is the answer of one GET or POST, 0 for a transport error.
func status(c *harness.Client, method, path string, body any) (int, string) {
	code, data, err := c.Try(method, path, body)
	if err != nil {
		return 0, err.Error()
	}
	return code, string(data)
}

// A cluster that loses two of its three nodes has no quorum: the services
// say so on /readyz (natsjs asks JetStream itself, not just the node the
// connection holds) and refuse submissions with 503, and once the nodes
// are back every job submitted before and after ends.
func TestClusterQuorumLoss(t *testing.T) {
	sys := cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	before := &Submitter{Client: sys.client, Prefix: "before"}
	before.Run(ctx, 10, time.Second)
	require.Len(t, before.Accepted, 10)

	sys.brokers[1].Kill()
	sys.brokers[2].Kill()
	api := sys.client.Base
	var lastReady, lastSubmit int
	var lastBody string
	require.Eventually(t, func() bool {
		lastReady, _ = status(sys.client, http.MethodGet, "/readyz", nil)
		return lastReady == http.StatusServiceUnavailable
	}, time.Minute, 100*time.Millisecond, "the scheduler at %s stays ready without quorum", api)
	require.Eventually(t, func() bool {
		lastSubmit, lastBody = status(sys.client, http.MethodPost, "/api/v1/jobs", noopJob("during-outage"))
		return lastSubmit == http.StatusServiceUnavailable
	}, time.Minute, 100*time.Millisecond, "a submission without quorum is not refused with 503: last %d %s", lastSubmit, lastBody)
	t.Logf("without quorum: readyz %d, submit %d %s", lastReady, lastSubmit, lastBody)

	sys.brokers[1].Restart()
	sys.brokers[2].Restart()
	for _, u := range sys.readyz {
		harness.WaitReady(t, u, readyTimeout)
	}
	after := &Submitter{Client: sys.client, Prefix: "after"}
	after.Run(ctx, 10, time.Second)
	_, pending := Drain(sys.client, 2*time.Minute)
	require.Zero(t, pending)
	ids := append(append([]string{}, before.Accepted...), after.Accepted...)
	records, err := Records(sys.client, ids)
	require.NoError(t, err)
	reports, err := ReadStatusStream(ctx, sys.broker.URL, tenant, sys.broker.ObserverCreds())
	require.NoError(t, err)
	o := Check(ids, records, reports, maxDeliveries)
	require.Empty(t, o.Lost)
	require.Empty(t, o.Double)
	require.Empty(t, o.Inconsistent)
}

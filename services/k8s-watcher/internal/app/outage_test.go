package app

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	watchv1 "github.com/outposthq/outpost/proto/outpost/watch/v1"
)

var publishErrors = regexp.MustCompile(`(?m)^outpost_watcher_publish_errors_total (\S+)$`)

// metric reads the watcher's publish error counter from /metrics, -1 when
// it cannot.
func metric(opsAddr string) float64 {
	resp, err := http.Get("http://" + opsAddr + "/metrics") //nolint:noctx // short-lived test probe
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return -1
	}
	m := publishErrors.FindSubmatch(body)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		return -1
	}
	return v
}

// TestBrokerOutageLosesNothing changes the cluster while the broker is
// down: the publishes fail, are retried, and land once it is back. The
// outage is shorter than the lease's ack wait, so the watcher keeps the
// account through it (a longer one gives the account up to whichever
// replica the broker hands the lapsed lease to, see
// TestPausedWatcherLeavesItsSuccessorAlone).
func TestBrokerOutageLosesNothing(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(t)
	cfg.LeaseAckWait = time.Minute
	e.start(t, cfg)
	ns := e.kc.CreateNamespace(t)
	e.activated(t, e.spec("outage", ns), 1)

	e.srv.Shutdown()
	_, err := e.kc.Client().CoreV1().ConfigMaps(ns).Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "during"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return metric(cfg.OpsAddr) > 0 }, waitFor, poll, "the publish failed while the broker was down")
	require.NoError(t, e.srv.Restart())

	e.waitDelta(t, "outage", "configmaps", ns, "during", func(d *watchv1.ObjectDelta, _ map[string]string) bool {
		return d.GetType() == watchv1.ObjectDelta_TYPE_ADDED
	})
}

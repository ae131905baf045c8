//go:build bench

package bench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/outposthq/outpost/libs/inventory"
	"github.com/outposthq/outpost/libs/kubetest"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/tests/harness"
)

// TestWatchInventory puts 10,000 ConfigMaps in a real apiserver and
// measures, in the same run:
//   - a raw client-go list+watch (a dynamic informer) until it has them all;
//   - an account activated through the account-migrator until the watcher
//     has streamed them all into the compacted inventory;
//   - create → delta visible on the broker, one ConfigMap at a time;
//   - the watcher's resident memory before and after.
func TestWatchInventory(t *testing.T) {
	n := 10000
	if v := os.Getenv("OUTPOST_BENCH_CONFIGMAPS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	kc := kubetest.Shared(t)
	ctx := context.Background()
	ns := kc.CreateNamespace(t)
	createConfigMaps(t, kc, ns, "cm", n)

	// Raw: what any client-go program pays to hold the same objects.
	gvr := schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	start := time.Now()
	factory := dynamicinformer.NewFilteredDynamicSharedInformerFactory(kc.Dynamic(), 0, ns, nil)
	informer := factory.ForResource(gvr).Informer()
	stop := make(chan struct{})
	factory.Start(stop)
	require.True(t, cache.WaitForCacheSync(stop, informer.HasSynced))
	raw := time.Since(start)
	require.Len(t, informer.GetStore().List(), n)
	close(stop)
	factory.Shutdown()
	record("raw_list_watch_sync_s", raw.Seconds())

	p := harness.StartPlane(t, harness.PlaneOptions{Tenant: benchTenant})
	w := p.StartWatcher("bench-watcher", "bench", kc.Kubeconfig, nil)
	baseRSS := rssBytes(t, w.Pid())
	// The control plane's credentials: they may read the inventory.
	nc := p.NATS.Observer()
	js, err := jetstream.New(nc.Conn)
	require.NoError(t, err)

	c := p.Client()
	start = time.Now()
	code, body := c.Do(http.MethodPost, "/api/v1/accounts", []map[string]any{
		{"name": "bench", "state": "ACTIVE", "zoneId": "bench", "serviceAccount": true, "kinds": []string{"ConfigMap"}, "namespaces": []string{ns}},
	})
	require.Equal(t, http.StatusOK, code, "%s", body)
	filter := inventory.Filter(queue.NewSubjects(""), benchTenant, "bench", "configmaps", ns, false)
	require.Eventually(t, func() bool { return inventoryCount(ctx, js, filter) >= n }, 5*time.Minute, 20*time.Millisecond)
	synced := time.Since(start)
	record("watch_sync_s", synced.Seconds())
	record("watch_objects", float64(n))
	syncedRSS := rssBytes(t, w.Pid())
	record("watch_watcher_rss_mib_per_10k_objects", float64(syncedRSS-baseRSS)/(1<<20)*10000/float64(n))
	record("watch_watcher_rss_mib", float64(syncedRSS)/(1<<20))

	// The watcher publishes while its informers list, before it reports
	// ACTIVATED with the kinds it watches: the inventory can be full
	// before the account-migrator knows which kinds the account has.
	c.WaitAccountState("bench", "ACTIVE", time.Minute)
	start = time.Now()
	objs, err := c.Objects("bench", "kind=configmaps&namespace="+ns)
	require.NoError(t, err)
	require.Len(t, objs, n)
	record("watch_inventory_list_10k_s", time.Since(start).Seconds())
	// The same once the first sync has returned (the account is ACTIVE
	// and its inventory listed): what the watcher keeps, without the
	// transient of its first list.
	settledRSS := rssBytes(t, w.Pid())
	record("watch_watcher_settled_rss_mib_per_10k_objects", float64(settledRSS-baseRSS)/(1<<20)*10000/float64(n))

	// Latency: one create at a time, time until its delta is on the broker
	// (read from the stream: the control plane's credentials subscribe to
	// their own inbox only).
	seen := make(chan string, 16)
	follow, err := js.OrderedConsumer(ctx, "OUTPOST_"+benchTenant+"_WATCH", jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverNewPolicy,
	})
	require.NoError(t, err)
	cc, err := follow.Consume(func(m jetstream.Msg) {
		if k, err := inventory.ParseSubject(m.Subject()); err == nil && strings.HasPrefix(k.Name, "lat-") {
			seen <- k.Name
		}
	})
	require.NoError(t, err)
	defer cc.Stop()
	const samples = 300
	lat := make([]time.Duration, 0, samples)
	measured := map[string]bool{}
	for i := range samples {
		name := fmt.Sprintf("lat-%d", i)
		t0 := time.Now()
		_, err := kc.Client().CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"i": strconv.Itoa(i)},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		// A later delta of an earlier object (the watcher publishes an
		// object again when it re-lists) is not this create's.
		timeout := time.After(10 * time.Second)
		for arrived := false; !arrived; {
			select {
			case got := <-seen:
				if got == name {
					arrived = true
					lat = append(lat, time.Since(t0))
					continue
				}
				require.True(t, measured[got], "a delta of %s arrived while waiting for %s", got, name)
			case <-timeout:
				t.Fatalf("the delta of %s never arrived", name)
			}
		}
		measured[name] = true
	}
	record("watch_create_to_delta_p50_ms", ms(percentile(lat, 50)))
	record("watch_create_to_delta_p99_ms", ms(percentile(lat, 99)))
	note("watch", fmt.Sprintf("%d ConfigMaps in one namespace; raw = client-go dynamic informer list+watch to synced; watch_sync = POST of an ACTIVE account to every object in the compacted inventory stream; latency = create returned to delta received on the broker, %d creates one at a time", n, samples))
}

// createConfigMaps creates n small ConfigMaps with a few parallel writers.
func createConfigMaps(t *testing.T, kc *kubetest.Cluster, ns, prefix string, n int) {
	t.Helper()
	var g errgroup.Group
	g.SetLimit(8)
	client := kc.Client()
	for i := range n {
		g.Go(func() error {
			_, err := client.CoreV1().ConfigMaps(ns).Create(context.Background(), &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%05d", prefix, i), Labels: map[string]string{"bench": "watch"}},
				Data:       map[string]string{"index": strconv.Itoa(i), "payload": strings.Repeat("x", 200)},
			}, metav1.CreateOptions{})
			return err
		})
	}
	require.NoError(t, g.Wait())
}

var inventoryConsumers sync.Map // filter → jetstream.Consumer

// inventoryCount is how many objects the inventory stream holds under
// filter: the pending count of a consumer that never fetches (the stream
// keeps one message per object).
func inventoryCount(ctx context.Context, js jetstream.JetStream, filter string) int {
	c, ok := inventoryConsumers.Load(filter)
	if !ok {
		cons, err := js.CreateOrUpdateConsumer(ctx, "OUTPOST_"+benchTenant+"_WATCH", jetstream.ConsumerConfig{
			FilterSubject: filter, AckPolicy: jetstream.AckNonePolicy, InactiveThreshold: time.Minute,
		})
		if err != nil {
			return 0
		}
		inventoryConsumers.Store(filter, cons)
		c = cons
	}
	info, err := c.(jetstream.Consumer).Info(ctx)
	if err != nil {
		return 0
	}
	return int(info.NumPending)
}

// rssBytes is the resident set size of a process, from /proc.
func rssBytes(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS for pid %d", pid)
	return 0
}

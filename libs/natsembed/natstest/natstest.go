// Package natstest is the project's shared in-process JetStream harness:
// one node or a cluster on loopback, random ports, a temporary data folder,
// everything stopped when the test ends.
//
//	srv := natstest.RunServer(t)
//	conn, err := natsjs.Connect(ctx, natsjs.Config{URL: srv.ClientURL()})
//
//	nodes := natstest.RunCluster(t, 3)
//	conn, err := natsjs.Connect(ctx, natsjs.Config{URL: natstest.URL(nodes...), Replicas: 3})
package natstest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outposthq/outpost/libs/natsembed"
)

// RunServer starts one JetStream node on a random loopback port with its
// data in t.TempDir(), and shuts it down with t.Cleanup. It fails the test
// if the server does not start.
func RunServer(t testing.TB) *natsembed.Server {
	t.Helper()
	return RunServerWith(t, natsembed.Options{})
}

// RunServerWith is RunServer with options. Port defaults to a random port
// and DataDir to a folder under t.TempDir().
func RunServerWith(t testing.TB, opts natsembed.Options) *natsembed.Server {
	t.Helper()
	if opts.Port == 0 {
		opts.Port = natsembed.RandomPort
	}
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	srv, err := natsembed.Start(opts)
	if err != nil {
		t.Fatalf("natstest: start server: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// RunCluster starts n JetStream nodes (n >= 1, normally 3) on loopback with
// routes between them, random client ports and JetStream clustered, waits
// until the cluster serves JetStream (a stream replicated on every node can
// be made and written), and shuts them down with t.Cleanup.
// URL(nodes...) is the comma-separated URL to connect to all of them.
func RunCluster(t testing.TB, n int) []*natsembed.Server {
	t.Helper()
	return RunClusterWith(t, n, natsembed.Options{})
}

// RunClusterWith is RunCluster with the Auth and TLS of base on every node;
// probe are the options (credentials, TLS) of the connection that checks
// the cluster serves JetStream.
func RunClusterWith(t testing.TB, n int, base natsembed.Options, probe ...nats.Option) []*natsembed.Server {
	t.Helper()
	if n < 1 {
		t.Fatalf("natstest: cluster of %d nodes", n)
	}
	opts := make([]natsembed.Options, n)
	routes := make([]string, n)
	for i := range opts {
		p, err := natsembed.FreePort("")
		if err != nil {
			t.Fatalf("natstest: %v", err)
		}
		opts[i] = natsembed.Options{
			// A loaded machine (other test packages beside this one)
			// can take longer than the default to elect a meta leader.
			StartTimeout: clusterStart,
			Port:         natsembed.RandomPort,
			DataDir:      t.TempDir(),
			ServerName:   fmt.Sprintf("n%d", i+1),
			ClusterName:  "natstest",
			ClusterPort:  p,
			Auth:         base.Auth,
			TLS:          base.TLS,
		}
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", p)
	}
	servers := make([]*natsembed.Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range opts {
		opts[i].Routes = routes
		wg.Go(func() {
			// A meta leader needs a quorum, so the nodes start together.
			servers[i], errs[i] = natsembed.Start(opts[i])
		})
	}
	wg.Wait()
	for i, s := range servers {
		if s != nil {
			t.Cleanup(s.Shutdown)
		}
		if errs[i] != nil {
			t.Fatalf("natstest: start cluster node %d: %v", i+1, errs[i])
		}
	}
	if err := waitServing(servers, probe); err != nil {
		t.Fatalf("natstest: cluster of %d nodes: %v", n, err)
	}
	return servers
}

// clusterStart bounds the start of each node, meta leader included.
const clusterStart = 90 * time.Second

// clusterReady bounds waitServing.
const clusterReady = 60 * time.Second

// waitServing returns once the cluster serves JetStream: a stream
// replicated on every node can be made, elects a leader and stores a
// message. Every node knowing a meta leader is not enough: right after the
// cluster forms, the meta leader may not yet count its peers as current,
// and a stream request can go unanswered. The probe stream is deleted.
func waitServing(servers []*natsembed.Server, connOpts []nats.Option) error {
	ctx, cancel := context.WithTimeout(context.Background(), clusterReady)
	defer cancel()
	nc, err := nats.Connect(URL(servers...), append([]nats.Option{nats.MaxReconnects(-1)}, connOpts...)...)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	const probe = "NATSTEST_PROBE"
	cfg := jetstream.StreamConfig{Name: probe, Subjects: []string{"natstest.probe"}, Replicas: len(servers), Storage: jetstream.MemoryStorage}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = 50*time.Millisecond, time.Second, 0
	err = backoff.Retry(func() error {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := js.CreateOrUpdateStream(actx, cfg); err != nil {
			return fmt.Errorf("create a probe stream: %w", err)
		}
		if _, err := js.Publish(actx, "natstest.probe", nil); err != nil {
			return fmt.Errorf("publish to the probe stream: %w", err)
		}
		return nil
	}, backoff.WithContext(b, ctx))
	if err != nil {
		return fmt.Errorf("JetStream does not serve within %s: %w", clusterReady, err)
	}
	if err := js.DeleteStream(ctx, probe); err != nil {
		return fmt.Errorf("delete the probe stream: %w", err)
	}
	return nil
}

// URL is the comma-separated client URL of servers.
func URL(servers ...*natsembed.Server) string { return natsembed.JoinURLs(servers...) }

package app

import (
	"context"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/natsjs"
	accountsv1 "github.com/outposthq/outpost/proto/outpost/accounts/v1"
	"github.com/outposthq/outpost/services/k8s-watcher/internal/agent"
)

// relay is a TCP relay to the broker that a test freezes to play a paused
// watcher: while frozen nothing the watcher sends reaches the broker and
// nothing the broker sends reaches the watcher; thawed, what was held goes
// through, as for a process woken by SIGCONT.
type relay struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	open  chan struct{} // closed while the relay forwards
	conns []net.Conn
}

func newRelay(t *testing.T, brokerURL string) *relay {
	t.Helper()
	u, err := url.Parse(brokerURL)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	r := &relay{ln: ln, target: u.Host, open: make(chan struct{})}
	close(r.open)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", r.target)
			if err != nil {
				_ = c.Close()
				continue
			}
			r.mu.Lock()
			r.conns = append(r.conns, c, b)
			r.mu.Unlock()
			wg.Go(func() { r.pipe(b, c) })
			wg.Go(func() { r.pipe(c, b) })
		}
	})
	t.Cleanup(func() {
		r.thaw()
		_ = ln.Close()
		r.mu.Lock()
		for _, c := range r.conns {
			_ = c.Close()
		}
		r.mu.Unlock()
		wg.Wait()
	})
	return r
}

func (r *relay) url() string { return "nats://" + r.ln.Addr().String() }

func (r *relay) freeze() {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.open:
		r.open = make(chan struct{})
	default:
	}
}

func (r *relay) thaw() {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.open:
	default:
		close(r.open)
	}
}

// pipe copies src to dst, holding what it read while the relay is frozen.
func (r *relay) pipe(dst, src net.Conn) {
	defer func() { _ = dst.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			r.mu.Lock()
			open := r.open
			r.mu.Unlock()
			<-open
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// leaseDeliveries is how many times the zone's lease consumer has
// delivered a message.
func (e *env) leaseDeliveries(t *testing.T) uint64 {
	t.Helper()
	ctx := context.Background()
	js, err := jetstream.New(e.conn.NATS())
	require.NoError(t, err)
	cons, err := js.Consumer(ctx, e.conn.StreamName(tenant, queue.RoleLeases), natsjs.ConsumerName(agent.ConsumerName, e.subj.Leases(tenant, zone)))
	require.NoError(t, err)
	info, err := cons.Info(ctx)
	require.NoError(t, err)
	return info.Delivered.Consumer
}

// TestPausedWatcherLeavesItsSuccessorAlone: a watcher paused past the ack
// wait (played by freezing its broker connection) has lost its lease to
// the other replica. Woken, it gives the account up instead of renewing,
// and when it stops it gives back nothing: a late Nak of its superseded
// delivery would hand the successor's lease out again, a late Ack would
// remove it.
func TestPausedWatcherLeavesItsSuccessorAlone(t *testing.T) {
	e := newEnv(t)
	ns := e.kc.CreateNamespace(t)
	r := newRelay(t, e.srv.ClientURL())
	cfgA := e.config(t)
	cfgA.Broker.URL = r.url()
	stopA := e.start(t, cfgA)
	st := e.activated(t, e.spec("paused", ns), 1)
	require.Equal(t, cfgA.WatcherID, st.GetWatcherId())
	cfgB := e.config(t)
	e.start(t, cfgB)
	require.Eventually(t, func() bool { return e.heartbeat(cfgB.WatcherID) != nil }, waitFor, poll)

	r.freeze()
	require.Eventually(t, func() bool {
		for _, s := range read[*accountsv1.AccountStatus](e, e.subj.AccountStatus(tenant)) {
			if s.GetAccount() == "paused" && s.GetType() == accountsv1.AccountStatus_TYPE_ACTIVATED && s.GetWatcherId() == cfgB.WatcherID {
				return true
			}
		}
		return false
	}, waitFor, poll, "the other replica takes the lapsed lease")
	require.Eventually(t, func() bool { return holds(e.heartbeat(cfgB.WatcherID), "paused", 1) }, waitFor, poll)
	delivered := e.leaseDeliveries(t)
	thawed := time.Now()
	r.thaw()

	require.Eventually(t, func() bool {
		hb := e.heartbeat(cfgA.WatcherID)
		return hb != nil && hb.GetEnvelope().GetSentAt().AsTime().After(thawed) && !holds(hb, "paused", 1)
	}, waitFor, poll, "the woken watcher gives the account up")
	stopA()
	require.Equal(t, delivered, e.leaseDeliveries(t), "the stopped watcher gave back nothing")
	require.Never(t, func() bool { return e.leaseDeliveries(t) != delivered }, time.Second, poll)
	require.True(t, holds(e.heartbeat(cfgB.WatcherID), "paused", 1))
	require.Equal(t, 1, e.leaseBacklog(), "the successor's lease is still held")
}

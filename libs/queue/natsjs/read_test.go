package natsjs_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/natsembed/natstest"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/natsjs"
)

// A read counts what the stream holds when it starts; when those messages
// are purged before they are delivered, the read ends instead of waiting
// for them until its context does.
func TestReadEndsWhenItsMessagesArePurged(t *testing.T) {
	single := natstest.RunServer(t)
	cluster := natstest.RunCluster(t, 3)
	for _, tc := range []struct {
		name string
		cfg  natsjs.Config
		deny []string
	}{
		{"one replica", natsjs.Config{URL: single.ClientURL(), Stack: "one"}, nil},
		// An agent may not ask for its ordered consumer's info: the
		// stream's last matching message answers instead.
		{"one replica, no consumer info", natsjs.Config{URL: single.ClientURL(), Stack: "agent"}, []string{"$JS.API.CONSUMER.INFO.>"}},
		{"three replicas", natsjs.Config{URL: cluster[0].ClientURL(), Replicas: 3}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := connect(t, tc.cfg)
			natsjs.DenyPublish(c, tc.deny...)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			require.NoError(t, c.EnsureTenant(ctx, "acme", queue.TenantLimits{}))
			s := queue.NewSubjects(tc.cfg.Stack)
			inv := s.Watch("acme", "prod") + ".>"
			for _, name := range []string{"a", "b", "c"} {
				require.NoError(t, c.Publish(ctx, queue.Message{Subject: s.Watch("acme", "prod") + ".configmaps.default." + name, Data: []byte(name)}))
			}

			natsjs.SetReadCounted(t, func() { require.NoError(t, c.Purge(ctx, inv)) })
			n := 0
			require.NoError(t, c.Read(ctx, inv, queue.ReadOptions{}, func(queue.StreamMessage) bool { n++; return true }))
			require.NoError(t, ctx.Err(), "the read ended on its own")
			if tc.cfg.Replicas > 1 {
				// The purge is committed by a quorum; the replica the
				// consumer was placed on may still deliver from before it.
				require.LessOrEqual(t, n, 3)
			} else {
				require.Zero(t, n, "purged before the first pull")
			}

			// Without a purge the read delivers everything, once.
			natsjs.SetReadCounted(t, nil)
			require.NoError(t, c.Publish(ctx, queue.Message{Subject: s.Watch("acme", "prod") + ".configmaps.default.d", Data: []byte("d")}))
			var got []string
			require.NoError(t, c.Read(ctx, inv, queue.ReadOptions{}, func(m queue.StreamMessage) bool { got = append(got, string(m.Data)); return true }))
			if tc.cfg.Replicas > 1 {
				// A lagging replica may still hand out purged messages
				// first, in order and each once.
				require.NotEmpty(t, got)
				require.Equal(t, "d", got[len(got)-1], "read up to the last message the leader holds")
				require.True(t, slices.IsSorted(got) && len(slices.Compact(slices.Clone(got))) == len(got), "in order, each once: %v", got)
			} else {
				require.Equal(t, []string{"d"}, got)
			}
		})
	}
}

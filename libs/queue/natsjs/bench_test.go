package natsjs_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outposthq/outpost/libs/natsembed/natstest"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/natsjs"
)

// BenchmarkPublish compares Conn.Publish with a raw JetStream publish of
// the same message to the same stream. Run with:
//
//	go test -run '^$' -bench Publish -benchmem ./queue/natsjs/
func BenchmarkPublish(b *testing.B) {
	srv := natstest.RunServer(b)
	c := connect(b, natsjs.Config{URL: srv.ClientURL()})
	ctx := context.Background()
	if err := c.EnsureTenant(ctx, "bench", queue.TenantLimits{}); err != nil {
		b.Fatal(err)
	}
	subject := c.Subjects().Jobs("bench", "pool")
	data := make([]byte, 256)
	header := map[string]string{queue.HeaderType: "outpost.jobs.v1.JobDispatched"}

	b.Run("natsjs", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := c.Publish(ctx, queue.Message{Subject: subject, Data: data, Header: header}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("raw-jetstream", func(b *testing.B) {
		nc, err := nats.Connect(srv.ClientURL())
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			m := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{queue.HeaderType: []string{"outpost.jobs.v1.JobDispatched"}}}
			if _, err := js.PublishMsg(ctx, m); err != nil {
				b.Fatal(err)
			}
		}
	})
}

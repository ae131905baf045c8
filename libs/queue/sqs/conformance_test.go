package sqs_test

import (
	"testing"

	"github.com/outposthq/outpost/libs/queue/queuetest"
	"github.com/outposthq/outpost/libs/queue/sqs"
	"github.com/outposthq/outpost/libs/queue/sqs/sqstest"
)

// TestConformance runs the backend-neutral suite against fauxqs, with
// FIFO queues (the default) and with standard queues.
func TestConformance(t *testing.T) {
	srv := sqstest.Start(t)
	for _, qt := range []sqs.QueueType{sqs.QueueFIFO, sqs.QueueStandard} {
		t.Run(string(qt), func(t *testing.T) {
			queuetest.Run(t, func(t *testing.T) queuetest.Harness {
				b := sqstest.Connect(t, srv, sqs.Config{QueueType: qt})
				return queuetest.Harness{
					Broker:       b,
					Subjects:     b.Subjects(),
					Tenant:       queuetest.UniqueTenant(),
					MaxPayload:   b.MaxPayload(),
					Capabilities: sqstest.Capabilities(qt),
				}
			})
		})
	}
}

package sqs

import (
	"context"
	"errors"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"

	"github.com/outposthq/outpost/libs/queue"
)

// Liveness probe timing: an endpoint that accepts connections but stops
// answering (a hung or paused server, a black-holed route) fails no
// request of its own — long polls and sends just wait out their callers'
// deadlines, which say nothing about SQS — so readiness asks on its own.
const (
	livenessInterval = 2 * time.Second
	livenessTimeout  = 2 * time.Second
	// livenessFailures consecutive unanswered probes mark the broker not
	// ready: one slow answer on a loaded machine is not an outage.
	livenessFailures = 2
)

// probeLiveness asks SQS for the probe queue's URL every livenessInterval
// until ctx is done, and marks the broker not ready (metrics.alive)
// after livenessFailures unanswered probes in a row; any answer, a probe's
// or a request's, marks it alive again.
func (b *Broker) probeLiveness(ctx context.Context) {
	name := QueueNameFor(b.cfg.QueuePrefix, b.cfg.Stack, "probe", queue.RoleSubmit, "", b.fifo)
	t := time.NewTicker(livenessInterval)
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, livenessTimeout)
		_, err := b.client.GetQueueUrl(pctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
		cancel()
		if ctx.Err() != nil {
			return
		}
		var apiErr smithy.APIError
		if err == nil || errors.As(err, &apiErr) {
			// Any answer, "no such queue" or "access denied" included,
			// is SQS answering.
			failures = 0
			b.metrics.alive.Store(true)
			continue
		}
		failures++
		if failures >= livenessFailures && b.metrics.alive.Swap(false) {
			b.log.Warn("SQS does not answer; not ready until it does", "endpoint", b.endpointName(), "error", err)
		}
	}
}

package sqs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/outposthq/outpost/libs/queue/internal/handling"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/workpool"
)

// settleTimeout bounds settlements whose context has no deadline.
const settleTimeout = handling.SettleTimeout

// Consume starts a consumer of the queues cfg.Subject covers (see the
// package documentation) and calls h for each delivery until ctx is done or
// Stop is called. Each queue has one long poll open at a time, asking for
// as many messages as it has free handler slots: Concurrency is shared out
// between the queues, at least one each, so a filter over n queues may run
// max(Concurrency, n) handlers at once. Queues of a provisioned tenant that
// do not exist yet are created (a principal without sqs:CreateQueue gets an
// error wrapping queue.ErrUnknownTenant).
//
// A receive that is under way when the consumer stops is not cut short
// (SQS would hide its messages for the ack wait): its messages are handed
// back at once, which counts as a receive in their Attempt.
func (b *Broker) Consume(ctx context.Context, cfg queue.ConsumerConfig, h queue.Handler) (queue.Consumer, error) {
	if b.closed.Load() {
		return nil, queue.ErrClosed
	}
	if h == nil {
		return nil, errors.New("sqs: consume: nil handler")
	}
	if cfg.Name == "" {
		return nil, fmt.Errorf("sqs: consume %s: empty consumer name", cfg.Subject)
	}
	set, err := b.filterQueues(cfg.Subject)
	if err != nil {
		return nil, fmt.Errorf("sqs: consume: %w", err)
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sqs: consume %s: %w", cfg.Subject, err)
	}
	if len(set.fixed) == 0 {
		// Only listing: make sure the tenant exists. (Resolving a fixed
		// queue checks it when the queue is missing, and a runner may not
		// look at the tenant's other queues.)
		if _, err := b.resolve(ctx, tenantMarker(set.tenant), false); err != nil {
			return nil, fmt.Errorf("sqs: consume %s: %w", cfg.Subject, err)
		}
	}
	var queues []*queueInfo
	for _, id := range set.fixed {
		qi, err := b.resolve(ctx, id, true)
		if err != nil {
			return nil, fmt.Errorf("sqs: consume %s: %w", cfg.Subject, err)
		}
		queues = append(queues, qi)
	}
	if set.discover {
		found, err := b.discover(ctx, set.tenant, set.role)
		if err != nil {
			return nil, fmt.Errorf("sqs: consume %s: %w", cfg.Subject, err)
		}
		queues = appendNew(queues, found)
	}
	k := &consumer{
		b:          b,
		cfg:        cfg,
		h:          h,
		set:        set,
		log:        b.log.With("consumer", cfg.Name, "filter", cfg.Subject),
		visibility: visibilitySeconds(cfg.AckWait, 1),
		perQueue:   max(1, cfg.Concurrency/max(1, len(queues))),
		loops:      map[string]*queueLoop{},
		pool:       workpool.New(0),
	}
	for _, qi := range queues {
		if qi.id.Role == queue.RoleDeadLetter || cfg.MaxDeliveries < 0 {
			continue
		}
		if n := b.redrive(ctx, qi); n > 0 && n <= cfg.MaxDeliveries {
			k.log.Warn("queue redrive policy dead-letters before the consumer's max deliveries, without a reason",
				"queue", qi.name, "max_receive_count", n, "max_deliveries", cfg.MaxDeliveries)
		}
	}
	k.loopCtx, k.stopLoop = context.WithCancel(ctx)
	k.handlerCtx, k.cancelHandler = context.WithCancel(ctx)
	if !b.addConsumer(k) {
		k.stopLoop()
		k.cancelHandler()
		return nil, queue.ErrClosed
	}
	k.mu.Lock()
	for _, qi := range queues {
		k.startLoop(qi)
	}
	k.mu.Unlock()
	if set.discover {
		go k.rediscover()
	}
	go func() {
		<-k.loopCtx.Done()
		k.stopLoops()
		k.handlers.Wait()
		k.pool.Close()
		b.removeConsumer(k)
	}()
	k.log.Debug("consumer started", "queues", len(queues), "concurrency", cfg.Concurrency, "ack_wait", cfg.AckWait, "max_deliveries", cfg.MaxDeliveries)
	return k, nil
}

func appendNew(queues, found []*queueInfo) []*queueInfo {
	have := map[string]bool{}
	for _, q := range queues {
		have[q.url] = true
	}
	for _, q := range found {
		if !have[q.url] {
			have[q.url] = true
			queues = append(queues, q)
		}
	}
	return queues
}

// visibilitySeconds rounds d up to whole seconds within SQS's limits.
func visibilitySeconds(d time.Duration, least int32) int32 {
	d = min(d, maxVisibility)
	return max(least, int32((d+time.Second-1)/time.Second))
}

// consumer is one running consumer over one or more queues.
type consumer struct {
	b          *Broker
	cfg        queue.ConsumerConfig
	h          queue.Handler
	set        queueSet
	log        *slog.Logger
	visibility int32
	perQueue   int

	loopCtx  context.Context
	stopLoop context.CancelFunc

	handlerCtx    context.Context
	cancelHandler context.CancelFunc

	// mu guards stopped and loops; handlers.Add happens under it while
	// not stopped, so that Stop's Wait never races an Add.
	mu       sync.Mutex
	stopped  bool
	loops    map[string]*queueLoop // by queue URL
	handlers sync.WaitGroup
	// pool runs the handlers on goroutines kept between deliveries.
	pool *workpool.Pool
}

// queueLoop long-polls one queue.
type queueLoop struct {
	qi    *queueInfo
	slots chan struct{} // one token per handler running or message asked for
}

// startLoop starts polling qi; k.mu must be held.
func (k *consumer) startLoop(qi *queueInfo) {
	if k.stopped || k.loops[qi.url] != nil {
		return
	}
	ql := &queueLoop{qi: qi, slots: make(chan struct{}, k.perQueue)}
	k.loops[qi.url] = ql
	go k.poll(ql)
}

func (k *consumer) stopLoops() {
	k.mu.Lock()
	k.stopped = true
	k.mu.Unlock()
	k.stopLoop()
}

func (k *consumer) cancelHandlers() { k.cancelHandler() }

// Stop stops polling, then waits for running handlers to return. If ctx
// ends first, the handlers' context is cancelled and ctx's error returned;
// their unsettled deliveries are redelivered after the ack wait.
func (k *consumer) Stop(ctx context.Context) error {
	k.stopLoops()
	done := make(chan struct{})
	go func() {
		k.handlers.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		k.cancelHandler()
		return fmt.Errorf("sqs: stop consumer %s on %s: handlers still running: %w", k.cfg.Name, k.cfg.Subject, ctx.Err())
	}
	k.cancelHandler()
	k.b.removeConsumer(k)
	return nil
}

// rediscover lists the role's queues every DiscoveryInterval and polls new
// ones.
func (k *consumer) rediscover() {
	t := time.NewTicker(k.b.cfg.DiscoveryInterval)
	defer t.Stop()
	for {
		select {
		case <-k.loopCtx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(k.loopCtx, settleTimeout)
		found, err := k.b.discover(ctx, k.set.tenant, k.set.role)
		cancel()
		if err != nil {
			k.log.Warn("queue discovery failed", "error", err)
			continue
		}
		k.mu.Lock()
		for _, qi := range found {
			k.startLoop(qi)
		}
		k.mu.Unlock()
	}
}

// poll receives messages while the loop has free handler slots.
func (k *consumer) poll(ql *queueLoop) {
	wait := 100 * time.Millisecond
	limit := min(cap(ql.slots), maxBatch)
	for {
		select {
		case ql.slots <- struct{}{}:
		case <-k.loopCtx.Done():
			return
		}
		n := 1
	fill:
		for n < limit {
			select {
			case ql.slots <- struct{}{}:
				n++
			default:
				break fill
			}
		}
		received := time.Now()
		msgs, err := k.receive(ql, n)
		k.mu.Lock()
		stopped := k.stopped || k.loopCtx.Err() != nil
		if !stopped {
			k.handlers.Add(len(msgs))
		}
		k.mu.Unlock()
		if stopped {
			k.giveBack(ql, msgs)
			for range n {
				<-ql.slots
			}
			return
		}
		for _, m := range msgs {
			k.pool.Go(func() { k.handle(ql, m, received) })
		}
		for range n - len(msgs) {
			<-ql.slots
		}
		if err == nil {
			wait = 100 * time.Millisecond
			continue
		}
		if k.b.closed.Load() {
			return
		}
		if isNotFound(err) && k.recreate(ql) {
			return // a loop of the queue made again polls it
		}
		k.log.Warn("receive failed", "queue", ql.qi.name, "error", err, "retry_in", wait)
		select {
		case <-time.After(wait):
		case <-k.loopCtx.Done():
			return
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// recreate makes ql's queue again after SQS said it does not exist (it was
// deleted, or a server without persistence restarted), so that a consumer
// does not poll a vanished queue forever. It reports whether a new loop
// took over: the queue came back under another URL. When the queue comes
// back under the same URL (SQS's URLs follow the name) ql keeps polling
// it. A principal that may not create queues (a runner) gets an error,
// logged, and keeps polling until the control plane makes the queue.
func (k *consumer) recreate(ql *queueLoop) bool {
	k.b.forget(ql.qi.name)
	ctx, cancel := context.WithTimeout(k.loopCtx, settleTimeout)
	defer cancel()
	qi, err := k.b.resolve(ctx, ql.qi.id, true)
	if err != nil {
		k.log.Warn("queue vanished and could not be made again", "queue", ql.qi.name, "error", err)
		return false
	}
	k.log.Warn("queue vanished; made it again", "queue", qi.name)
	if qi.url == ql.qi.url {
		return false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.loops, ql.qi.url)
	k.startLoop(qi)
	return true
}

// receive long-polls for up to n messages. It is bound to the broker, not
// to the consumer: stopping does not abort it. A fenced consumer's delivery
// holds a lease from when the receive began (SQS starts the visibility
// timeout when it answers, later), so it long-polls for a second only,
// SQS's shortest long poll, to keep the lease close to the timeout.
func (k *consumer) receive(ql *queueLoop, n int) ([]types.Message, error) {
	wait := k.b.cfg.WaitTime
	if k.cfg.Fenced {
		wait = time.Second
	}
	ctx, cancel := context.WithTimeout(k.b.base, wait+15*time.Second)
	defer cancel()
	out, err := k.b.client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:              aws.String(ql.qi.url),
		MaxNumberOfMessages:   int32(n),
		WaitTimeSeconds:       int32(wait / time.Second),
		VisibilityTimeout:     k.visibility,
		MessageAttributeNames: []string{"All"},
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{
			types.MessageSystemAttributeNameApproximateReceiveCount,
			types.MessageSystemAttributeNameSentTimestamp,
		},
	})
	if err != nil {
		return nil, err
	}
	k.b.metrics.messages("ReceiveMessage", len(out.Messages))
	return out.Messages, nil
}

// giveBack makes messages received after the consumer stopped visible
// again at once.
func (k *consumer) giveBack(ql *queueLoop, msgs []types.Message) {
	if len(msgs) == 0 || k.b.closed.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(k.b.base, settleTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, m := range msgs {
		wg.Go(func() {
			err := k.b.visibles.do(ctx, ql.qi.url, visibility{handle: aws.ToString(m.ReceiptHandle)}, 0)
			if err != nil {
				k.log.Debug("give back after stop failed", "queue", ql.qi.name, "error", err)
			}
		})
	}
	wg.Wait()
}

// handle runs the handler for one message, after the checks that may
// settle it without the handler: duplicate (standard queues) and max
// deliveries.
func (k *consumer) handle(ql *queueLoop, m types.Message, received time.Time) {
	defer k.handlers.Done()
	defer func() { <-ql.slots }()
	d := k.newDelivery(ql, m, received)
	if d.dup {
		ctx, cancel := context.WithTimeout(k.b.base, settleTimeout)
		defer cancel()
		if err := d.Ack(ctx); err != nil {
			k.log.Warn("dropping a duplicate failed", "subject", d.subject, "error", err)
			return
		}
		k.b.metrics.dropped()
		k.log.Debug("duplicate dropped", "subject", d.subject, "message_id", d.messageID)
		return
	}
	// The dead-letter queue's own messages are never dead-lettered again.
	maxDeliveries := k.cfg.MaxDeliveries
	if ql.qi.id.Role == queue.RoleDeadLetter {
		maxDeliveries = 0
	}
	handling.Run(k.handlerCtx, k.log, d, maxDeliveries, d.deadLetter, k.h)
}

// newDelivery decodes a received message. A message this package did not
// send (no outpost.subject attribute, or a body that is not base64) is
// still delivered, with its raw body, for the handler to terminate.
// received is when the receive that brought it began.
func (k *consumer) newDelivery(ql *queueLoop, m types.Message, received time.Time) *delivery {
	b := k.b
	id := ql.qi.id
	d := &delivery{
		k:         k,
		ql:        ql,
		handle:    aws.ToString(m.ReceiptHandle),
		messageID: aws.ToString(m.MessageId),
		lease:     handling.NewLease(k.cfg, received),
	}
	d.attempt, _ = strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
	d.attempt = max(d.attempt, 1)
	subject, dedupeID, header, err := decodeAttributes(m.MessageAttributes)
	d.header = header
	if err != nil {
		k.log.Warn("message not in outpost's encoding", "queue", ql.qi.name, "message_id", d.messageID, "error", err)
	}
	if subject == "" {
		subject = b.queueSubject(id)
	}
	d.subject = subject
	d.data, err = decodeBody(aws.ToString(m.Body))
	if err != nil {
		k.log.Warn("message body is not base64; delivered raw", "queue", ql.qi.name, "message_id", d.messageID, "error", err)
		d.data = []byte(aws.ToString(m.Body))
	}
	if id.Role == queue.RoleDeadLetter {
		from := queue.Role(id.Key)
		d.subject = b.subjects.DeadLetter(id.Tenant, from)
		if _, ok := d.header[queue.HeaderDeadLetterReason]; !ok {
			// Moved by SQS's redrive policy: no reason of ours. Its
			// receive count goes on from the source queue's.
			n := b.maxReceiveCount(from)
			d.header[queue.HeaderDeadLetterReason] = fmt.Sprintf("moved by the SQS redrive policy after %d receives", n)
			d.header[queue.HeaderDeadLetterSubject] = subject
			d.header[queue.HeaderDeadLetterAttempts] = strconv.Itoa(n)
			if d.attempt > n {
				d.attempt = max(1, d.attempt-n-1)
			}
		}
	}
	if !b.fifo && dedupeID != "" {
		key := ql.qi.url + "\x00" + dedupeID
		if first, ok := b.handled.get(key); ok && first != d.messageID {
			d.dup = true
		} else if !ok {
			b.handled.add(key, d.messageID)
		}
	}
	return d
}

// queueSubject is the subject of messages in id's queue when it stands for
// one subject, for messages that do not carry theirs.
func (b *Broker) queueSubject(id queueID) string {
	s := b.subjects
	switch id.Role {
	case queue.RoleSubmit:
		return s.Submit(id.Tenant)
	case queue.RoleJobs:
		return s.Jobs(id.Tenant, id.Key)
	case queue.RoleControl:
		return s.Control(id.Tenant, id.Key)
	case queue.RoleRunners:
		return s.Runners(id.Tenant, id.Key)
	case queue.RoleJobEvents:
		return s.Stack + "." + id.Tenant + ".job-events.unknown." + id.Key
	default:
		return s.DeadLetter(id.Tenant, queue.Role(id.Key))
	}
}

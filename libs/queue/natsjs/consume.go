package natsjs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outposthq/outpost/libs/queue/internal/handling"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/workpool"
)

const (
	// fetchWindow is how long one pull request waits for messages. The
	// server sends heartbeats on longer pulls, and a reconnect cuts the
	// wait short, so this only bounds how stale an idle pull can get.
	fetchWindow = 15 * time.Second
	// settleTimeout bounds ack, nak, term and dead-letter requests whose
	// context has no deadline.
	settleTimeout = handling.SettleTimeout
	// minAckPending is the floor of the consumer's MaxAckPending.
	minAckPending = 256
)

// Consume starts a durable pull consumer on cfg.Subject and calls h for
// each delivery, at most cfg.Concurrency at a time, until ctx is done or
// Stop is called. Handlers get a context that is cancelled when ctx is done,
// when Close is called, or when Stop gives up waiting.
//
// Only as many messages are pulled as there are free handler slots, so no
// message waits in this process unhandled; see the package documentation
// for MaxAckPending. A handler that panics is recovered, logged, and its
// delivery Nak'd with a 1s delay.
func (c *Conn) Consume(ctx context.Context, cfg queue.ConsumerConfig, h queue.Handler) (queue.Consumer, error) {
	if c.closed.Load() {
		return nil, queue.ErrClosed
	}
	if h == nil {
		return nil, errors.New("natsjs: consume: nil handler")
	}
	if cfg.Name == "" {
		return nil, fmt.Errorf("natsjs: consume %s: empty consumer name", cfg.Subject)
	}
	tenant, role, err := c.checkSubject(cfg.Subject, true)
	if err != nil {
		return nil, fmt.Errorf("natsjs: consume: %w", err)
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("natsjs: consume %s: %w", cfg.Subject, err)
	}
	if err := c.checkRole(ctx, tenant, role); err != nil {
		return nil, fmt.Errorf("natsjs: consume %s: %w", cfg.Subject, err)
	}

	k := &consumer{
		c:      c,
		cfg:    cfg,
		h:      h,
		stream: c.streamName(tenant, kindOf(role)),
		slots:  make(chan struct{}, cfg.Concurrency),
		pool:   workpool.New(0),
	}
	k.durable = ConsumerName(cfg.Name, cfg.Subject)
	k.log = c.log.With("consumer", k.durable, "filter", cfg.Subject)
	k.jcfg = jetstream.ConsumerConfig{
		Durable:       k.durable,
		Description:   "outpost consumer " + cfg.Name + " on " + cfg.Subject,
		FilterSubject: cfg.Subject,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    -1, // the library enforces MaxDeliveries
		MaxAckPending: max(minAckPending, 16*cfg.Concurrency),
	}
	if err := k.create(ctx); err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			c.forgetTenant(tenant)
			return nil, fmt.Errorf("natsjs: consume %s: %w: %q", cfg.Subject, queue.ErrUnknownTenant, tenant)
		}
		return nil, fmt.Errorf("natsjs: consume %s: %w", cfg.Subject, err)
	}
	k.loopCtx, k.stopLoop = context.WithCancel(ctx)
	k.handlerCtx, k.cancelHandler = context.WithCancel(ctx)
	k.loopDone = make(chan struct{})
	if !c.addConsumer(k) {
		k.stopLoop()
		k.cancelHandler()
		return nil, queue.ErrClosed
	}
	go k.run()
	k.log.Debug("consumer started", "stream", k.stream, "concurrency", cfg.Concurrency, "ack_wait", cfg.AckWait, "max_deliveries", cfg.MaxDeliveries)
	return k, nil
}

// consumer is one running instance of a durable consumer.
type consumer struct {
	c      *Conn
	cfg    queue.ConsumerConfig
	h      queue.Handler
	stream string
	log    *slog.Logger

	durable string
	jcfg    jetstream.ConsumerConfig
	cons    jetstream.Consumer // set by create; only the run loop replaces it

	// slots holds one token per handler running or message being pulled.
	slots chan struct{}
	// pool runs the handlers on goroutines kept between deliveries.
	pool *workpool.Pool

	loopCtx  context.Context
	stopLoop context.CancelFunc
	loopDone chan struct{}

	handlerCtx    context.Context
	cancelHandler context.CancelFunc
	handlers      sync.WaitGroup
}

func (k *consumer) create(ctx context.Context) error {
	var cons jetstream.Consumer
	err := retryAPI(ctx, func(ctx context.Context) error {
		var err error
		cons, err = k.c.js.CreateOrUpdateConsumer(ctx, k.stream, k.jcfg)
		return err
	})
	if err != nil {
		return fmt.Errorf("create consumer %s on %s: %w", k.durable, k.stream, err)
	}
	k.cons = cons
	return nil
}

func (k *consumer) stopFetching()   { k.stopLoop() }
func (k *consumer) cancelHandlers() { k.cancelHandler() }

// Stop stops pulling, then waits for running handlers to return. If ctx
// ends first, the handlers' context is cancelled and ctx's error returned;
// their unsettled deliveries are redelivered after the ack wait.
func (k *consumer) Stop(ctx context.Context) error {
	k.stopLoop()
	select {
	case <-k.loopDone:
	case <-ctx.Done():
		k.cancelHandler()
		return fmt.Errorf("natsjs: stop consumer %s: %w", k.durable, ctx.Err())
	}
	done := make(chan struct{})
	go func() {
		k.handlers.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		k.cancelHandler()
		return fmt.Errorf("natsjs: stop consumer %s: handlers still running: %w", k.durable, ctx.Err())
	}
	k.cancelHandler()
	return nil
}

// run pulls messages while there are free handler slots.
func (k *consumer) run() {
	defer func() {
		close(k.loopDone)
		// Forget the consumer once its last handler is done, whether it
		// was stopped or its context ended.
		go func() {
			k.handlers.Wait()
			k.pool.Close()
			k.c.removeConsumer(k)
		}()
	}()
	wait := 100 * time.Millisecond
	for {
		// Reserve every free slot, waiting for at least one.
		select {
		case k.slots <- struct{}{}:
		case <-k.loopCtx.Done():
			return
		}
		n := 1
	fill:
		for n < cap(k.slots) {
			select {
			case k.slots <- struct{}{}:
				n++
			default:
				break fill
			}
		}
		used, err := k.fetch(n)
		for range n - used {
			<-k.slots
		}
		if k.loopCtx.Err() != nil {
			return
		}
		if err == nil {
			wait = 100 * time.Millisecond
			continue
		}
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) {
			// Deleted behind our back (or lost with a stream restore):
			// put it back.
			cctx, cancel := context.WithTimeout(k.loopCtx, settleTimeout)
			cerr := k.create(cctx)
			cancel()
			if cerr == nil {
				k.log.Warn("consumer recreated", "error", err)
				continue
			}
			err = cerr
		}
		k.log.Warn("pull failed", "error", err, "retry_in", wait)
		select {
		case <-time.After(wait):
		case <-k.loopCtx.Done():
			return
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// fetch pulls up to n messages and starts a handler for each. It returns
// how many of the n reserved slots it handed to handlers.
//
// A fenced consumer's delivery holds a lease from when the pull began: the
// server starts a delivery's ack wait when it sends the message, which is
// after the pull began but, if this process was paused with the message in
// its buffer, may be long before it read it. So its pulls are short (half
// the fence margin), which keeps the lease close to the server's ack wait.
//
// A fenced pull is ended by the server (a status that follows any message it
// sent), not by the client: a pull the client gives up may drop a message
// the server sent just before, which then waits out its ack wait as a lost
// delivery, and with pulls this short that would be frequent.
func (k *consumer) fetch(n int) (int, error) {
	started := time.Now()
	var (
		batch jetstream.MessageBatch
		err   error
	)
	if k.cfg.Fenced {
		batch, err = k.cons.Fetch(n, jetstream.FetchMaxWait(handling.ReceiveWait(k.cfg, fetchWindow)))
	} else {
		fctx, cancel := context.WithTimeout(k.loopCtx, fetchWindow)
		defer cancel()
		// A reconnect loses the pull request on the server side: pull again.
		defer context.AfterFunc(k.c.currentEpoch(), cancel)()
		batch, err = k.cons.Fetch(n, jetstream.FetchContext(fctx))
	}
	if err != nil {
		return 0, err
	}
	used := 0
	for msg := range batch.Messages() {
		used++
		if k.loopCtx.Err() != nil {
			// Stopping: hand the message back at once rather than let
			// it wait for its ack wait. Its slot stays reserved and is
			// released by run with the other unused ones.
			k.giveBack(msg)
			used--
			continue
		}
		k.handlers.Add(1)
		k.pool.Go(func() { k.handle(msg, started) })
	}
	err = batch.Error()
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		err = nil
	}
	return used, err
}

func (k *consumer) giveBack(msg jetstream.Msg) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := k.c.nc.RequestWithContext(ctx, msg.Reply(), ackNak); err != nil {
		k.log.Debug("nak on stop failed", "subject", msg.Subject(), "error", err)
	}
}

func (k *consumer) handle(msg jetstream.Msg, received time.Time) {
	defer k.handlers.Done()
	defer func() { <-k.slots }()
	d, err := k.newDelivery(msg, received)
	if err != nil {
		k.log.Error("bad delivery", "subject", msg.Subject(), "error", err)
		return
	}
	handling.Run(k.handlerCtx, k.log, d, k.cfg.MaxDeliveries, d.deadLetter, k.h)
}

// Acknowledgement bodies (JetStream's wire protocol).
var (
	ackAck      = []byte("+ACK")
	ackNak      = []byte("-NAK")
	ackProgress = []byte("+WPI")
)

// delivery implements queue.Delivery. Settlements are request/reply, so an
// error means the server may not have recorded it and it can be retried.
type delivery struct {
	k       *consumer
	msg     jetstream.Msg
	subject string
	header  map[string]string
	attempt int
	seq     uint64
	stored  time.Time // when the message was stored in its stream
	// lease says when an InProgress is worth sending and, on a fenced
	// consumer, refuses settlements once the ack wait may have passed: the server settles by stream sequence
	// whichever delivery the reply names, so a stale Ack would remove,
	// and a stale Nak redeliver, the message another consumer now holds.
	lease *handling.Lease

	mu      sync.Mutex
	settled bool
}

func (k *consumer) newDelivery(msg jetstream.Msg, received time.Time) (*delivery, error) {
	md, err := msg.Metadata()
	if err != nil {
		return nil, err
	}
	return &delivery{
		k:       k,
		msg:     msg,
		subject: msg.Subject(),
		header:  headerMap(msg.Headers()),
		attempt: int(md.NumDelivered),
		seq:     md.Sequence.Stream,
		stored:  md.Timestamp,
		lease:   handling.NewLease(k.cfg, received),
	}, nil
}

func headerMap(h nats.Header) map[string]string {
	m := make(map[string]string, len(h))
	for k, v := range h {
		if len(v) > 0 {
			m[k] = v[0]
		}
	}
	return m
}

func (d *delivery) Subject() string           { return d.subject }
func (d *delivery) Data() []byte              { return d.msg.Data() }
func (d *delivery) Header() map[string]string { return d.header }
func (d *delivery) Attempt() int              { return d.attempt }

// Ack implements queue.Delivery; it waits for the server's confirmation,
// unless the consumer is AckNoWait.
func (d *delivery) Ack(ctx context.Context) error {
	if d.k.cfg.AckNoWait {
		return d.ackNoWait()
	}
	return d.settle(ctx, "ack", ackAck)
}

// ackNoWait sends the acknowledgement without asking for the server's
// reply: the client's buffer carries it, also across a reconnect.
func (d *delivery) ackNoWait() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.settled {
		return fmt.Errorf("natsjs: ack %s: %w", d.subject, queue.ErrAlreadyAcked)
	}
	reply := d.msg.Reply()
	if reply == "" {
		return fmt.Errorf("natsjs: ack %s: message has no ack subject", d.subject)
	}
	if err := d.k.c.nc.Publish(reply, ackAck); err != nil {
		if errors.Is(err, nats.ErrConnectionClosed) {
			err = queue.ErrClosed
		}
		return fmt.Errorf("natsjs: ack %s: %w", d.subject, err)
	}
	d.settled = true
	return nil
}

// Nak implements queue.Delivery with JetStream's NAK with delay.
func (d *delivery) Nak(ctx context.Context, delay time.Duration) error {
	body := ackNak
	if delay > 0 {
		body = []byte(`-NAK {"delay": ` + strconv.FormatInt(delay.Nanoseconds(), 10) + `}`)
	}
	return d.settle(ctx, "nak", body)
}

// InProgress implements queue.Delivery: it restarts the ack wait.
func (d *delivery) InProgress(ctx context.Context) error {
	d.mu.Lock()
	settled := d.settled
	d.mu.Unlock()
	if settled {
		return fmt.Errorf("natsjs: in progress %s: %w", d.subject, queue.ErrAlreadyAcked)
	}
	sent := time.Now()
	if err := d.lease.Check(sent); err != nil {
		return fmt.Errorf("natsjs: in progress %s: %w", d.subject, err)
	}
	if d.lease.Fresh(sent) {
		return nil
	}
	if err := d.k.c.ackRequest(ctx, d.msg.Reply(), ackProgress); err != nil {
		return fmt.Errorf("natsjs: in progress %s: %w", d.subject, err)
	}
	d.lease.Renew(sent)
	return nil
}

// Term implements queue.Delivery: the message is copied to the tenant's
// dead-letter subject for its role, then terminated.
func (d *delivery) Term(ctx context.Context, reason string) error {
	return d.deadLetter(ctx, reason, d.attempt)
}

func (d *delivery) settle(ctx context.Context, op string, body []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.settled {
		return fmt.Errorf("natsjs: %s %s: %w", op, d.subject, queue.ErrAlreadyAcked)
	}
	if err := d.lease.Check(time.Now()); err != nil {
		return fmt.Errorf("natsjs: %s %s: %w", op, d.subject, err)
	}
	if err := d.k.c.ackRequest(ctx, d.msg.Reply(), body); err != nil {
		return fmt.Errorf("natsjs: %s %s: %w", op, d.subject, err)
	}
	d.settled = true
	return nil
}

// deadLetter publishes a copy of the message to the dead-letter subject of
// its tenant and role, then terminates the original. The copy's Nats-Msg-Id
// is derived from the original's stream sequence, so a retry after a
// failed terminate does not store it twice.
//
// A dead letter itself (a delivery of the dead-letter stream) is not
// copied again: terminating it only ends its deliveries to this consumer,
// and it stays in the dead-letter stream, where DeadLetters lists it.
func (d *delivery) deadLetter(ctx context.Context, reason string, attempts int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.settled {
		return fmt.Errorf("natsjs: term %s: %w", d.subject, queue.ErrAlreadyAcked)
	}
	if err := d.lease.Check(time.Now()); err != nil {
		return fmt.Errorf("natsjs: term %s: %w", d.subject, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, settleTimeout)
		defer cancel()
	}
	_, tenant, role, _, _ := splitSubject(d.subject)
	reason = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, reason)
	if queue.Role(role) == queue.RoleDeadLetter {
		if err := d.k.c.ackRequest(ctx, d.msg.Reply(), []byte("+TERM "+reason)); err != nil {
			return fmt.Errorf("natsjs: term dead letter %s: %w", d.subject, err)
		}
		d.settled = true
		return nil
	}
	h := make(nats.Header, len(d.msg.Headers())+4)
	for key, v := range d.msg.Headers() {
		if strings.HasPrefix(key, "Nats-") {
			continue // JetStream control headers of the original
		}
		h[key] = v
	}
	h[queue.HeaderDeadLetterReason] = []string{reason}
	h[queue.HeaderDeadLetterSubject] = []string{d.subject}
	h[queue.HeaderDeadLetterAttempts] = []string{strconv.Itoa(attempts)}
	if !d.stored.IsZero() {
		h[queue.HeaderDeadLetterFirstTime] = []string{d.stored.UTC().Format(time.RFC3339Nano)}
	}
	h[jetstream.MsgIDHeader] = []string{"dlq-" + d.k.stream + "-" + strconv.FormatUint(d.seq, 10)}
	dlq := &nats.Msg{
		Subject: d.k.c.subjects.DeadLetter(tenant, queue.Role(role)),
		Data:    d.msg.Data(),
		Header:  h,
	}
	if _, err := d.k.c.js.PublishMsg(ctx, dlq); err != nil {
		return fmt.Errorf("natsjs: dead-letter %s to %s: %w", d.subject, dlq.Subject, err)
	}
	if err := d.k.c.ackRequest(ctx, d.msg.Reply(), []byte("+TERM "+reason)); err != nil {
		return fmt.Errorf("natsjs: term %s after dead-lettering it: %w", d.subject, err)
	}
	d.settled = true
	return nil
}

// ackRequest sends an acknowledgement and waits for the server to confirm.
//
// A request written just before the connection drops is lost with the old
// socket, and its reply with it, yet the client keeps waiting on the reply
// subscription after reconnecting: without a resend the handler, and the
// slot it holds, would wait for the whole of ctx (in a cluster the client
// reconnects to another node within milliseconds, before the loss is seen).
// So a reconnect while waiting sends the acknowledgement again: the server
// replies to a repeated one as well, and settling one delivery twice has
// the effect of settling it once.
func (c *Conn) ackRequest(ctx context.Context, reply string, body []byte) error {
	if reply == "" {
		return errors.New("message has no ack subject")
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, settleTimeout)
		defer cancel()
	}
	for {
		epoch := c.currentEpoch()
		rctx, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(epoch, cancel)
		_, err := c.nc.RequestWithContext(rctx, reply, body)
		stop()
		cancel()
		// Close cancels the epoch without starting a new one: resend only
		// after a reconnect.
		if err != nil && ctx.Err() == nil && epoch.Err() != nil && c.currentEpoch() != epoch {
			c.log.Debug("acknowledgement sent again after a reconnect", "subject", reply)
			continue
		}
		if errors.Is(err, nats.ErrConnectionClosed) {
			return queue.ErrClosed
		}
		return err
	}
}

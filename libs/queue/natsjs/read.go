package natsjs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outposthq/outpost/libs/queue"
)

// Read replays the stored messages matching an event subject or filter
// (e.g. Subjects.All(tenant, queue.RoleJobEvents)) in stream order, from
// opts.FromSequence, with an ordered consumer. Sequences are those of the
// stream, which in the shared layout is shared by every tenant of the
// stack. Without Follow, Read returns nil after the last matching
// message stored when it started (at once if there is none); with Follow it
// waits for new messages and returns ctx's error when ctx is done. Work roles cannot be read: their
// messages are removed when acknowledged.
func (c *Conn) Read(ctx context.Context, subject string, opts queue.ReadOptions, fn func(queue.StreamMessage) bool) error {
	if c.closed.Load() {
		return queue.ErrClosed
	}
	tenant, role, err := c.checkSubject(subject, true)
	if err != nil {
		return fmt.Errorf("natsjs: read: %w", err)
	}
	if role.IsWork() {
		return fmt.Errorf("natsjs: read %s: %w: role %q is a work queue and keeps no history; only event roles can be read", subject, queue.ErrInvalidSubject, role)
	}
	if err := c.checkRole(ctx, tenant, role); err != nil {
		return fmt.Errorf("natsjs: read %s: %w", subject, err)
	}
	stream := c.streamName(tenant, kindOf(role))
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{subject},
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       max(opts.FromSequence, 1),
		InactiveThreshold: time.Minute,
	}
	switch {
	case opts.OnlyNew:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverNewPolicy, 0
	case !opts.Since.IsZero():
		since := opts.Since
		cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, 0, &since
	}
	cons, err := c.js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			c.forgetTenant(tenant)
			return fmt.Errorf("natsjs: read %s: %w: %q", subject, queue.ErrUnknownTenant, tenant)
		}
		return fmt.Errorf("natsjs: read %s: %w", subject, err)
	}
	defer func() {
		// The ordered consumer is ephemeral; delete it now rather than
		// leave it to the inactivity threshold.
		// An agent may not delete consumers: the server removes it
		// after InactiveThreshold.
		if info := cons.CachedInfo(); info != nil && c.mayPublish(jetstream.DefaultAPIPrefix+"CONSUMER.DELETE."+stream+"."+info.Name) {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_ = c.js.DeleteConsumer(dctx, stream, info.Name)
			cancel()
		}
	}()
	// Without Follow, read what was stored when the read started: the
	// consumer's pending count at creation, or less if limits remove
	// messages meanwhile (then the stream's own pending count says so).
	//
	// A replicated stream places the ordered consumer on any of its
	// replicas, and a follower may not yet hold the newest messages, so
	// its pending count can come up short. There the bound is the
	// sequence of the last matching message as the stream leader has it,
	// and the read goes on until the consumer has delivered it.
	var (
		remaining  uint64
		last       uint64 // replicated: the last matching sequence
		replicated = c.cfg.Replicas > 1
	)
	if !opts.Follow {
		info := cons.CachedInfo()
		if info == nil {
			return fmt.Errorf("natsjs: read %s: no consumer info", subject)
		}
		if replicated {
			var lastTime time.Time
			if last, lastTime, err = c.lastMessage(ctx, stream, subject); err != nil {
				return fmt.Errorf("natsjs: read %s: %w", subject, err)
			}
			switch {
			case last == 0, cfg.DeliverPolicy == jetstream.DeliverNewPolicy:
				return nil
			case cfg.DeliverPolicy == jetstream.DeliverByStartSequencePolicy && last < cfg.OptStartSeq:
				return nil
			case cfg.DeliverPolicy == jetstream.DeliverByStartTimePolicy && lastTime.Before(*cfg.OptStartTime):
				return nil
			}
		} else {
			if info.NumPending == 0 {
				return nil
			}
			remaining = info.NumPending
		}
	}
	// What is to be read is counted before the first pull is sent.
	if readCounted != nil {
		readCounted()
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("natsjs: read %s: %w", subject, err)
	}
	defer it.Stop()
	// A bounded read's waits stay single long Next calls, so the ordered
	// consumer's heartbeat check still replaces a consumer that went
	// quiet; a watcher beside them ends the read when what it counted is
	// gone (watchRead).
	next := ctx
	var watch *readWatch
	if ask := c.readQuestion(cons, stream, replicated); !opts.Follow && ask != askNothing {
		wctx, cancel := context.WithCancelCause(ctx)
		watch = &readWatch{}
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			c.watchRead(wctx, cancel, ask, cons, stream, subject, watch)
		}()
		defer func() {
			cancel(nil)
			<-stopped
		}()
		next = wctx
	}
	draining := false // the watcher found nothing left: take what is on its way
	for {
		var msg jetstream.Msg
		if draining {
			dctx, cancel := context.WithTimeout(ctx, readStall)
			msg, err = it.Next(jetstream.NextContext(dctx))
			cancel()
			if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				return nil
			}
		} else {
			msg, err = it.Next(jetstream.NextContext(next))
			if err != nil && ctx.Err() == nil && next.Err() != nil {
				cause := context.Cause(next)
				if errors.Is(cause, errReadDone) {
					draining = true
					continue
				}
				return fmt.Errorf("natsjs: read %s: %w", subject, cause)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("natsjs: read %s: %w", subject, err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("natsjs: read %s: %w", subject, err)
		}
		sm := queue.StreamMessage{
			Subject:  msg.Subject(),
			Data:     msg.Data(),
			Header:   headerMap(msg.Headers()),
			Sequence: md.Sequence.Stream,
			Time:     md.Timestamp,
		}
		if watch != nil {
			watch.seen.Store(md.Sequence.Stream)
			watch.delivered.Add(1)
		}
		if !fn(sm) {
			return nil
		}
		switch {
		case opts.Follow:
		case replicated:
			if md.Sequence.Stream >= last {
				return nil
			}
		default:
			remaining--
			if remaining == 0 || md.NumPending == 0 {
				return nil
			}
		}
	}
}

// readStall is how long a bounded read goes without a delivery before its
// watcher asks the server whether anything is still to come, and how long
// it then waits for what is already on its way.
const readStall = 500 * time.Millisecond

// readCounted, when set by a test, runs once a bounded read has counted
// what it will deliver, before it asks for the first message.
var readCounted func()

// errReadDone ends a bounded read whose remaining messages are gone.
var errReadDone = errors.New("natsjs: read: nothing left to deliver")

// readWatch is what a bounded read tells its watcher: the stream sequence
// of the last message it delivered, and how many it delivered.
type readWatch struct {
	seen      atomic.Uint64
	delivered atomic.Uint64
}

// watchRead ends a bounded read (cancel with errReadDone) when what it
// counted at its start was removed before delivery (a purge, an account's
// inventory dropped, limits), which would otherwise keep it waiting until
// ctx ends: whenever nothing was delivered for readStall, it asks the
// server whether anything is still to come. An error asking ends the read
// with that error.
func (c *Conn) watchRead(ctx context.Context, cancel context.CancelCauseFunc, ask readAsk, cons jetstream.Consumer, stream, subject string, w *readWatch) {
	tick := time.NewTicker(readStall)
	defer tick.Stop()
	delivered := w.delivered.Load()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if d := w.delivered.Load(); d != delivered {
			delivered = d
			continue
		}
		more, err := c.readPending(ctx, ask, cons, stream, subject, w.seen.Load())
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			cancel(err)
			return
		case !more:
			cancel(errReadDone)
			return
		}
	}
}

// readAsk is how a stalled read learns whether anything is left.
type readAsk int

const (
	askNothing     readAsk = iota // no question is allowed: wait
	askConsumer                   // the consumer's pending count
	askLastMessage                // the stream's last matching sequence
)

// readQuestion picks, once per read, the question the connection may put:
// a replicated read already asked the stream for its last matching
// message; otherwise the consumer's info, else the stream's last message,
// as permissions allow.
func (c *Conn) readQuestion(cons jetstream.Consumer, stream string, replicated bool) readAsk {
	switch {
	case replicated:
		return askLastMessage
	case cons.CachedInfo() != nil && c.mayPublish(jetstream.DefaultAPIPrefix+"CONSUMER.INFO."+stream+"."+cons.CachedInfo().Name):
		return askConsumer
	case c.mayPublish(jetstream.DefaultAPIPrefix + "STREAM.MSG.GET." + stream):
		return askLastMessage
	}
	return askNothing
}

// readPending reports whether a bounded read has messages left to deliver
// past seen: the consumer's pending count, or whether the stream's last
// matching sequence is past seen.
func (c *Conn) readPending(ctx context.Context, ask readAsk, cons jetstream.Consumer, stream, subject string, seen uint64) (bool, error) {
	if ask == askLastMessage {
		last, _, err := c.lastMessage(ctx, stream, subject)
		if err != nil {
			return false, err
		}
		return last > seen, nil
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return false, err
	}
	return info.NumPending > 0, nil
}

// lastMessage is the stream sequence and time of the last message matching
// subject (a filter may have wildcards), 0 if there is none, as the
// stream's leader has it (leaderLast).
func (c *Conn) lastMessage(ctx context.Context, stream, subject string) (uint64, time.Time, error) {
	m, err := c.leaderLast(ctx, stream, subject)
	if err != nil || m == nil {
		return 0, time.Time{}, err
	}
	return m.Sequence, m.Time, nil
}

// storedMsg is a message as the stream API returns it.
type storedMsg struct {
	Sequence uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	Header   []byte    `json:"hdrs"`
	Data     []byte    `json:"data"`
}

// leaderLast is the last message matching subject (a filter may have
// wildcards), nil if there is none, as the stream's leader has it: the
// request is not a direct get, which a follower behind the leader could
// answer.
func (c *Conn) leaderLast(ctx context.Context, stream, subject string) (*storedMsg, error) {
	req, err := json.Marshal(struct {
		LastFor string `json:"last_by_subj"`
	}{subject})
	if err != nil {
		return nil, err
	}
	var m *storedMsg
	err = retryAPI(ctx, func(ctx context.Context) error {
		msg, err := c.nc.RequestWithContext(ctx, jetstream.DefaultAPIPrefix+"STREAM.MSG.GET."+stream, req)
		if err != nil {
			return fmt.Errorf("last message of the stream: %w", err)
		}
		var resp struct {
			Message *storedMsg          `json:"message"`
			Error   *jetstream.APIError `json:"error"`
		}
		if err := json.Unmarshal(msg.Data, &resp); err != nil {
			return fmt.Errorf("last message of the stream: %w", err)
		}
		switch {
		case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
			m = nil
		case resp.Error != nil:
			return fmt.Errorf("last message of the stream: %w", resp.Error)
		case resp.Message == nil:
			return errors.New("last message of the stream: empty answer")
		default:
			m = resp.Message
		}
		return nil
	})
	return m, err
}

// ErrNoMessage is queue.ErrNoMessage, returned by Last when the subject
// holds no message.
var ErrNoMessage = queue.ErrNoMessage

// Last implements queue.LastReader: it returns the last message stored on one subject of an event or
// compacted role (for the watch inventory: the object's current state),
// with one direct request and no consumer.
func (c *Conn) Last(ctx context.Context, subject string) (queue.StreamMessage, error) {
	if c.closed.Load() {
		return queue.StreamMessage{}, queue.ErrClosed
	}
	tenant, role, err := c.checkSubject(subject, false)
	if err != nil {
		return queue.StreamMessage{}, fmt.Errorf("natsjs: last: %w", err)
	}
	if role.IsWork() {
		return queue.StreamMessage{}, fmt.Errorf("natsjs: last %s: %w: role %q is a work queue", subject, queue.ErrInvalidSubject, role)
	}
	if err := c.checkRole(ctx, tenant, role); err != nil {
		return queue.StreamMessage{}, fmt.Errorf("natsjs: last %s: %w", subject, err)
	}
	stream, err := c.js.Stream(ctx, c.streamName(tenant, kindOf(role)))
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return queue.StreamMessage{}, fmt.Errorf("natsjs: last %s: %w: %q", subject, queue.ErrUnknownTenant, tenant)
		}
		return queue.StreamMessage{}, fmt.Errorf("natsjs: last %s: %w", subject, err)
	}
	m, err := stream.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return queue.StreamMessage{}, fmt.Errorf("natsjs: last %s: %w", subject, ErrNoMessage)
		}
		return queue.StreamMessage{}, fmt.Errorf("natsjs: last %s: %w", subject, err)
	}
	return queue.StreamMessage{Subject: m.Subject, Data: m.Data, Header: headerMap(m.Header), Sequence: m.Sequence, Time: m.Time}, nil
}

// Purge removes every stored message matching subject (a filter) from an
// event or compacted role, e.g. the whole inventory of an account that was
// deactivated.
func (c *Conn) Purge(ctx context.Context, subject string) error {
	if c.closed.Load() {
		return queue.ErrClosed
	}
	tenant, role, err := c.checkSubject(subject, true)
	if err != nil {
		return fmt.Errorf("natsjs: purge: %w", err)
	}
	if role.IsWork() {
		return fmt.Errorf("natsjs: purge %s: %w: role %q is a work queue", subject, queue.ErrInvalidSubject, role)
	}
	if err := c.checkRole(ctx, tenant, role); err != nil {
		return fmt.Errorf("natsjs: purge %s: %w", subject, err)
	}
	stream, err := c.js.Stream(ctx, c.streamName(tenant, kindOf(role)))
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("natsjs: purge %s: %w: %q", subject, queue.ErrUnknownTenant, tenant)
		}
		return fmt.Errorf("natsjs: purge %s: %w", subject, err)
	}
	if err := stream.Purge(ctx, jetstream.WithPurgeSubject(subject)); err != nil {
		return fmt.Errorf("natsjs: purge %s: %w", subject, err)
	}
	return nil
}

// ListWork implements queue.WorkLister: it walks the stored messages of one
// work subject with direct gets by subject (a work-queue stream allows no
// second consumer on the subject), one request per message.
func (c *Conn) ListWork(ctx context.Context, subject string, fn func(queue.StreamMessage) bool) error {
	if c.closed.Load() {
		return queue.ErrClosed
	}
	tenant, role, err := c.checkSubject(subject, false)
	if err != nil {
		return fmt.Errorf("natsjs: list work: %w", err)
	}
	if !role.IsWork() {
		return fmt.Errorf("natsjs: list work %s: %w: role %q is not a work queue", subject, queue.ErrInvalidSubject, role)
	}
	if err := c.checkRole(ctx, tenant, role); err != nil {
		return fmt.Errorf("natsjs: list work %s: %w", subject, err)
	}
	stream, err := c.js.Stream(ctx, c.streamName(tenant, kindOf(role)))
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("natsjs: list work %s: %w: %q", subject, queue.ErrUnknownTenant, tenant)
		}
		return fmt.Errorf("natsjs: list work %s: %w", subject, err)
	}
	last := stream.CachedInfo().State.LastSeq
	for seq := uint64(1); seq <= last; {
		m, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("natsjs: list work %s: %w", subject, err)
		}
		if !fn(queue.StreamMessage{Subject: m.Subject, Data: m.Data, Header: headerMap(m.Header), Sequence: m.Sequence, Time: m.Time}) {
			return nil
		}
		seq = m.Sequence + 1
	}
	return nil
}

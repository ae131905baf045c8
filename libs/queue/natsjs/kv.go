package natsjs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outposthq/outpost/libs/kv"
	"github.com/outposthq/outpost/libs/queue"
)

// OpenStore creates (or opens) the JetStream KV bucket "<STACK>_<bucket>"
// (sanitized to [a-zA-Z0-9_-]) with history 1, file storage and the
// connection's replicas, and returns it as a kv.Store. Keys must be valid
// JetStream KV keys: [-/_=.a-zA-Z0-9], not starting or ending with '.'.
func (c *Conn) OpenStore(ctx context.Context, bucket string) (kv.Store, error) {
	if c.closed.Load() {
		return nil, queue.ErrClosed
	}
	if bucket == "" {
		return nil, errors.New("natsjs: open store: empty bucket name")
	}
	name := c.prefix + "_" + sanitizeName(bucket)
	var b jetstream.KeyValue
	err := retryAPI(ctx, func(ctx context.Context) error {
		var err error
		b, err = c.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      name,
			Description: "outpost store " + bucket + " of stack " + c.cfg.Stack,
			History:     1,
			Storage:     jetstream.FileStorage,
			Replicas:    c.cfg.Replicas,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("natsjs: open store %s: %w", name, err)
	}
	if c.cfg.Replicas > 1 {
		c.waitStreamLeader(ctx, "KV_"+name)
	}
	return &Store{kv: b, js: c.js, conn: c, name: name}, nil
}

// retryElection runs a read or a write of a KV bucket again, with backoff,
// when nothing answered it: the bucket's stream is electing a leader, or
// was just made and its replicas do not serve direct reads yet. A write
// nobody answered was not stored, so a compare-and-set stays exact. It
// tries for at most electionWait, less when ctx ends first: past that the
// cluster is out, not electing, and the caller hears so.
func retryElection(ctx context.Context, op func() error) error {
	ctx, cancel := context.WithTimeout(ctx, electionWait)
	defer cancel()
	b := leaderBackoff()
	for {
		err := op()
		if !errors.Is(err, jetstream.ErrNoStreamResponse) && !errors.Is(err, nats.ErrNoResponders) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(b.NextBackOff()):
		}
	}
}

// electionWait bounds retryElection.
const electionWait = 10 * time.Second

// Store is a kv.Store on a JetStream KV bucket. Revisions are the bucket
// stream's sequence numbers.
type Store struct {
	kv   jetstream.KeyValue
	js   jetstream.JetStream
	conn *Conn
	name string

	mu     sync.Mutex
	stream jetstream.Stream // the bucket's stream, once a delete looked it up

	// stale holds the keys whose next read goes to the leader.
	stale staleKeys
}

var _ kv.Store = (*Store)(nil)

// Bucket is the bucket's name.
func (s *Store) Bucket() string { return s.name }

// streamName is the name of the bucket's stream.
func (s *Store) streamName() string { return "KV_" + s.name }

// subjectPrefix is the prefix of the bucket's subjects, the key follows.
func (s *Store) subjectPrefix() string { return "$KV." + s.name + "." }

// bucketStream returns the bucket's stream, looked up at its first use
// rather than for every bucket opened: only a delete at any revision needs
// it.
func (s *Store) bucketStream(ctx context.Context) (jetstream.Stream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stream == nil {
		st, err := s.js.Stream(ctx, s.streamName())
		if err != nil {
			return nil, err
		}
		s.stream = st
	}
	return s.stream, nil
}

// Get implements kv.Store.
func (s *Store) Get(ctx context.Context, key string) (kv.Entry, error) {
	e, err := s.get(ctx, key)
	if err != nil {
		return kv.Entry{}, s.err("get", key, err)
	}
	return e, nil
}

// get reads key's value. A direct get may be answered by any replica (the
// one on the client's own server when there is one), also without a
// quorum: reads such as an API key's go on while the cluster cannot take
// writes. A follower can still hold a value the leader has replaced, and
// a compare-and-set made from it fails, and fails again at every such
// read while the follower lags, as on a loaded cluster. So on a
// replicated bucket, the read after a write of the key through this store
// conflicted (staleAfterConflict) goes to the bucket's leader, which holds
// every write it acknowledged.
func (s *Store) get(ctx context.Context, key string) (kv.Entry, error) {
	if s.replicated() && s.stale.take(key) {
		return s.leaderGet(ctx, key)
	}
	var e jetstream.KeyValueEntry
	err := retryElection(ctx, func() (err error) {
		e, err = s.kv.Get(ctx, key)
		return err
	})
	if err != nil {
		return kv.Entry{}, err
	}
	return kv.Entry{Key: key, Value: e.Value(), Revision: e.Revision()}, nil
}

func (s *Store) replicated() bool { return s.conn.cfg.Replicas > 1 }

// leaderGet reads key's value as the bucket's leader has it, with a
// stream message request rather than a direct get.
func (s *Store) leaderGet(ctx context.Context, key string) (kv.Entry, error) {
	// The key goes into a subject the request may hold wildcards in.
	if !kv.ValidKey(key) {
		return kv.Entry{}, jetstream.ErrInvalidKey
	}
	m, err := s.conn.leaderLast(ctx, s.streamName(), s.subjectPrefix()+key)
	if err != nil {
		return kv.Entry{}, err
	}
	if m == nil {
		return kv.Entry{}, jetstream.ErrKeyNotFound
	}
	if len(m.Header) > 0 {
		h, err := nats.DecodeHeadersMsg(m.Header)
		if err != nil {
			return kv.Entry{}, fmt.Errorf("headers of the value: %w", err)
		}
		if op := h.Get(kvOperationHeader); op == "DEL" || op == "PURGE" {
			return kv.Entry{}, jetstream.ErrKeyDeleted
		}
	}
	return kv.Entry{Key: key, Value: m.Data, Revision: m.Sequence}, nil
}

// staleKeys holds the keys whose write through the store conflicted: the
// next read of each goes to the leader (Store.get). A conflict that no
// read follows (a create found the key there and the caller was content)
// leaves its key behind, so the set is bounded: past staleKeysMax it is
// emptied, which only costs those keys' next reads a follower's answer.
type staleKeys struct {
	mu   sync.Mutex
	keys map[string]struct{}
}

const staleKeysMax = 4096

func (k *staleKeys) add(key string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.keys == nil || len(k.keys) >= staleKeysMax {
		k.keys = map[string]struct{}{}
	}
	k.keys[key] = struct{}{}
}

func (k *staleKeys) take(key string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.keys[key]
	delete(k.keys, key)
	return ok
}

// staleAfterConflict marks key for a read from the leader when err says
// the store's write of it conflicted.
func (s *Store) staleAfterConflict(key string, err error) {
	if s.replicated() && (errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) ||
		(err != nil && strings.Contains(err.Error(), "wrong last sequence"))) {
		s.stale.add(key)
	}
}

// Create implements kv.Store.
func (s *Store) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	var rev uint64
	err := retryElection(ctx, func() (err error) {
		rev, err = s.kv.Create(ctx, key, value)
		return err
	})
	if err != nil {
		s.staleAfterConflict(key, err)
		return 0, s.err("create", key, err)
	}
	return rev, nil
}

// Update implements kv.Store.
func (s *Store) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if rev == 0 {
		// JetStream would read revision 0 as "must not exist" and
		// create the key; no existing key has revision 0.
		if _, err := s.Get(ctx, key); err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("natsjs: update %s/%s at revision 0: %w", s.name, key, kv.ErrConflict)
	}
	var next uint64
	err := retryElection(ctx, func() (err error) {
		next, err = s.kv.Update(ctx, key, value, rev)
		return err
	})
	if err == nil {
		return next, nil
	}
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		// JetStream says the same for "changed since" and "never
		// existed"; the contract tells them apart, from the leader's
		// value on a replicated bucket.
		get := s.get
		if s.replicated() {
			get = s.leaderGet
		}
		s.staleAfterConflict(key, err)
		if _, gerr := get(ctx, key); errors.Is(gerr, jetstream.ErrKeyNotFound) || errors.Is(gerr, jetstream.ErrKeyDeleted) {
			return 0, fmt.Errorf("natsjs: update %s/%s: %w", s.name, key, kv.ErrNotFound)
		}
		return 0, fmt.Errorf("natsjs: update %s/%s at revision %d: %w", s.name, key, rev, kv.ErrConflict)
	}
	return 0, s.err("update", key, err)
}

// Delete implements kv.Store. The key is purged, not just marked deleted,
// so the bucket does not keep its history. At a revision, a KV purge does
// it, with compare-and-set, and leaves a purge marker as the key's one
// message. At any revision (rev 0), the key's messages are purged from the
// bucket's stream and nothing is left: a bucket whose keys come and go
// (the jobs' records, deleted past their retention) does not pile up a
// marker per key deleted, which every listing would read.
func (s *Store) Delete(ctx context.Context, key string, rev uint64) error {
	if _, err := s.get(ctx, key); err != nil {
		return s.err("delete", key, err)
	}
	if rev == 0 {
		if err := s.purge(ctx, s.subjectPrefix()+key); err != nil {
			return s.err("delete", key, err)
		}
		return nil
	}
	err := retryElection(ctx, func() error {
		return s.kv.Purge(ctx, key, jetstream.LastRevision(rev))
	})
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || strings.Contains(err.Error(), "wrong last sequence") {
			s.staleAfterConflict(key, err)
			return fmt.Errorf("natsjs: delete %s/%s at revision %d: %w", s.name, key, rev, kv.ErrConflict)
		}
		return s.err("delete", key, err)
	}
	return nil
}

// Prune implements kv.Store: the messages of key and of the keys under it
// are purged from the bucket's stream, without markers, in two requests
// (a subject filter cannot name both).
func (s *Store) Prune(ctx context.Context, key string) error {
	if !kv.ValidKey(key) {
		return fmt.Errorf("natsjs: prune %s/%q: %w", s.name, key, kv.ErrInvalidKey)
	}
	for _, subject := range []string{s.subjectPrefix() + key, s.subjectPrefix() + key + ".>"} {
		if err := s.purge(ctx, subject); err != nil {
			return s.err("prune", key, err)
		}
	}
	return nil
}

// purge removes the messages of subject from the bucket's stream, leaving
// no marker.
func (s *Store) purge(ctx context.Context, subject string) error {
	return retryElection(ctx, func() error {
		st, err := s.bucketStream(ctx)
		if err != nil {
			return err
		}
		return st.Purge(ctx, jetstream.WithPurgeSubject(subject))
	})
}

// listBatch bounds how many entries a List holds that its caller has not
// read yet: the broker sends more as the caller reads, so a caller that
// reads slowly (the scheduler's reaper paces its passes) spreads the
// broker's work too, instead of receiving the whole bucket at once.
const listBatch = 256

// listChase bounds how many times a listing reads on to the bucket's last
// sequence for the keys written while it ran.
const listChase = 4

// readHeartbeat is how often the broker tells a read's consumer it is
// there while it has nothing to send. Two missed in a row and the ordered
// consumer replaces itself: on a 3-node cluster a new consumer now and
// then delivers nothing, with no pull waiting on the broker's side, until
// it is replaced.
const readHeartbeat = time.Second

// readRecheck is how long a read waits, after a stall, for a message the
// bucket still holds: past the ordered consumer's missed-heartbeat check,
// which replaces a consumer that stopped delivering.
const readRecheck = 3 * readHeartbeat

// kvOperationHeader marks a KV delete or purge (values "DEL", "PURGE").
const kvOperationHeader = "KV-Operation"

// List implements kv.Store with an ordered consumer that delivers the last
// value of every key, pulled listBatch at a time: one consumer for the
// whole listing rather than a request per key, deleted when it ends.
//
// The bucket keeps one value per key, so a write while the listing runs
// removes the value the consumer was about to deliver and appends the new
// one after the bucket's last message. So once the consumer has read
// what the bucket held when the listing began, the listing reads on to
// the bucket's last sequence as it is then: every write that moved a key
// past the consumer is before it. A key written again while that is
// read moves again; the listing looks at the last sequence up to
// listChase times, so only a key written faster than the listing reads
// can escape it (the kv.Store contract), but for one case not understood:
// on a 3-node cluster under CPU contention, a key written once during
// the listing was seen to escape too, which the contract allows. Each key
// is handed to fn once.
func (s *Store) List(ctx context.Context, fn func(kv.Entry) bool) error {
	_, err := s.read(ctx, "list", jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy}, true, fn)
	return err
}

// Changes implements kv.Store with an ordered consumer from the sequence
// after rev: every write since, in order, pulled listBatch at a time.
func (s *Store) Changes(ctx context.Context, rev uint64, fn func(kv.Entry) bool) (uint64, error) {
	last, err := s.read(ctx, "changes", jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: rev + 1}, false, fn)
	return max(last, rev), err
}

// read delivers the bucket's messages as the ordered consumer of cfg
// (without its filter, which read sets) finds them, up to the bucket's
// last sequence as its stream leader has it when the read begins, and
// returns the revision it read up to. Reading up to that sequence, not
// counting what the consumer said was pending, keeps a read
// exact when the consumer's replica lags the leader and when the
// consumer's count of what is left reads zero too early (it does while the
// bucket is written). A listing (listing set) reads on for the keys
// written meanwhile (List), skips delete markers and hands each key once;
// changes pass delete markers on with a nil Value.
func (s *Store) read(ctx context.Context, op string, cfg jetstream.OrderedConsumerConfig, listing bool, fn func(kv.Entry) bool) (uint64, error) {
	stream := s.streamName()
	prefix := s.subjectPrefix()
	wrap := func(err error) error { return fmt.Errorf("natsjs: %s %s: %w", op, s.name, err) }
	all := prefix + ">"
	// The last sequence the bucket's stream gave a message, which may
	// since have been deleted: read up to it, or until nothing is left.
	target, err := s.lastSeq(ctx)
	if err != nil {
		return 0, wrap(err)
	}
	if target == 0 || target < cfg.OptStartSeq {
		return 0, nil
	}
	cfg.FilterSubjects = []string{all}
	cfg.InactiveThreshold = time.Minute
	var cons jetstream.Consumer
	err = retryElection(ctx, func() (err error) {
		// Created here, so its CachedInfo is set from now on.
		cons, err = s.js.OrderedConsumer(ctx, stream, cfg)
		return err
	})
	if err != nil {
		return 0, wrap(err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(listBatch), jetstream.PullHeartbeat(readHeartbeat))
	if err != nil {
		return 0, wrap(err)
	}
	defer func() {
		it.Stop()
		// Not left to its inactive threshold: every consumer of the
		// bucket's stream costs the broker a check on every write. (A
		// consumer the ordered one replaced after a gap is deleted by it.)
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
		defer cancel()
		_ = s.js.DeleteConsumer(dctx, stream, cons.CachedInfo().Name)
	}()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	var (
		last   = cfg.OptStartSeq - min(cfg.OptStartSeq, 1) // read up to: where the read starts, then the last delivered
		chase  int                                         // the looks at the bucket's last sequence a listing has left
		listed map[string]bool                             // the keys a listing handed to fn
	)
	if listing {
		chase, listed = listChase, make(map[string]bool)
	}
	wait := readStall
	ask := false // whether the bucket holds anything past last is to be asked
	for last < target {
		var msg jetstream.Msg
		if !ask {
			msg, err = it.Next(jetstream.NextMaxWait(wait))
			ask = errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil
		}
		if ask {
			// The awaited messages may have been deleted: the read is
			// done when the bucket holds nothing past what it read (the
			// question costs the broker a look at every key, so it is
			// put only when the consumer found nothing more). When it
			// does, the next wait is long enough for the ordered
			// consumer to see its heartbeats missing and replace a
			// consumer that stopped delivering.
			ask = false
			held, _, err := s.conn.lastMessage(ctx, stream, all)
			if err != nil {
				return last, wrap(err)
			}
			if held <= last {
				// What was there up to target is read or gone.
				return max(last, target), nil
			}
			target, wait = max(target, held), readRecheck
			continue
		}
		wait = readStall
		if err != nil {
			if ctx.Err() != nil {
				return last, wrap(ctx.Err())
			}
			return last, wrap(err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return last, wrap(err)
		}
		last = meta.Sequence.Stream
		if last >= target && chase > 0 {
			// Every write that removed a value before the consumer
			// reached it is now before the bucket's last sequence.
			chase--
			if target, err = s.lastSeq(ctx); err != nil {
				return last, wrap(err)
			}
		}
		// The consumer saw nothing more: what is left may be gone.
		ask = meta.NumPending == 0 && last < target
		e := kv.Entry{Key: strings.TrimPrefix(msg.Subject(), prefix), Value: msg.Data(), Revision: last}
		switch msg.Headers().Get(kvOperationHeader) {
		case "DEL", "PURGE":
			if listing {
				continue
			}
			e.Value = nil
		}
		if listing {
			if listed[e.Key] {
				continue
			}
			listed[e.Key] = true
		}
		if !fn(e) {
			return last, nil
		}
	}
	return last, nil
}

// lastSeq is the last sequence of the bucket's stream, as its leader has
// it.
func (s *Store) lastSeq(ctx context.Context) (uint64, error) {
	var last uint64
	err := retryElection(ctx, func() error {
		st, err := s.bucketStream(ctx)
		if err != nil {
			return err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return err
		}
		last = info.State.LastSeq
		return nil
	})
	return last, err
}

func (s *Store) err(op, key string, err error) error {
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		return fmt.Errorf("natsjs: %s %s/%s: %w", op, s.name, key, kv.ErrNotFound)
	case errors.Is(err, jetstream.ErrKeyExists):
		return fmt.Errorf("natsjs: %s %s/%s: %w", op, s.name, key, kv.ErrExists)
	case errors.Is(err, jetstream.ErrInvalidKey):
		return fmt.Errorf("natsjs: %s %s/%q: %w", op, s.name, key, kv.ErrInvalidKey)
	case unavailable(err):
		return fmt.Errorf("natsjs: %s %s/%s: %w: %w", op, s.name, key, queue.ErrUnavailable, err)
	}
	return fmt.Errorf("natsjs: %s %s/%s: %w", op, s.name, key, err)
}

// unavailable reports a failure that says the server is not there or not
// answering for the moment, rather than that the request was wrong.
func unavailable(err error) bool {
	return errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, context.DeadlineExceeded)
}

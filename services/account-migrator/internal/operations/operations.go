// Package operations sends changes (apply, delete, scale) to the watcher
// holding an account and keeps their outcome: a record per operation in
// the KV bucket "operations", PENDING until the watcher's OperationResult
// arrives on the tenant's results subject.
package operations

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/kv"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/signing"
	watchv1 "github.com/outposthq/outpost/proto/outpost/watch/v1"
	"github.com/outposthq/outpost/services/account-migrator/internal/metrics"
)

// Bucket is the KV bucket of operation records.
const Bucket = "operations"

// ErrInvalid is returned for an operation request that cannot be sent.
var ErrInvalid = errors.New("invalid operation")

// ErrNotFound is returned for an unknown operation id.
var ErrNotFound = errors.New("operation not found")

// States of an operation.
const (
	Pending   = "PENDING"
	Succeeded = "SUCCEEDED"
	Failed    = "FAILED"
)

// Types of operations.
const (
	TypeApply  = "apply"
	TypeDelete = "delete"
	TypeScale  = "scale"
)

// Request is the body of POST .../operations.
type Request struct {
	Type       string `json:"type"`
	Manifests  string `json:"manifests,omitempty"`
	Namespace  string `json:"namespace,omitempty"`
	Force      bool   `json:"force,omitempty"`
	APIVersion string `json:"apiVersion,omitempty"`
	Kind       string `json:"kind,omitempty"`
	Name       string `json:"name,omitempty"`
	Replicas   *int32 `json:"replicas,omitempty"`
}

// Object is one object an operation touched.
type Object struct {
	APIVersion      string `json:"apiVersion"`
	Kind            string `json:"kind"`
	Namespace       string `json:"namespace,omitempty"`
	Name            string `json:"name"`
	ResourceVersion string `json:"resourceVersion,omitempty"`
	Action          string `json:"action,omitempty"`
}

// Record is one operation and, once done, its outcome.
type Record struct {
	ID      string `json:"id"`
	Account string `json:"account"`
	Type    string `json:"type"`
	State   string `json:"state"`
	// OK is set once the result arrived: whether the operation succeeded.
	OK *bool `json:"ok,omitempty"`
	// Target names the object of a delete or scale.
	Target      *Object   `json:"target,omitempty"`
	Error       string    `json:"error,omitempty"`
	Code        int32     `json:"code,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	Objects     []Object  `json:"objects,omitempty"`
	Watcher     string    `json:"watcherId,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
	CompletedAt time.Time `json:"completedAt,omitzero"`
}

// Done reports whether the result arrived.
func (r *Record) Done() bool { return r.State != Pending }

// Publisher publishes messages (queue.Broker.Publish).
type Publisher = queue.Publisher

// Consumer starts durable consumers (queue.Broker.Consume).
type Consumer = queue.Subscriber

// Service submits operations and records their results.
type Service struct {
	pub      Publisher
	store    kv.Store
	subjects queue.Subjects
	metrics  *metrics.Metrics
	log      *slog.Logger
	poll     time.Duration
	// maxDeliveries bounds the deliveries of one result before it is
	// dead-lettered with the reason.
	maxDeliveries int
	// signer signs every Operation; nil sends them unsigned (tests).
	signer *signing.Signer
}

// New returns the service over the operations store; maxDeliveries bounds
// the deliveries of one operation result (a result that cannot be stored
// is retried every second until then).
func New(pub Publisher, store kv.Store, subjects queue.Subjects, maxDeliveries int, m *metrics.Metrics, log *slog.Logger) *Service {
	return &Service{pub: pub, store: store, subjects: subjects, metrics: m, log: log, poll: 50 * time.Millisecond, maxDeliveries: maxDeliveries}
}

// WithSigner makes s sign every Operation it sends with signer.
func (s *Service) WithSigner(signer *signing.Signer) *Service {
	s.signer = signer
	return s
}

func key(tenant, id string) string { return tenant + "." + id }

// build validates req and returns the Operation to send and the record.
func build(account string, req Request) (*watchv1.Operation, *Record, error) {
	id := uuid.NewString()
	op := &watchv1.Operation{Id: id, Account: account}
	rec := &Record{ID: id, Account: account, Type: req.Type, State: Pending}
	ref := func() (*watchv1.ObjectRef, error) {
		for _, f := range []struct{ name, v string }{{"apiVersion", req.APIVersion}, {"kind", req.Kind}, {"name", req.Name}} {
			if f.v == "" {
				return nil, fmt.Errorf("%w: %s is required for %s", ErrInvalid, f.name, req.Type)
			}
		}
		rec.Target = &Object{APIVersion: req.APIVersion, Kind: req.Kind, Namespace: req.Namespace, Name: req.Name}
		return &watchv1.ObjectRef{ApiVersion: req.APIVersion, Kind: req.Kind, Namespace: req.Namespace, Name: req.Name}, nil
	}
	switch req.Type {
	case TypeApply:
		if req.Manifests == "" {
			return nil, nil, fmt.Errorf("%w: manifests is required for apply", ErrInvalid)
		}
		op.Kind = &watchv1.Operation_Apply{Apply: &watchv1.Apply{Manifests: []byte(req.Manifests), Force: req.Force, Namespace: req.Namespace}}
	case TypeDelete:
		r, err := ref()
		if err != nil {
			return nil, nil, err
		}
		op.Kind = &watchv1.Operation_Delete{Delete: &watchv1.Delete{Object: r}}
	case TypeScale:
		r, err := ref()
		if err != nil {
			return nil, nil, err
		}
		if req.Replicas == nil || *req.Replicas < 0 {
			return nil, nil, fmt.Errorf("%w: replicas (0 or more) is required for scale", ErrInvalid)
		}
		op.Kind = &watchv1.Operation_Scale{Scale: &watchv1.Scale{Object: r, Replicas: *req.Replicas}}
	default:
		return nil, nil, fmt.Errorf("%w: type %q: want apply, delete or scale", ErrInvalid, req.Type)
	}
	return op, rec, nil
}

// Submit records the operation as PENDING and sends it to the account's
// ops queue.
func (s *Service) Submit(ctx context.Context, tenant, account string, req Request) (*Record, error) {
	op, rec, err := build(account, req)
	if err != nil {
		return nil, err
	}
	rec.CreatedAt = time.Now().UTC()
	raw, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("encode operation: %w", err)
	}
	if _, err := s.store.Create(ctx, key(tenant, rec.ID), raw); err != nil {
		return nil, fmt.Errorf("store operation: %w", err)
	}
	op.Envelope = events.NewEnvelope(tenant, 1, rec.ID, "")
	if s.signer != nil {
		err = s.signer.Sign(op, signing.Binding{Tenant: tenant, Scope: signing.AccountScope(account), Subject: rec.ID, Attempt: 1})
	}
	var msg queue.Message
	if err == nil {
		msg, err = events.Encode(s.subjects.Ops(tenant, account), op, rec.ID)
	}
	if err == nil {
		err = s.pub.Publish(ctx, msg)
	}
	if err != nil {
		_ = s.complete(ctx, tenant, rec.ID, func(r *Record) {
			notOK := false
			r.State, r.Error, r.OK = Failed, "not sent: "+err.Error(), &notOK
		})
		return nil, fmt.Errorf("send operation: %w", err)
	}
	s.metrics.Operation(tenant, req.Type, "submitted")
	s.log.Info("operation sent", "tenant", tenant, "account", account, "operation", rec.ID, "type", req.Type)
	return rec, nil
}

// Get returns one operation of tenant.
func (s *Service) Get(ctx context.Context, tenant, id string) (*Record, error) {
	if !queue.ValidToken(id) {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	en, err := s.store.Get(ctx, key(tenant, id))
	if errors.Is(err, kv.ErrNotFound) {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(en.Value, &r); err != nil {
		return nil, fmt.Errorf("decode operation %q: %w", id, err)
	}
	return &r, nil
}

// Wait polls the record until it is done or d has passed; it returns the
// record as it last was. Polling the store, rather than waiting on this
// process's consumer, works whichever replica receives the result.
func (s *Service) Wait(ctx context.Context, tenant, id string, d time.Duration) (*Record, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	t := time.NewTicker(s.poll)
	defer t.Stop()
	for {
		r, err := s.Get(context.WithoutCancel(ctx), tenant, id)
		if err != nil || r.Done() {
			return r, err
		}
		select {
		case <-ctx.Done():
			return r, nil
		case <-t.C:
		}
	}
}

func (s *Service) complete(ctx context.Context, tenant, id string, fn func(*Record)) error {
	_, err := kv.Mutate(ctx, s.store, key(tenant, id), 10, func(cur []byte) ([]byte, bool, error) {
		var r Record
		if err := json.Unmarshal(cur, &r); err != nil {
			return nil, false, err
		}
		if r.Done() {
			return nil, false, nil
		}
		fn(&r)
		r.CompletedAt = time.Now().UTC()
		b, err := json.Marshal(&r)
		return b, err == nil, err
	})
	return err
}

// Start consumes the tenant's OperationResults until the returned consumer
// is stopped.
func (s *Service) Start(ctx context.Context, c Consumer, tenant string) (queue.Consumer, error) {
	subject := s.subjects.OperationResults(tenant)
	cons, err := c.Consume(ctx, queue.ConsumerConfig{Name: "account-migrator", Subject: subject, MaxDeliveries: s.maxDeliveries, Concurrency: 4}, s.handleResult(tenant))
	if err != nil {
		return nil, fmt.Errorf("consume %s: %w", subject, err)
	}
	return cons, nil
}

func (s *Service) handleResult(tenant string) queue.Handler {
	return func(ctx context.Context, d queue.Delivery) {
		res, err := events.DecodeAs[*watchv1.OperationResult](d.Header(), d.Data())
		if err == nil && res.GetId() == "" {
			err = fmt.Errorf("%w: operation result without id", events.ErrMalformed)
		}
		if err != nil {
			s.metrics.Poison(tenant, "results")
			s.log.Warn("malformed event terminated", "tenant", tenant, "consumer", "results", "error", err)
			_ = d.Term(ctx, err.Error())
			return
		}
		var typ string
		err = s.complete(ctx, tenant, res.GetId(), func(r *Record) {
			typ = r.Type
			ok := res.GetOk()
			r.State, r.Watcher, r.OK = Succeeded, res.GetWatcherId(), &ok
			if !res.GetOk() {
				r.State, r.Error, r.Code, r.Reason = Failed, res.GetError(), res.GetCode(), res.GetReason()
			}
			for _, o := range res.GetObjects() {
				ref := o.GetObject()
				r.Objects = append(r.Objects, Object{
					APIVersion: ref.GetApiVersion(), Kind: ref.GetKind(), Namespace: ref.GetNamespace(), Name: ref.GetName(),
					ResourceVersion: o.GetResourceVersion(), Action: o.GetAction(),
				})
			}
		})
		switch {
		case errors.Is(err, kv.ErrNotFound):
			s.log.Warn("result of an unknown operation dropped", "tenant", tenant, "operation", res.GetId())
		case err != nil:
			s.log.Warn("operation result not stored; retrying", "tenant", tenant, "operation", res.GetId(), "error", err)
			_ = d.Nak(ctx, time.Second)
			return
		case typ != "":
			outcome := "succeeded"
			if !res.GetOk() {
				outcome = "failed"
			}
			s.metrics.Operation(tenant, typ, outcome)
		}
		_ = d.Ack(ctx)
	}
}

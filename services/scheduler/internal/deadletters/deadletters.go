// Package deadletters lists, replays and purges a tenant's dead letters
// for the API. The dead letters themselves stay in the broker's dead-letter
// stream (queue.DeadLetterStore); what the scheduler adds is the replay:
// the original message republished to its original subject with a fresh
// deduplication id, logged and recorded in the KV bucket "deadletters"
// (key "<tenant>.<id>"), whose records the listing shows.
package deadletters

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/outposthq/outpost/libs/kv"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/services/scheduler/internal/metrics"
)

// Bucket is the KV bucket of replay records.
const Bucket = "deadletters"

// maxReplaysKept bounds the replays a record lists (the count goes on).
const maxReplaysKept = 20

// ErrUnsupported is returned when the queue backend keeps no dead letters
// to list (SQS: the scheduler consumes its dead-letter queues).
var ErrUnsupported = fmt.Errorf("dead letters can be listed and replayed only with queue.kind nats: on SQS the scheduler consumes the dead-letter queues (it logs every dead letter it takes): %w", errors.ErrUnsupported)

// ErrNotReplayable is returned for a dead letter that has no original
// subject of its tenant to go back to (published directly to the
// dead-letter subject, or naming another tenant's subject), or whose
// replay could not do what it seems to (a job's dispatch).
var ErrNotReplayable = errors.New("dead letter cannot be replayed")

// ErrConcurrentReplay is returned when another replay of the same dead
// letter was recorded first: its publish went out, this one was a
// duplicate of it or is not recorded; look at the entry and try again.
var ErrConcurrentReplay = errors.New("the dead letter was replayed at the same time by another request")

// Publisher publishes a replay (queue.Broker.Publish).
type Publisher = queue.Publisher

// Replay is one replay of a dead letter.
type Replay struct {
	At       time.Time `json:"at"`
	DedupeID string    `json:"dedupe_id"`
	Subject  string    `json:"subject"`
}

// Record is what the scheduler keeps of a dead letter's replays.
type Record struct {
	// Count is how many times it was replayed; Replays lists the last
	// ones (at most 20).
	Count   int      `json:"count"`
	Replays []Replay `json:"replays"`
}

// Entry is a dead letter with its replays.
type Entry struct {
	queue.DeadLetter
	Record Record
}

// Service carries out the dead-letter operations of the API.
type Service struct {
	store  queue.DeadLetterStore
	pub    Publisher
	opener kv.Opener
	stack  string
	m      *metrics.Metrics
	log    *slog.Logger
	now    func() time.Time

	mu    sync.Mutex
	audit kv.Store // opened on first use
}

// New returns the service; store is nil when the backend keeps no dead
// letters, and every operation then returns ErrUnsupported.
func New(store queue.DeadLetterStore, pub Publisher, opener kv.Opener, stack string, m *metrics.Metrics, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	return &Service{store: store, pub: pub, opener: opener, stack: stack, m: m, log: log, now: time.Now}
}

func (s *Service) records(ctx context.Context) (kv.Store, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.audit != nil {
		return s.audit, nil
	}
	st, err := s.opener.OpenStore(ctx, Bucket)
	if err != nil {
		return nil, fmt.Errorf("open the %s bucket: %w", Bucket, err)
	}
	s.audit = st
	return st, nil
}

func key(tenant, id string) string { return tenant + "." + id }

func (s *Service) record(ctx context.Context, tenant, id string) (Record, uint64, error) {
	st, err := s.records(ctx)
	if err != nil {
		return Record{}, 0, err
	}
	e, err := st.Get(ctx, key(tenant, id))
	if errors.Is(err, kv.ErrNotFound) {
		return Record{}, 0, nil
	}
	if err != nil {
		return Record{}, 0, fmt.Errorf("read the replays of dead letter %s: %w", id, err)
	}
	var r Record
	if err := json.Unmarshal(e.Value, &r); err != nil {
		return Record{}, 0, fmt.Errorf("decode the replays of dead letter %s: %w", id, err)
	}
	return r, e.Revision, nil
}

// List returns a page of the tenant's dead letters, oldest first, with
// their replays, and the id to list after for the next page.
func (s *Service) List(ctx context.Context, tenant string, q queue.DeadLetterQuery) ([]Entry, string, error) {
	if s.store == nil {
		return nil, "", ErrUnsupported
	}
	page, next, err := s.store.DeadLetters(ctx, tenant, q)
	if err != nil {
		return nil, "", err
	}
	out := make([]Entry, 0, len(page))
	for _, d := range page {
		r, _, err := s.record(ctx, tenant, d.ID)
		if err != nil {
			return nil, "", err
		}
		out = append(out, Entry{DeadLetter: d, Record: r})
	}
	return out, next, nil
}

// Get returns one dead letter of the tenant with its replays.
func (s *Service) Get(ctx context.Context, tenant, id string) (Entry, error) {
	if s.store == nil {
		return Entry{}, ErrUnsupported
	}
	d, err := s.store.DeadLetter(ctx, tenant, id)
	if err != nil {
		return Entry{}, err
	}
	r, _, err := s.record(ctx, tenant, id)
	if err != nil {
		return Entry{}, err
	}
	return Entry{DeadLetter: d, Record: r}, nil
}

// Replay republishes the dead letter to its original subject with the
// deduplication id "replay/<id>/<n>", n counting its replays, and records
// the replay. The dead letter stays (DELETE purges it). A replay whose
// record could not be written after the publish is answered with the
// error; repeated, it publishes the same id, which the broker drops within
// its deduplication window.
func (s *Service) Replay(ctx context.Context, tenant, id string) (Entry, error) {
	if s.store == nil {
		return Entry{}, ErrUnsupported
	}
	d, err := s.store.DeadLetter(ctx, tenant, id)
	if err != nil {
		return Entry{}, err
	}
	if err := s.replayable(tenant, d); err != nil {
		return Entry{}, err
	}
	rec, rev, err := s.record(ctx, tenant, id)
	if err != nil {
		return Entry{}, err
	}
	n := rec.Count + 1
	dedupe := "replay/" + id + "/" + strconv.Itoa(n)
	if err := s.pub.Publish(ctx, queue.ReplayMessage(d, dedupe)); err != nil {
		return Entry{}, fmt.Errorf("republish dead letter %s to %s: %w", id, d.OriginalSubject, err)
	}
	rec.Count = n
	rec.Replays = append(rec.Replays, Replay{At: s.now().UTC(), DedupeID: dedupe, Subject: d.OriginalSubject})
	if len(rec.Replays) > maxReplaysKept {
		rec.Replays = rec.Replays[len(rec.Replays)-maxReplaysKept:]
	}
	if err := s.save(ctx, tenant, id, rec, rev); err != nil {
		return Entry{}, err
	}
	s.m.DeadLetterReplays.WithLabelValues(string(d.Role)).Inc()
	s.log.Info("dead letter replayed", "tenant", tenant, "id", id, "role", string(d.Role), "subject", d.OriginalSubject,
		"dedupe_id", dedupe, "replay", n, "reason", d.Reason, "attempts", d.Attempts)
	return Entry{DeadLetter: d, Record: rec}, nil
}

func (s *Service) replayable(tenant string, d queue.DeadLetter) error {
	if d.Direct || d.OriginalSubject == "" {
		return fmt.Errorf("%w: it was published directly to %s and names no original subject", ErrNotReplayable, d.Subject)
	}
	p, err := queue.ParseSubject(d.OriginalSubject)
	if err != nil || p.Stack != s.stack || p.Tenant != tenant || p.Role == queue.RoleDeadLetter {
		return fmt.Errorf("%w: its original subject %q is not a subject of tenant %q", ErrNotReplayable, d.OriginalSubject, tenant)
	}
	if p.Role == queue.RoleJobs {
		// The scheduler ended the job FAILED when its dispatch was
		// dead-lettered: a runner taking the replayed dispatch would be
		// fenced and told to cancel.
		return fmt.Errorf("%w: a dead-lettered dispatch ended its job FAILED; submit the job again (POST /api/v1/jobs) instead", ErrNotReplayable)
	}
	return nil
}

// save writes the replay record with compare-and-set: two replays of one
// dead letter at once publish the same dedupe id (the broker keeps one),
// and the second writer's conflict is reported to its caller.
func (s *Service) save(ctx context.Context, tenant, id string, rec Record, rev uint64) error {
	st, err := s.records(ctx)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode the replays of dead letter %s: %w", id, err)
	}
	if rev == 0 {
		_, err = st.Create(ctx, key(tenant, id), raw)
	} else {
		_, err = st.Update(ctx, key(tenant, id), raw, rev)
	}
	if errors.Is(err, kv.ErrConflict) || errors.Is(err, kv.ErrExists) {
		return fmt.Errorf("record the replay of dead letter %s: %w", id, ErrConcurrentReplay)
	}
	if err != nil {
		return fmt.Errorf("record the replay of dead letter %s: %w", id, err)
	}
	return nil
}

// Delete purges the dead letter and its replay record.
func (s *Service) Delete(ctx context.Context, tenant, id string) error {
	if s.store == nil {
		return ErrUnsupported
	}
	d, err := s.store.DeadLetter(ctx, tenant, id)
	if err != nil {
		return err
	}
	if err := s.store.DeleteDeadLetter(ctx, tenant, id); err != nil {
		return err
	}
	st, err := s.records(ctx)
	if err == nil {
		err = st.Delete(ctx, key(tenant, id), 0)
	}
	if err != nil && !errors.Is(err, kv.ErrNotFound) {
		s.log.Warn("replay record of a deleted dead letter not removed", "tenant", tenant, "id", id, "error", err)
	}
	s.log.Info("dead letter deleted", "tenant", tenant, "id", id, "role", string(d.Role), "subject", d.OriginalSubject, "reason", d.Reason)
	return nil
}

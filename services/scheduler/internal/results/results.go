// Package results keeps what ingest and assertion jobs send back
// (outpost.ingest.v1.JobRecords): the records and check results of each
// job's current attempt, and a per-tenant metadata view with the latest
// record of every URN. Both live in JetStream KV, with no second database.
//
// Layout of the results bucket (results_<tenant>):
//
//   - "<job>" holds an index: the attempt it belongs to and the first_seq
//     of each batch stored for it, sorted;
//   - "<job>.<attempt>.<first_seq>" holds one batch, as the JobRecords
//     protobuf the runner sent (each under the broker's message limit, so
//     under the KV value limit too).
//
// A job's results are thus chunked by the runner's own batches, and a read
// pages through them a few batches at a time: memory stays bounded by the
// page, whatever the size of the job. Batches of an attempt that a newer
// attempt replaced stay in the bucket but are no longer in the index, so
// they are never read; all of a job's keys go when its record expires
// (Delete).
//
// The metadata bucket (metadata_<tenant>) is keyed by the SHA-256 of the
// URN (URNs hold characters KV keys cannot) and holds the latest record of
// that URN as JSON; an older record (by produced_at) never replaces a newer
// one.
package results

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/libs/kv"
	ingestv1 "github.com/outposthq/outpost/proto/outpost/ingest/v1"
)

// MaxBatches bounds the batches indexed for one attempt of a job; later
// batches are dropped and the index marked truncated, so an index stays
// well under the KV value limit.
const MaxBatches = 20000

const mutateAttempts = 20

// ErrStale is returned for the batch of an attempt older than the one the
// index holds.
var ErrStale = errors.New("records of a stale attempt")

// ErrNotFound is returned for a job without results.
var ErrNotFound = errors.New("no results")

// Index is the stored index of a job's results.
type Index struct {
	JobID     string    `json:"job_id"`
	Attempt   int       `json:"attempt"`
	Batches   []uint64  `json:"batches"`
	Records   int       `json:"records"`
	Checks    int       `json:"checks"`
	Truncated bool      `json:"truncated,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Store keeps the results and the metadata view of one tenant.
type Store struct {
	results  kv.Store
	metadata kv.Store
}

// NewStore returns a Store over the tenant's results and metadata buckets.
func NewStore(results, metadata kv.Store) *Store {
	return &Store{results: results, metadata: metadata}
}

func batchKey(job string, attempt int, seq uint64) string {
	return job + "." + strconv.Itoa(attempt) + "." + strconv.FormatUint(seq, 10)
}

// Add stores one batch of attempt's results and indexes it. A batch seen
// before (a redelivery) is indexed once. It returns ErrStale when the index
// belongs to a newer attempt.
func (s *Store) Add(ctx context.Context, jr *ingestv1.JobRecords, attempt int, now time.Time) error {
	job, seq := jr.GetJobId(), jr.GetFirstSeq()
	b, err := proto.Marshal(jr)
	if err != nil {
		return fmt.Errorf("encode records of job %s: %w", job, err)
	}
	// The batch first, then the index: an index never names a batch that
	// is not there.
	if _, err := s.results.Create(ctx, batchKey(job, attempt, seq), b); err != nil && !errors.Is(err, kv.ErrExists) {
		return fmt.Errorf("store records of job %s: %w", job, err)
	}
	for range mutateAttempts {
		e, err := s.results.Get(ctx, job)
		exists := err == nil
		if err != nil && !errors.Is(err, kv.ErrNotFound) {
			return fmt.Errorf("get results index of job %s: %w", job, err)
		}
		idx := Index{JobID: job, Attempt: attempt}
		if exists {
			if err := json.Unmarshal(e.Value, &idx); err != nil {
				return fmt.Errorf("decode results index of job %s: %w", job, err)
			}
		}
		switch {
		case idx.Attempt > attempt:
			return fmt.Errorf("%w: attempt %d, results hold attempt %d", ErrStale, attempt, idx.Attempt)
		case idx.Attempt < attempt:
			idx = Index{JobID: job, Attempt: attempt}
		}
		i, found := slices.BinarySearch(idx.Batches, seq)
		if found {
			return nil
		}
		if len(idx.Batches) >= MaxBatches {
			if idx.Truncated {
				return nil
			}
			idx.Truncated = true
		} else {
			idx.Batches = slices.Insert(idx.Batches, i, seq)
			idx.Records += len(jr.GetRecords())
			idx.Checks += len(jr.GetChecks())
		}
		idx.UpdatedAt = now
		next, err := json.Marshal(idx)
		if err != nil {
			return fmt.Errorf("encode results index of job %s: %w", job, err)
		}
		if exists {
			_, err = s.results.Update(ctx, job, next, e.Revision)
		} else {
			_, err = s.results.Create(ctx, job, next)
		}
		if errors.Is(err, kv.ErrConflict) || errors.Is(err, kv.ErrExists) {
			continue
		}
		if err != nil {
			return fmt.Errorf("write results index of job %s: %w", job, err)
		}
		return nil
	}
	return fmt.Errorf("write results index of job %s: %w", job, kv.ErrConflict)
}

// Index returns the index of job's results, or ErrNotFound.
func (s *Store) Index(ctx context.Context, job string) (Index, error) {
	e, err := s.results.Get(ctx, job)
	if errors.Is(err, kv.ErrNotFound) {
		return Index{}, fmt.Errorf("%w: job %s", ErrNotFound, job)
	}
	if err != nil {
		return Index{}, fmt.Errorf("get results index of job %s: %w", job, err)
	}
	var idx Index
	if err := json.Unmarshal(e.Value, &idx); err != nil {
		return Index{}, fmt.Errorf("decode results index of job %s: %w", job, err)
	}
	return idx, nil
}

// Batches calls fn with the batches of idx whose first_seq is at least
// from, in order, until fn returns false.
func (s *Store) Batches(ctx context.Context, idx Index, from uint64, fn func(*ingestv1.JobRecords) bool) error {
	start, _ := slices.BinarySearch(idx.Batches, from)
	for _, seq := range idx.Batches[start:] {
		e, err := s.results.Get(ctx, batchKey(idx.JobID, idx.Attempt, seq))
		if err != nil {
			return fmt.Errorf("get records of job %s at %d: %w", idx.JobID, seq, err)
		}
		var jr ingestv1.JobRecords
		if err := proto.Unmarshal(e.Value, &jr); err != nil {
			return fmt.Errorf("decode records of job %s at %d: %w", idx.JobID, seq, err)
		}
		if !fn(&jr) {
			return nil
		}
	}
	return nil
}

// Delete removes the index and the batches of every attempt of job's
// results; that there are none is no error. The metadata view keeps its
// records: it is the tenant's catalogue, not the job's.
func (s *Store) Delete(ctx context.Context, job string) error {
	if err := s.results.Prune(ctx, job); err != nil {
		return fmt.Errorf("delete results of job %s: %w", job, err)
	}
	return nil
}

// Dataset is the metadata view's entry of one URN.
type Dataset struct {
	URN        string         `json:"urn"`
	EntityType string         `json:"entity_type"`
	Platform   string         `json:"platform"`
	Name       string         `json:"name"`
	Aspects    map[string]any `json:"aspects,omitempty"`
	JobID      string         `json:"job_id"`
	Attempt    int            `json:"attempt"`
	ProducedAt time.Time      `json:"produced_at"`
	UpdatedAt  time.Time      `json:"updated_at"`
}

func urnKey(urn string) string {
	h := sha256.Sum256([]byte(urn))
	return hex.EncodeToString(h[:])
}

// PutMetadata records each record of jr as the latest of its URN, unless a
// newer one is there.
func (s *Store) PutMetadata(ctx context.Context, jr *ingestv1.JobRecords, attempt int, now time.Time) error {
	produced := jr.GetProducedAt().AsTime()
	if jr.GetProducedAt() == nil {
		produced = now
	}
	for _, r := range jr.GetRecords() {
		if r.GetUrn() == "" {
			continue
		}
		d := Dataset{URN: r.Urn, EntityType: r.EntityType, Platform: r.Platform, Name: r.Name,
			JobID: jr.GetJobId(), Attempt: attempt, ProducedAt: produced, UpdatedAt: now}
		if len(r.Aspects) > 0 {
			d.Aspects = make(map[string]any, len(r.Aspects))
			for k, v := range r.Aspects {
				d.Aspects[k] = v.AsMap()
			}
		}
		if err := s.putDataset(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) putDataset(ctx context.Context, d Dataset) error {
	key := urnKey(d.URN)
	b, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("encode dataset %s: %w", d.URN, err)
	}
	for range mutateAttempts {
		e, err := s.metadata.Get(ctx, key)
		switch {
		case errors.Is(err, kv.ErrNotFound):
			_, err = s.metadata.Create(ctx, key, b)
		case err != nil:
			return fmt.Errorf("get dataset %s: %w", d.URN, err)
		default:
			var cur Dataset
			if json.Unmarshal(e.Value, &cur) == nil && cur.ProducedAt.After(d.ProducedAt) {
				return nil // a newer record is there
			}
			_, err = s.metadata.Update(ctx, key, b, e.Revision)
		}
		if errors.Is(err, kv.ErrConflict) || errors.Is(err, kv.ErrExists) {
			continue
		}
		if err != nil {
			return fmt.Errorf("put dataset %s: %w", d.URN, err)
		}
		return nil
	}
	return fmt.Errorf("put dataset %s: %w", d.URN, kv.ErrConflict)
}

// Datasets calls fn with every entry of the metadata view until it
// returns false. Entries that do not decode are skipped.
func (s *Store) Datasets(ctx context.Context, fn func(Dataset) bool) error {
	err := s.metadata.List(ctx, func(e kv.Entry) bool {
		var d Dataset
		if json.Unmarshal(e.Value, &d) != nil {
			return true
		}
		return fn(d)
	})
	if err != nil {
		return fmt.Errorf("list datasets: %w", err)
	}
	return nil
}

// Dataset returns the entry of urn, or ErrNotFound.
func (s *Store) Dataset(ctx context.Context, urn string) (Dataset, error) {
	e, err := s.metadata.Get(ctx, urnKey(urn))
	if errors.Is(err, kv.ErrNotFound) {
		return Dataset{}, fmt.Errorf("%w: %s", ErrNotFound, urn)
	}
	if err != nil {
		return Dataset{}, fmt.Errorf("get dataset %s: %w", urn, err)
	}
	var d Dataset
	if err := json.Unmarshal(e.Value, &d); err != nil {
		return Dataset{}, fmt.Errorf("decode dataset %s: %w", urn, err)
	}
	return d, nil
}

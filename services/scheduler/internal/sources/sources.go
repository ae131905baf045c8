// Package sources keeps ingestion sources: a job template (a recipe or an
// assertion spec, the executor pool) with an optional cron schedule in a
// time zone, in the tenant's sources_<tenant> KV bucket, written with
// compare-and-set. The engine (internal/dispatch) fires them.
//
// Exactly-once firing rests on the record: LastFire is the scheduled time
// of the last fire handled. A fire's job id is derived from the source id
// and the scheduled time (FireJobID), so replicas that fire the same time
// submit the same job, which the submit deduplication and the record's KV
// create make one; LastFire then moves forward with compare-and-set.
package sources

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/outposthq/outpost/libs/kv"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
)

// Labels put on the jobs a source creates.
const (
	LabelSource      = "outpost.io/source"
	LabelTrigger     = "outpost.io/trigger"
	LabelScheduledAt = "outpost.io/scheduled-at"
)

// Triggers of a run.
const (
	TriggerSchedule = "schedule"
	TriggerManual   = "manual"
)

// MaxIDLen keeps FireJobID within the 64 characters of a job id.
const MaxIDLen = 48

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,48}$`)

// ErrNotFound is returned for a source id without a (live) source.
var ErrNotFound = errors.New("source not found")

// ErrExists is returned by Create for an id in use.
var ErrExists = errors.New("source exists")

const mutateAttempts = 20

// Source is one ingestion source as stored and as the API returns it.
type Source struct {
	ID      string            `json:"id"`
	Tenant  string            `json:"tenant"`
	Pool    string            `json:"pool"`
	Task    jobs.Task         `json:"task"`
	Timeout jobs.Duration     `json:"timeout,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
	// Project is the project of the source's jobs; User is who created or
	// last changed the source (its principal): the source's jobs are
	// submitted as that user, for the polling rules of the pool's
	// deployment.
	Project  string `json:"project,omitempty"`
	User     string `json:"user,omitempty"`
	Schedule *Cron  `json:"schedule,omitempty"`
	Enabled  bool   `json:"enabled"`
	// LastFire is the scheduled time of the last fire handled; fires up
	// to it never run again. It starts at the creation (or enabling, or
	// rescheduling) time, so no fire from before then runs.
	LastFire  time.Time  `json:"last_fire"`
	NextFire  *time.Time `json:"next_fire,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	// Deleted marks a deleted source: the kv contract has no delete, so
	// a deleted source is a tombstone that Create may reuse.
	Deleted bool `json:"deleted,omitempty"`
}

// Cron is a source's schedule.
type Cron struct {
	Cron     string `json:"cron"`
	TimeZone string `json:"time_zone,omitempty"`
}

// ValidID reports whether id can name a source.
func ValidID(id string) bool { return idPattern.MatchString(id) }

// FireJobID is the job id of the fire of source id at scheduled time at:
// the same on every replica.
func FireJobID(id string, at time.Time) string {
	return id + "-" + strconv.FormatInt(at.Unix(), 10)
}

// Refresh sets NextFire from the schedule (nil when disabled or
// unscheduled).
func (s *Source) Refresh() {
	s.NextFire = nil
	if !s.Enabled || s.Schedule == nil {
		return
	}
	sch, err := ParseSchedule(s.Schedule.Cron, s.Schedule.TimeZone)
	if err != nil {
		return
	}
	if n := sch.Next(s.LastFire); !n.IsZero() {
		s.NextFire = &n
	}
}

// Store holds the sources of one tenant, keyed by id.
type Store struct {
	kv kv.Store
}

// NewStore returns a Store over the tenant's sources bucket.
func NewStore(s kv.Store) *Store { return &Store{kv: s} }

func decode(b []byte) (*Source, error) {
	var s Source
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decode source: %w", err)
	}
	return &s, nil
}

// Get returns the source id, or ErrNotFound.
func (st *Store) Get(ctx context.Context, id string) (*Source, error) {
	e, err := st.kv.Get(ctx, id)
	if errors.Is(err, kv.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("get source %s: %w", id, err)
	}
	s, err := decode(e.Value)
	if err != nil {
		return nil, err
	}
	if s.Deleted {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return s, nil
}

// Create stores a new source, over a deleted one of the same id if any;
// it returns ErrExists for a live one.
func (st *Store) Create(ctx context.Context, s *Source) error {
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode source %s: %w", s.ID, err)
	}
	_, err = st.kv.Create(ctx, s.ID, b)
	if !errors.Is(err, kv.ErrExists) {
		if err != nil {
			return fmt.Errorf("create source %s: %w", s.ID, err)
		}
		return nil
	}
	e, err := st.kv.Get(ctx, s.ID)
	if err != nil {
		return fmt.Errorf("get source %s: %w", s.ID, err)
	}
	if cur, err := decode(e.Value); err == nil && !cur.Deleted {
		return fmt.Errorf("%w: %s", ErrExists, s.ID)
	}
	if _, err := st.kv.Update(ctx, s.ID, b, e.Revision); err != nil {
		if errors.Is(err, kv.ErrConflict) {
			return fmt.Errorf("%w: %s", ErrExists, s.ID)
		}
		return fmt.Errorf("create source %s: %w", s.ID, err)
	}
	return nil
}

// Update reads source id, lets fn change it and writes it back with
// compare-and-set, calling fn again on a conflict; fn returns false to
// write nothing. It returns the source as stored afterwards.
func (st *Store) Update(ctx context.Context, id string, fn func(*Source) (bool, error)) (*Source, error) {
	var cur *Source
	_, err := kv.Mutate(ctx, st.kv, id, mutateAttempts, func(b []byte) ([]byte, bool, error) {
		s, err := decode(b)
		if err != nil {
			return nil, false, err
		}
		if s.Deleted {
			return nil, false, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		cur = s
		ok, err := fn(s)
		if err != nil || !ok {
			return nil, false, err
		}
		next, err := json.Marshal(s)
		return next, err == nil, err
	})
	if errors.Is(err, kv.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("update source %s: %w", id, err)
	}
	return cur, nil
}

// List calls fn for every live source until it returns false.
func (st *Store) List(ctx context.Context, fn func(*Source) bool) error {
	err := st.kv.List(ctx, func(e kv.Entry) bool {
		s, err := decode(e.Value)
		if err != nil || s.Deleted {
			return true
		}
		return fn(s)
	})
	if err != nil {
		return fmt.Errorf("list sources: %w", err)
	}
	return nil
}

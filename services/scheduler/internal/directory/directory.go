// Package directory is a tenant's users, teams, projects, environments and
// deployments, and the polling rules that decide which jobs a deployment
// may take (Gretel Hybrid's "Deployment User" model).
//
// A deployment is an executor pool bound to one deployment user: the
// principal that registered it with PUT /api/v1/deployments/{pool}.
// Registering it again with another credential rebinds it, as reinstalling
// a hybrid deployment with a new API key does. The directory lives in the
// tenant's KV bucket "directory_<tenant>", one key per entity, written with
// compare-and-set.
package directory

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/outposthq/outpost/libs/kv"
	"github.com/outposthq/outpost/libs/queue"
)

// ErrNotFound is returned for an entity that does not exist.
var ErrNotFound = errors.New("not found")

// ErrInUse is returned when deleting an entity others still refer to.
var ErrInUse = errors.New("in use")

// ErrRebind is returned when a principal that may not rebind a deployment
// registers it again under its own name.
var ErrRebind = errors.New("the deployment is bound to another deployment user")

// ErrInvalid is wrapped by the errors of a malformed id or value; the
// error is an *InvalidError naming the field.
var ErrInvalid = errors.New("invalid")

// InvalidError names the field of a malformed id or value.
type InvalidError struct {
	Field   string
	Message string
}

func (e *InvalidError) Error() string { return e.Field + ": " + e.Message }

// Unwrap makes errors.Is(err, ErrInvalid) hold.
func (e *InvalidError) Unwrap() error { return ErrInvalid }

// maxUserID bounds a user id: an email, an OIDC subject, "apikey:<id>".
const maxUserID = 256

// mutateAttempts bounds the compare-and-set retries of one write.
const mutateAttempts = 20

// User is a person or service account jobs are submitted as. Its id is
// what a principal is known by: its name (an email, an API key's owner),
// or its subject when it has no name.
type User struct {
	ID        string    `json:"id"`
	Name      string    `json:"name,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Team groups users; a job's user and a deployment user who share a team
// may pass the polling rules.
type Team struct {
	ID        string    `json:"id"`
	Members   []string  `json:"members"`
	CreatedAt time.Time `json:"created_at"`
}

// Project belongs to a team; its administrators are users.
type Project struct {
	ID        string    `json:"id"`
	Team      string    `json:"team"`
	Admins    []string  `json:"admins"`
	CreatedAt time.Time `json:"created_at"`
}

// Environment is a cluster or environment deployments run in; projects
// associated with it are polled by its deployments.
type Environment struct {
	Name      string    `json:"name"`
	Projects  []string  `json:"projects"`
	CreatedAt time.Time `json:"created_at"`
}

// Deployment is an executor pool bound to its deployment user.
type Deployment struct {
	Pool string `json:"pool"`
	// User is the deployment user: the principal that registered it last.
	User        string `json:"user"`
	Environment string `json:"environment,omitempty"`
	// Projects is the explicit project list given at install.
	Projects  []string  `json:"projects"`
	BoundAt   time.Time `json:"bound_at"`
	CreatedAt time.Time `json:"created_at"`
}

// Gated is a job no deployment may take yet; the dispatcher looks at it
// again when the directory changes.
type Gated struct {
	Job  string    `json:"job"`
	Pool string    `json:"pool"`
	At   time.Time `json:"at"`
}

// Key prefixes within the bucket.
const (
	prefixUser       = "user."
	prefixTeam       = "team."
	prefixProject    = "project."
	prefixEnv        = "env."
	prefixDeployment = "deployment."
	prefixGated      = "gated."
)

// Store is one tenant's directory. It is safe for concurrent use.
type Store struct {
	kv      kv.Store
	tenant  string
	changed chan struct{}
	cache   snapshotCache // GateCached's
}

// NewStore returns the directory of tenant over its bucket.
func NewStore(s kv.Store, tenant string) *Store {
	return &Store{kv: s, tenant: tenant, changed: make(chan struct{}, 1)}
}

// Tenant returns the tenant's name.
func (s *Store) Tenant() string { return s.tenant }

// Changed receives after a write to the directory made through this Store
// (not through another replica's): the dispatcher re-checks its gated jobs
// at once instead of at its next tick.
func (s *Store) Changed() <-chan struct{} { return s.changed }

// Kick makes Changed receive, as a directory write does, and drops the
// snapshot GateCached reads.
func (s *Store) Kick() {
	s.cache.forget()
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// CheckUserID checks a user id: 1 to 256 bytes of UTF-8 without spaces or
// control characters.
func CheckUserID(id, field string) error {
	if id == "" || len(id) > maxUserID || !utf8.ValidString(id) || strings.IndexFunc(id, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return &InvalidError{Field: field, Message: fmt.Sprintf("must be 1 to %d bytes of UTF-8 without spaces or control characters", maxUserID)}
	}
	return nil
}

// CheckName checks the id of a team, project, environment or pool.
func CheckName(id, field string) error {
	if !queue.ValidToken(id) {
		return &InvalidError{Field: field, Message: "must be 1 to 64 characters of [A-Za-z0-9_-]"}
	}
	return nil
}

func userKey(id string) string { return prefixUser + base64.RawURLEncoding.EncodeToString([]byte(id)) }

func get[T any](ctx context.Context, s *Store, key, what string) (*T, uint64, error) {
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, kv.ErrNotFound) {
		return nil, 0, fmt.Errorf("%s %w", what, ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("get %s: %w", what, err)
	}
	var v T
	if err := json.Unmarshal(e.Value, &v); err != nil {
		return nil, 0, fmt.Errorf("decode %s: %w", what, err)
	}
	return &v, e.Revision, nil
}

// upsert creates key with fresh() or, when it exists, lets change alter it
// (change returns false to leave it); it reports whether it created.
func upsert[T any](ctx context.Context, s *Store, key, what string, fresh func() *T, change func(*T) (bool, error)) (*T, bool, error) {
	for range mutateAttempts {
		cur, rev, err := get[T](ctx, s, key, what)
		if errors.Is(err, ErrNotFound) {
			v := fresh()
			if v == nil {
				return nil, false, err
			}
			b, err := json.Marshal(v)
			if err != nil {
				return nil, false, fmt.Errorf("encode %s: %w", what, err)
			}
			if _, err := s.kv.Create(ctx, key, b); errors.Is(err, kv.ErrExists) {
				continue
			} else if err != nil {
				return nil, false, fmt.Errorf("create %s: %w", what, err)
			}
			s.Kick()
			return v, true, nil
		}
		if err != nil {
			return nil, false, err
		}
		ok, err := change(cur)
		if err != nil || !ok {
			return cur, false, err
		}
		b, err := json.Marshal(cur)
		if err != nil {
			return nil, false, fmt.Errorf("encode %s: %w", what, err)
		}
		if _, err := s.kv.Update(ctx, key, b, rev); errors.Is(err, kv.ErrConflict) {
			continue
		} else if err != nil {
			return nil, false, fmt.Errorf("update %s: %w", what, err)
		}
		s.Kick()
		return cur, false, nil
	}
	return nil, false, fmt.Errorf("update %s: %w", what, kv.ErrConflict)
}

// update changes an existing entity.
func update[T any](ctx context.Context, s *Store, key, what string, change func(*T) (bool, error)) (*T, error) {
	v, _, err := upsert(ctx, s, key, what, func() *T { return nil }, change)
	return v, err
}

func list[T any](ctx context.Context, s *Store, prefix string) ([]T, error) {
	var (
		out  []T
		derr error
	)
	err := s.kv.List(ctx, func(e kv.Entry) bool {
		if !strings.HasPrefix(e.Key, prefix) {
			return true
		}
		var v T
		if err := json.Unmarshal(e.Value, &v); err != nil {
			derr = fmt.Errorf("decode %s: %w", e.Key, err)
			return false
		}
		out = append(out, v)
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", strings.TrimSuffix(prefix, "."), err)
	}
	return out, derr
}

func (s *Store) remove(ctx context.Context, key, what string) error {
	err := s.kv.Delete(ctx, key, 0)
	if errors.Is(err, kv.ErrNotFound) {
		return fmt.Errorf("%s %w", what, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", what, err)
	}
	s.Kick()
	return nil
}

// addTo adds v to a set kept as a sorted slice; it reports a change.
func addTo(set *[]string, v string) bool {
	i, found := slices.BinarySearch(*set, v)
	if found {
		return false
	}
	*set = slices.Insert(*set, i, v)
	return true
}

// removeFrom removes v from a sorted set; it reports a change.
func removeFrom(set *[]string, v string) bool {
	i, found := slices.BinarySearch(*set, v)
	if !found {
		return false
	}
	*set = slices.Delete(*set, i, i+1)
	return true
}

// MarkGated records that job waits for a deployment that may take it.
func (s *Store) MarkGated(ctx context.Context, g Gated) error {
	b, err := json.Marshal(g)
	if err != nil {
		return fmt.Errorf("encode gated job %s: %w", g.Job, err)
	}
	if _, err := s.kv.Create(ctx, prefixGated+g.Job, b); err != nil && !errors.Is(err, kv.ErrExists) {
		return fmt.Errorf("record gated job %s: %w", g.Job, err)
	}
	return nil
}

// UnmarkGated forgets a gated job (no error if it was not gated).
func (s *Store) UnmarkGated(ctx context.Context, job string) error {
	if err := s.kv.Delete(ctx, prefixGated+job, 0); err != nil && !errors.Is(err, kv.ErrNotFound) {
		return fmt.Errorf("forget gated job %s: %w", job, err)
	}
	return nil
}

// ListGated returns the gated jobs, oldest first.
func (s *Store) ListGated(ctx context.Context) ([]Gated, error) {
	out, err := list[Gated](ctx, s, prefixGated)
	slices.SortFunc(out, func(a, b Gated) int { return a.At.Compare(b.At) })
	return out, err
}

// Package kv is the record store Outpost's control plane keeps its state in
// (jobs, and later accounts): keys with revisions, written with
// compare-and-set so that two replicas never overwrite each other.
//
// The JetStream implementation lives in queue/natsjs; tests may use NewMemory.
// Both pass the conformance suite in package kvtest, which states the
// contract of Store.
package kv

import (
	"context"
	"errors"
	"strings"
)

// ErrNotFound is returned by Get and Update for a key that does not exist.
var ErrNotFound = errors.New("kv: key not found")

// ErrExists is returned by Create for a key that already exists.
var ErrExists = errors.New("kv: key exists")

// ErrConflict is returned by Update when the key's revision is no longer the
// one the caller read: somebody else wrote it first.
var ErrConflict = errors.New("kv: revision conflict")

// ErrInvalidKey is returned for a key that is not a valid key (ValidKey).
var ErrInvalidKey = errors.New("kv: invalid key")

// ValidKey reports whether key can name a record: 1 or more characters of
// [-/_=.a-zA-Z0-9], not starting or ending with '.', without "..". These
// are JetStream KV's keys; every Store refuses others with ErrInvalidKey.
func ValidKey(key string) bool {
	if key == "" || key[0] == '.' || key[len(key)-1] == '.' || strings.Contains(key, "..") {
		return false
	}
	for _, c := range []byte(key) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '/' || c == '_' || c == '=' || c == '.') {
			return false
		}
	}
	return true
}

// Entry is a value with the revision it was written at.
type Entry struct {
	Key      string
	Value    []byte
	Revision uint64
}

// Store is one bucket of records. Revisions are positive and grow with
// every write to the bucket, whatever the key. Every method fails with the
// context's error once ctx is done, and with ErrInvalidKey for a key that
// is not ValidKey.
type Store interface {
	// Get returns the current value of key.
	Get(ctx context.Context, key string) (Entry, error)
	// Create writes key only if it does not exist and returns the revision.
	Create(ctx context.Context, key string, value []byte) (uint64, error)
	// Update writes key only if its current revision is rev.
	Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error)
	// Delete removes key if its current revision is rev (any revision when
	// rev is 0). Deleting a key that does not exist returns ErrNotFound.
	Delete(ctx context.Context, key string, rev uint64) error
	// List calls fn once for every key written before the call and not
	// deleted since, with that value or a later one, in no particular
	// order, until fn returns false. A key written while the listing runs
	// may come or not; so may one written again and again, faster than the
	// listing reads, even if it was there before (a reader that goes on
	// with Changes from the highest revision listed reads it there). On a
	// replicated bucket, a listing served by a replica behind the others
	// may hand a key with a value older than its last write before the
	// call, or a key deleted at any revision (Delete with rev 0, Prune)
	// just before it, which leaves no revision for the listing to wait
	// for; it misses no key.
	List(ctx context.Context, fn func(Entry) bool) error
	// Prune removes key and every key under it (key followed by '.'), at
	// any revision, leaving nothing behind; that none exists is no error.
	Prune(ctx context.Context, key string) error
	// Changes calls fn, in revision order, with the values written after
	// revision rev, until fn returns false, and returns the revision it
	// read up to (at least rev), the rev of the next call. A key written
	// several times since may come once, with its last value, or once per
	// write; a key deleted at a revision may come with a nil Value; a key
	// deleted at any revision, or pruned, leaves nothing to read. Unless
	// fn stops it, it reads every write made before the call (on a
	// replicated bucket, also when a replica behind the others serves
	// it); the revision returned is what was read, so the next call reads
	// the rest. A reader starts from 0, or from the highest revision a
	// List gave it.
	Changes(ctx context.Context, rev uint64, fn func(Entry) bool) (uint64, error)
}

// Opener opens (creating if needed) a named bucket.
type Opener interface {
	OpenStore(ctx context.Context, bucket string) (Store, error)
}

// Mutate reads key, applies fn to its value and writes the result with
// compare-and-set, retrying on conflict up to attempts times. fn returns the
// new value, or ok=false to leave the record unchanged.
func Mutate(ctx context.Context, s Store, key string, attempts int, fn func(cur []byte) (next []byte, ok bool, err error)) (Entry, error) {
	if attempts <= 0 {
		attempts = 10
	}
	var lastErr error
	for range attempts {
		e, err := s.Get(ctx, key)
		if err != nil {
			return Entry{}, err
		}
		next, ok, err := fn(e.Value)
		if err != nil || !ok {
			return e, err
		}
		rev, err := s.Update(ctx, key, next, e.Revision)
		if errors.Is(err, ErrConflict) {
			lastErr = err
			continue
		}
		if err != nil {
			return Entry{}, err
		}
		return Entry{Key: key, Value: next, Revision: rev}, nil
	}
	return Entry{}, lastErr
}

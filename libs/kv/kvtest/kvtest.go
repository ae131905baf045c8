// Package kvtest is the conformance suite of kv.Store: the contract every
// implementation keeps, run against the in-memory store (kv.NewMemory) and
// the JetStream one (queue/natsjs), so that a unit test on the fake
// behaves as the service does on the broker.
package kvtest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/kv"
)

// Open returns an empty store for one test; the store is closed or
// removed by the test's cleanups.
type Open func(t *testing.T) kv.Store

// wait bounds each test's calls; a replicated bucket under load may take
// a few seconds to answer.
const wait = 30 * time.Second

// Option changes what Run expects of a store.
type Option func(*options)

type options struct{ replicated bool }

// Replicated says the store's listings may be served by a replica behind
// the others: a key written once while a listing runs may then be missed
// (seen on JetStream's 3-node cluster under CPU contention), so
// ListUnderWrites expects it only of the keys not written meanwhile; and
// a listing may hand an older value of a key written before it, or a key
// deleted at any revision just before it, as long as later listings come
// to the current entries (List, Prune).
func Replicated() Option { return func(o *options) { o.replicated = true } }

// Run runs every conformance test against the stores open returns, each
// test on a store of its own.
func Run(t *testing.T, open Open, opts ...Option) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, ctx context.Context, s kv.Store)
	}{
		{"CreateGetUpdate", createGetUpdate},
		{"UpdateConflicts", updateConflicts},
		{"NotFound", notFound},
		{"DeleteWithRevision", deleteWithRevision},
		{"List", func(t *testing.T, ctx context.Context, s kv.Store) { list(t, ctx, s, o.replicated) }},
		{"ListUnderWrites", func(t *testing.T, ctx context.Context, s kv.Store) { listUnderWrites(t, ctx, s, o.replicated) }},
		{"Prune", func(t *testing.T, ctx context.Context, s kv.Store) { prune(t, ctx, s, o.replicated) }},
		{"Changes", changes},
		{"ListEmpty", listEmpty},
		{"ValuesAreCopies", valuesAreCopies},
		{"InvalidKeys", invalidKeys},
		{"DoneContext", doneContext},
		{"Mutate", mutate},
		{"MutateUnderContention", mutateUnderContention},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			tt.fn(t, ctx, open(t))
		})
	}
}

func createGetUpdate(t *testing.T, ctx context.Context, s kv.Store) {
	rev, err := s.Create(ctx, "job-1", []byte("queued"))
	require.NoError(t, err)
	require.Positive(t, rev)
	e, err := s.Get(ctx, "job-1")
	require.NoError(t, err)
	require.Equal(t, kv.Entry{Key: "job-1", Value: []byte("queued"), Revision: rev}, e)

	rev2, err := s.Update(ctx, "job-1", []byte("running"), rev)
	require.NoError(t, err)
	require.Greater(t, rev2, rev, "a write gets a higher revision")
	e, err = s.Get(ctx, "job-1")
	require.NoError(t, err)
	require.Equal(t, kv.Entry{Key: "job-1", Value: []byte("running"), Revision: rev2}, e)

	// Revisions grow across the bucket, whatever the key.
	rev3, err := s.Create(ctx, "job-2", []byte("queued"))
	require.NoError(t, err)
	require.Greater(t, rev3, rev2)
	// Keys hold slashes, dots, equals signs: what the services' keys use.
	_, err = s.Create(ctx, "acme.job-1/attempt=2", []byte("x"))
	require.NoError(t, err)
}

func updateConflicts(t *testing.T, ctx context.Context, s kv.Store) {
	rev, err := s.Create(ctx, "job-1", []byte("queued"))
	require.NoError(t, err)
	_, err = s.Create(ctx, "job-1", []byte("again"))
	require.ErrorIs(t, err, kv.ErrExists)

	rev2, err := s.Update(ctx, "job-1", []byte("running"), rev)
	require.NoError(t, err)
	// A writer holding an older revision, or none, loses and changes
	// nothing.
	for _, stale := range []uint64{rev, 0, rev2 + 1000} {
		_, err = s.Update(ctx, "job-1", []byte("stale"), stale)
		require.ErrorIs(t, err, kv.ErrConflict, "revision %d", stale)
	}
	e, err := s.Get(ctx, "job-1")
	require.NoError(t, err)
	require.Equal(t, "running", string(e.Value))
	require.Equal(t, rev2, e.Revision)
}

func notFound(t *testing.T, ctx context.Context, s kv.Store) {
	_, err := s.Get(ctx, "job-404")
	require.ErrorIs(t, err, kv.ErrNotFound)
	// Update of a key that never existed is ErrNotFound, not a create.
	for _, rev := range []uint64{0, 1, 7} {
		_, err = s.Update(ctx, "job-404", []byte("x"), rev)
		require.ErrorIs(t, err, kv.ErrNotFound, "revision %d", rev)
	}
	_, err = s.Get(ctx, "job-404")
	require.ErrorIs(t, err, kv.ErrNotFound, "a failed update creates nothing")
	require.ErrorIs(t, s.Delete(ctx, "job-404", 0), kv.ErrNotFound)
	require.ErrorIs(t, s.Delete(ctx, "job-404", 3), kv.ErrNotFound)
}

func deleteWithRevision(t *testing.T, ctx context.Context, s kv.Store) {
	rev, err := s.Create(ctx, "job-1", []byte("queued"))
	require.NoError(t, err)
	rev2, err := s.Update(ctx, "job-1", []byte("running"), rev)
	require.NoError(t, err)

	// Delete is compare-and-set too.
	require.ErrorIs(t, s.Delete(ctx, "job-1", rev), kv.ErrConflict)
	e, err := s.Get(ctx, "job-1")
	require.NoError(t, err, "a refused delete leaves the key")
	require.Equal(t, rev2, e.Revision)
	require.NoError(t, s.Delete(ctx, "job-1", rev2))
	_, err = s.Get(ctx, "job-1")
	require.ErrorIs(t, err, kv.ErrNotFound)
	require.ErrorIs(t, s.Delete(ctx, "job-1", 0), kv.ErrNotFound)
	_, err = s.Update(ctx, "job-1", []byte("late"), rev2)
	require.ErrorIs(t, err, kv.ErrNotFound, "an update of a deleted key does not bring it back")

	// A deleted key can be created again, and deleted at any revision
	// with 0.
	rev3, err := s.Create(ctx, "job-1", []byte("again"))
	require.NoError(t, err)
	require.Greater(t, rev3, rev2)
	require.NoError(t, s.Delete(ctx, "job-1", 0))
	_, err = s.Get(ctx, "job-1")
	require.ErrorIs(t, err, kv.ErrNotFound)
}

// prune: a key and the keys under it go, at any revision; a key that
// merely starts with the same characters, or holds it further down, stays.
func prune(t *testing.T, ctx context.Context, s kv.Store, replicated bool) {
	for _, k := range []string{"job-1", "job-1.1.0", "job-1.2.7", "job-10", "job-10.1.0", "other.job-1"} {
		_, err := s.Create(ctx, k, []byte(k))
		require.NoError(t, err)
	}
	_, err := s.Update(ctx, "job-1.1.0", []byte("again"), mustRev(t, ctx, s, "job-1.1.0"))
	require.NoError(t, err)

	require.NoError(t, s.Prune(ctx, "job-1"))
	for _, k := range []string{"job-1", "job-1.1.0", "job-1.2.7"} {
		_, err := s.Get(ctx, k)
		require.ErrorIs(t, err, kv.ErrNotFound, k)
	}
	// Read once: a listing holds every write made before it, also on a
	// replicated bucket whose replica behind the others serves it; the
	// pruned keys may linger there (listedAfterDelete).
	listedOnce(t, ctx, s, replicated, map[string]string{"job-10": "job-10", "job-10.1.0": "job-10.1.0", "other.job-1": "other.job-1"},
		"job-1", "job-1.1.0", "job-1.2.7")

	require.NoError(t, s.Prune(ctx, "job-1"), "pruning what is gone")
	require.NoError(t, s.Prune(ctx, "job-404"), "pruning what never was")
	_, err = s.Create(ctx, "job-1", []byte("new"))
	require.NoError(t, err, "a pruned key can be created again")
	require.NoError(t, s.Prune(ctx, "job-10.1"), "a key under another")
	_, err = s.Get(ctx, "job-10.1.0")
	require.ErrorIs(t, err, kv.ErrNotFound)
	_, err = s.Get(ctx, "job-10")
	require.NoError(t, err)
}

// changes: a reader that kept the revision it read up to reads the writes
// made since, and only those, in order; the last value of each key is the
// one it ends with. Every read is made once: it holds every write made
// before it, also when a replica behind the others serves it.
func changes(t *testing.T, ctx context.Context, s kv.Store) {
	var rev uint64
	seen := map[string]string{}
	// read reads the changes after rev into seen and returns the
	// revisions of what it read.
	read := func() []uint64 {
		t.Helper()
		var revs []uint64
		last, err := s.Changes(ctx, rev, func(e kv.Entry) bool {
			seen[e.Key] = string(e.Value)
			revs = append(revs, e.Revision)
			return true
		})
		require.NoError(t, err)
		require.GreaterOrEqual(t, last, rev, "the revision read up to never goes back")
		rev = last
		return revs
	}

	_, err := s.Create(ctx, "before", []byte("x"))
	require.NoError(t, err)
	read()
	require.Equal(t, "x", seen["before"])
	start := rev
	last, err := s.Changes(ctx, rev, func(e kv.Entry) bool { t.Fatalf("nothing was written since: %v", e); return false })
	require.NoError(t, err)
	require.Equal(t, rev, last, "nothing read: the same revision")

	r1, err := s.Create(ctx, "job-1", []byte("queued"))
	require.NoError(t, err)
	_, err = s.Create(ctx, "job-2", []byte("queued"))
	require.NoError(t, err)
	_, err = s.Update(ctx, "job-1", []byte("running"), r1)
	require.NoError(t, err)
	revs := read()
	require.Equal(t, "running", seen["job-1"])
	require.Equal(t, "queued", seen["job-2"])
	require.IsNonDecreasing(t, revs, "in revision order")
	require.Greater(t, revs[0], start, "only what was written after the revision")

	clear(seen)
	_, err = s.Create(ctx, "job-3", []byte("queued"))
	require.NoError(t, err)
	read()
	require.Equal(t, map[string]string{"job-3": "queued"}, seen, "only what was written since")

	// Stopped by fn: the next read goes on after what it saw.
	for i := range 3 {
		_, err := s.Create(ctx, fmt.Sprintf("more-%d", i), []byte("v"))
		require.NoError(t, err)
	}
	var first []string
	mid, err := s.Changes(ctx, rev, func(e kv.Entry) bool { first = append(first, e.Key); return false })
	require.NoError(t, err)
	require.Equal(t, []string{"more-0"}, first)
	var rest []string
	_, err = s.Changes(ctx, mid, func(e kv.Entry) bool { rest = append(rest, e.Key); return true })
	require.NoError(t, err)
	require.Equal(t, []string{"more-1", "more-2"}, rest)
}

func mustRev(t *testing.T, ctx context.Context, s kv.Store, key string) uint64 {
	t.Helper()
	e, err := s.Get(ctx, key)
	require.NoError(t, err)
	return e.Revision
}

// listedOnce lists s once and requires the keys of want, each once, with
// its value, and nothing else. On a replicated store a listing served by a
// replica behind the others may instead hand an older value of a key, or
// a key of gone (deleted at any revision, which leaves no later revision
// for the listing to wait for), but never miss a key: there, listings must
// then come to want.
func listedOnce(t *testing.T, ctx context.Context, s kv.Store, replicated bool, want map[string]string, gone ...string) {
	t.Helper()
	listed := func() (map[string]string, map[string]int) {
		got, n := map[string]string{}, map[string]int{}
		require.NoError(t, s.List(ctx, func(e kv.Entry) bool { got[e.Key] = string(e.Value); n[e.Key]++; return true }))
		return got, n
	}
	got, n := listed()
	for k, c := range n {
		require.Equal(t, 1, c, "key %s listed once", k)
	}
	if !replicated {
		require.Equal(t, want, got, "every current entry, without deleted keys")
		return
	}
	for k := range want {
		require.Contains(t, got, k, "a key there before the listing was not listed")
	}
	for k := range got {
		_, ok := want[k]
		require.True(t, ok || slices.Contains(gone, k), "key %s listed (never written)", k)
	}
	require.Eventually(t, func() bool { got, _ := listed(); return maps.Equal(want, got) }, wait, 10*time.Millisecond,
		"listings never came to the current entries")
}

func list(t *testing.T, ctx context.Context, s kv.Store, replicated bool) {
	want := map[string]string{}
	revs := map[string]uint64{}
	for i := range 20 {
		k := fmt.Sprintf("k%02d", i)
		rev, err := s.Create(ctx, k, []byte(strconv.Itoa(i)))
		require.NoError(t, err)
		want[k], revs[k] = strconv.Itoa(i), rev
	}
	rev, err := s.Update(ctx, "k07", []byte("updated"), revs["k07"])
	require.NoError(t, err)
	want["k07"], revs["k07"] = "updated", rev
	require.NoError(t, s.Delete(ctx, "k03", 0))
	delete(want, "k03")

	// Read once: a listing holds every write made before it (see
	// listedOnce for a replicated store).
	listedOnce(t, ctx, s, replicated, want, "k03")
	if !replicated {
		require.NoError(t, s.List(ctx, func(e kv.Entry) bool {
			require.Equal(t, revs[e.Key], e.Revision, "key %s at its revision", e.Key)
			return true
		}))
	}

	// fn returning false stops the listing.
	calls := 0
	require.NoError(t, s.List(ctx, func(kv.Entry) bool { calls++; return calls < 5 }))
	require.Equal(t, 5, calls, "no entry is handed to fn after it returned false")
}

// listUnderWrites: a listing shows every key the bucket held when it
// began, once, also while other clients write to the bucket, and keys
// written once while it runs among them (on JetStream such a write
// removes the value the listing was about to read and appends the new one
// after the bucket's last message). Only a key written again and again
// faster than the listing reads may escape it: the hot keys here. On a
// replicated store only the keys not written meanwhile are sure to come.
func listUnderWrites(t *testing.T, ctx context.Context, s kv.Store, replicated bool) {
	const n, hot, once = 500, 20, 260 // hot keys, then keys written once up to once, then keys left alone
	key := func(i int) string { return fmt.Sprintf("k%04d", i) }
	for i := range n {
		_, err := s.Create(ctx, key(i), []byte("v"))
		require.NoError(t, err)
	}
	update := func(ctx context.Context, k, v string) {
		if e, err := s.Get(ctx, k); err == nil {
			_, _ = s.Update(ctx, k, []byte(v), e.Revision)
		}
	}

	// Until the listings are done (bounded, should they outlast them):
	// the hot keys are rewritten over and over, every other key once,
	// and new keys come.
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 20_000 {
			if wctx.Err() != nil {
				return
			}
			update(wctx, key(i%hot), strconv.Itoa(i))
		}
	})
	wg.Go(func() {
		for i := hot; i < once && wctx.Err() == nil; i++ {
			update(wctx, key(i), "once")
		}
	})
	wg.Go(func() {
		for i := range 2_000 {
			if wctx.Err() != nil {
				return
			}
			_, _ = s.Create(wctx, fmt.Sprintf("new-%06d", i), []byte("new"))
		}
	})
	defer func() { stop(); wg.Wait() }()

	for round := range 20 {
		seen := map[string]int{}
		require.NoError(t, s.List(ctx, func(e kv.Entry) bool {
			seen[e.Key]++
			return true
		}))
		var missing, twice []string
		from := hot
		if replicated {
			from = once
		}
		for i := from; i < n; i++ {
			if seen[key(i)] == 0 {
				missing = append(missing, key(i))
			}
		}
		for k, c := range seen {
			if c > 1 {
				twice = append(twice, k)
			}
		}
		require.Empty(t, missing, "round %d: keys there before the listing were not listed", round)
		require.Empty(t, twice, "round %d: keys listed more than once", round)
	}
}

func listEmpty(t *testing.T, ctx context.Context, s kv.Store) {
	n := 0
	require.NoError(t, s.List(ctx, func(kv.Entry) bool { n++; return true }))
	require.Zero(t, n)
}

// valuesAreCopies: a caller changing a slice it wrote or read changes
// nothing stored.
func valuesAreCopies(t *testing.T, ctx context.Context, s kv.Store) {
	in := []byte("original")
	_, err := s.Create(ctx, "k", in)
	require.NoError(t, err)
	copy(in, "XXXXXXXX")
	e, err := s.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "original", string(e.Value))
	copy(e.Value, "YYYYYYYY")
	require.NoError(t, s.List(ctx, func(e kv.Entry) bool {
		copy(e.Value, "ZZZZZZZZ")
		return true
	}))
	e, err = s.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "original", string(e.Value))
}

func invalidKeys(t *testing.T, ctx context.Context, s kv.Store) {
	for _, key := range []string{"", "a b", ".lead", "trail.", "a..b", "a*", "a>", "ü"} {
		t.Run(strconv.Quote(key), func(t *testing.T) {
			require.False(t, kv.ValidKey(key))
			_, err := s.Create(ctx, key, []byte("x"))
			require.ErrorIs(t, err, kv.ErrInvalidKey)
			_, err = s.Get(ctx, key)
			require.ErrorIs(t, err, kv.ErrInvalidKey)
			_, err = s.Update(ctx, key, []byte("x"), 1)
			require.ErrorIs(t, err, kv.ErrInvalidKey)
			require.ErrorIs(t, s.Delete(ctx, key, 0), kv.ErrInvalidKey)
			require.ErrorIs(t, s.Prune(ctx, key), kv.ErrInvalidKey)
		})
	}
}

// doneContext: a call made once its context is done fails with the
// context's error and writes nothing.
func doneContext(t *testing.T, ctx context.Context, s kv.Store) {
	rev, err := s.Create(ctx, "k", []byte("v"))
	require.NoError(t, err)
	done, cancel := context.WithCancel(ctx)
	cancel()
	ops := []struct {
		name string
		op   func() error
	}{
		{"get", func() error { _, err := s.Get(done, "k"); return err }},
		{"create", func() error { _, err := s.Create(done, "other", []byte("v")); return err }},
		{"update", func() error { _, err := s.Update(done, "k", []byte("w"), rev); return err }},
		{"delete", func() error { return s.Delete(done, "k", rev) }},
		{"list", func() error { return s.List(done, func(kv.Entry) bool { return true }) }},
		{"prune", func() error { return s.Prune(done, "k") }},
		{"changes", func() error { _, err := s.Changes(done, 0, func(kv.Entry) bool { return true }); return err }},
	}
	for _, o := range ops {
		require.ErrorIs(t, o.op(), context.Canceled, o.name)
	}
	e, err := s.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, kv.Entry{Key: "k", Value: []byte("v"), Revision: rev}, e)
	_, err = s.Get(ctx, "other")
	require.ErrorIs(t, err, kv.ErrNotFound)
}

var errRefused = errors.New("refused by fn")

func mutate(t *testing.T, ctx context.Context, s kv.Store) {
	_, err := kv.Mutate(ctx, s, "n", 3, func([]byte) ([]byte, bool, error) { return []byte("x"), true, nil })
	require.ErrorIs(t, err, kv.ErrNotFound, "Mutate does not create")

	rev, err := s.Create(ctx, "n", []byte("1"))
	require.NoError(t, err)
	e, err := kv.Mutate(ctx, s, "n", 3, func(cur []byte) ([]byte, bool, error) { return append(cur, '0'), true, nil })
	require.NoError(t, err)
	require.Equal(t, "10", string(e.Value))
	require.Greater(t, e.Revision, rev)

	// ok=false leaves the record as it is and returns it.
	same, err := kv.Mutate(ctx, s, "n", 3, func([]byte) ([]byte, bool, error) { return nil, false, nil })
	require.NoError(t, err)
	require.Equal(t, e, same)

	_, err = kv.Mutate(ctx, s, "n", 3, func([]byte) ([]byte, bool, error) { return nil, true, errRefused })
	require.ErrorIs(t, err, errRefused)
	got, err := s.Get(ctx, "n")
	require.NoError(t, err)
	require.Equal(t, e, got, "a refused mutation writes nothing")
}

// mutateUnderContention: concurrent read-modify-write loops through
// Mutate lose no update.
func mutateUnderContention(t *testing.T, ctx context.Context, s kv.Store) {
	_, err := s.Create(ctx, "n", []byte("0"))
	require.NoError(t, err)
	const writers, each = 4, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for range writers {
		wg.Go(func() {
			for range each {
				_, err := kv.Mutate(ctx, s, "n", 100, func(cur []byte) ([]byte, bool, error) {
					n, err := strconv.Atoi(string(cur))
					return []byte(strconv.Itoa(n + 1)), true, err
				})
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	e, err := s.Get(ctx, "n")
	require.NoError(t, err)
	require.Equal(t, strconv.Itoa(writers*each), string(e.Value), "no increment lost")
}

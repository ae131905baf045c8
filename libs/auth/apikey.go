package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/outposthq/outpost/libs/kv"
)

// KeyPrefix starts every API key, so that a leaked key is found by grep.
const KeyPrefix = "opk_"

// KeysBucket is the kv bucket the API keys are kept in, shared by every
// replica of the scheduler and the account-migrator.
const KeysBucket = "api_keys"

// lastUsedEvery bounds how often a key's last-used time is written.
const lastUsedEvery = time.Minute

// ErrKeyNotFound is returned by Revoke for an unknown key id.
var ErrKeyNotFound = errors.New("auth: no such API key")

// ErrInvalidKey is wrapped by Create's error for a bad key request.
var ErrInvalidKey = errors.New("auth: invalid API key request")

// Key is an API key as stored: never the secret, only its SHA-256.
type Key struct {
	ID       string    `json:"id"`
	Hash     string    `json:"hash,omitempty"`
	Owner    string    `json:"owner"`
	Tenants  []string  `json:"tenants"`
	Role     string    `json:"role"`
	Created  time.Time `json:"created"`
	LastUsed time.Time `json:"last_used,omitzero"`
	Expires  time.Time `json:"expires,omitzero"`
	Revoked  time.Time `json:"revoked,omitzero"`
}

// Public returns k without its hash, to list it.
func (k Key) Public() Key {
	k.Hash = ""
	return k
}

// Principal returns the principal the key authenticates.
func (k Key) Principal() *Principal {
	r, _ := ParseRole(k.Role)
	p := &Principal{Subject: "apikey:" + k.ID, Name: k.Owner, Kind: KindAPIKey, KeyID: k.ID, Tenants: map[string]Role{}}
	for _, t := range k.Tenants {
		p.Tenants[t] = r
	}
	return p
}

// KeyRequest asks for a new key.
type KeyRequest struct {
	Owner   string
	Tenants []string
	Role    Role
	// TTL 0 means the key does not expire.
	TTL time.Duration
}

// Keys creates, verifies, lists and revokes API keys in a kv bucket. Every
// verification reads the bucket, so a revocation holds at once on every
// replica sharing it. The bucket is opened on first use.
type Keys struct {
	opener kv.Opener
	now    func() time.Time

	mu    sync.Mutex
	store kv.Store
}

// NewKeys returns the keys kept in opener's KeysBucket; now nil means
// time.Now.
func NewKeys(opener kv.Opener, now func() time.Time) *Keys {
	if now == nil {
		now = time.Now
	}
	return &Keys{opener: opener, now: now}
}

func (k *Keys) open(ctx context.Context) (kv.Store, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.store == nil {
		s, err := k.opener.OpenStore(ctx, KeysBucket)
		if err != nil {
			return nil, fmt.Errorf("open API keys bucket: %w", err)
		}
		k.store = s
	}
	return k.store, nil
}

// Create makes a key and returns its record and its secret, which is
// shown only this once: opk_<id>_<43 characters of base64url, 256 bits>.
func (k *Keys) Create(ctx context.Context, req KeyRequest) (Key, string, error) {
	if req.Owner == "" || len(req.Owner) > 200 {
		return Key{}, "", fmt.Errorf("%w: owner is required (at most 200 characters)", ErrInvalidKey)
	}
	if len(req.Tenants) == 0 {
		return Key{}, "", fmt.Errorf("%w: at least one tenant is required", ErrInvalidKey)
	}
	if req.Role < RoleViewer || req.Role > RoleAdmin {
		return Key{}, "", fmt.Errorf("%w: role must be viewer, operator or admin", ErrInvalidKey)
	}
	if req.TTL < 0 {
		return Key{}, "", fmt.Errorf("%w: ttl must not be negative", ErrInvalidKey)
	}
	st, err := k.open(ctx)
	if err != nil {
		return Key{}, "", err
	}
	idb := make([]byte, 8)
	secret := make([]byte, 32)
	_, _ = rand.Read(idb) // crypto/rand.Read never fails
	_, _ = rand.Read(secret)
	id := hex.EncodeToString(idb)
	sec := base64.RawURLEncoding.EncodeToString(secret)
	sum := sha256.Sum256([]byte(sec))
	tenants := append([]string(nil), req.Tenants...)
	sort.Strings(tenants)
	now := k.now().UTC()
	key := Key{ID: id, Hash: hex.EncodeToString(sum[:]), Owner: req.Owner, Tenants: tenants, Role: req.Role.String(), Created: now}
	if req.TTL > 0 {
		key.Expires = now.Add(req.TTL)
	}
	raw, err := json.Marshal(key)
	if err != nil {
		return Key{}, "", fmt.Errorf("encode API key: %w", err)
	}
	if _, err := st.Create(ctx, id, raw); err != nil {
		return Key{}, "", fmt.Errorf("store API key: %w", err)
	}
	return key.Public(), KeyPrefix + id + "_" + sec, nil
}

// Verify returns the principal of a key secret. Errors wrap
// ErrUnauthenticated for an unknown, malformed, expired or revoked key.
func (k *Keys) Verify(ctx context.Context, token string) (*Principal, error) {
	id, sec, ok := strings.Cut(strings.TrimPrefix(token, KeyPrefix), "_")
	if !strings.HasPrefix(token, KeyPrefix) || !ok || len(id) != 16 || len(sec) != 43 {
		return nil, fmt.Errorf("%w: malformed API key", ErrUnauthenticated)
	}
	st, err := k.open(ctx)
	if err != nil {
		return nil, err
	}
	e, err := st.Get(ctx, id)
	if errors.Is(err, kv.ErrNotFound) {
		return nil, fmt.Errorf("%w: unknown API key", ErrUnauthenticated)
	}
	if err != nil {
		return nil, fmt.Errorf("read API key: %w", err)
	}
	var key Key
	if err := json.Unmarshal(e.Value, &key); err != nil {
		return nil, fmt.Errorf("decode API key %s: %w", id, err)
	}
	sum := sha256.Sum256([]byte(sec))
	want, _ := hex.DecodeString(key.Hash)
	if subtle.ConstantTimeCompare(sum[:], want) != 1 {
		return nil, fmt.Errorf("%w: unknown API key", ErrUnauthenticated)
	}
	now := k.now()
	switch {
	case !key.Revoked.IsZero():
		return nil, fmt.Errorf("%w: the API key is revoked", ErrUnauthenticated)
	case !key.Expires.IsZero() && now.After(key.Expires):
		return nil, fmt.Errorf("%w: the API key has expired", ErrUnauthenticated)
	}
	if now.Sub(key.LastUsed) >= lastUsedEvery {
		// Best effort and at most once a minute per key: a conflict
		// means another replica has just written it.
		key.LastUsed = now.UTC()
		if raw, err := json.Marshal(key); err == nil {
			_, _ = st.Update(ctx, id, raw, e.Revision)
		}
	}
	return key.Principal(), nil
}

// List returns every key, without hashes, oldest first.
func (k *Keys) List(ctx context.Context) ([]Key, error) {
	st, err := k.open(ctx)
	if err != nil {
		return nil, err
	}
	var out []Key
	var derr error
	err = st.List(ctx, func(e kv.Entry) bool {
		var key Key
		if err := json.Unmarshal(e.Value, &key); err != nil {
			derr = fmt.Errorf("decode API key %s: %w", e.Key, err)
			return false
		}
		out = append(out, key.Public())
		return true
	})
	if err = errors.Join(err, derr); err != nil {
		return nil, fmt.Errorf("list API keys: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// Get returns key id without its hash.
func (k *Keys) Get(ctx context.Context, id string) (Key, error) {
	st, err := k.open(ctx)
	if err != nil {
		return Key{}, err
	}
	e, err := st.Get(ctx, id)
	if errors.Is(err, kv.ErrNotFound) {
		return Key{}, ErrKeyNotFound
	}
	if err != nil {
		return Key{}, fmt.Errorf("read API key: %w", err)
	}
	var key Key
	if err := json.Unmarshal(e.Value, &key); err != nil {
		return Key{}, fmt.Errorf("decode API key %s: %w", id, err)
	}
	return key.Public(), nil
}

// Revoke marks key id revoked; revoking it again changes nothing.
func (k *Keys) Revoke(ctx context.Context, id string) (Key, error) {
	st, err := k.open(ctx)
	if err != nil {
		return Key{}, err
	}
	var out Key
	_, err = kv.Mutate(ctx, st, id, 10, func(cur []byte) ([]byte, bool, error) {
		if err := json.Unmarshal(cur, &out); err != nil {
			return nil, false, fmt.Errorf("decode API key %s: %w", id, err)
		}
		if !out.Revoked.IsZero() {
			return nil, false, nil
		}
		out.Revoked = k.now().UTC()
		raw, err := json.Marshal(out)
		return raw, true, err
	})
	if errors.Is(err, kv.ErrNotFound) {
		return Key{}, ErrKeyNotFound
	}
	if err != nil {
		return Key{}, fmt.Errorf("revoke API key: %w", err)
	}
	return out.Public(), nil
}

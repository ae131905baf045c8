// Package natsauth keeps Outpost's NATS identities: an operator, its system
// account and the Outpost account (decentralized JWT authentication), and
// issues user credentials per role with exactly the permissions the role
// needs (see Permissions).
//
// The keys live in one folder (0700), each seed in a file of its own
// (0600):
//
//	operator.nk  operator.jwt   the operator: signs the accounts
//	system.nk    system.jwt     the system account: pushes account updates
//	outpost.nk   outpost.jwt    the Outpost account: every service and agent
//	                            (outpost.jwt carries the revocations)
//
// A server trusts the operator and resolves the two accounts (natsembed.Auth
// from ServerAuth, or resolver_preload in a nats-server configuration).
// Revoke adds a user to the account's revocation list and Push sends the
// updated account JWT to the running servers over the system account: the
// server disconnects the revoked user's connections and refuses it
// afterwards, without a restart.
package natsauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/outposthq/outpost/libs/natsembed"
	"github.com/outposthq/outpost/libs/queue/natsjs"
)

// Sentinel errors.
var (
	// ErrCorrupt is returned by Open when a key or JWT file of the folder
	// cannot be read as one.
	ErrCorrupt = errors.New("natsauth: unreadable key or jwt")
	// ErrPushRejected is returned by Push when a server refused the
	// account update.
	ErrPushRejected = errors.New("natsauth: account update refused")
	// ErrPushIncomplete is returned by Push when some server of the
	// cluster had not confirmed the account update when ctx ended: a
	// revocation is not in force there yet.
	ErrPushIncomplete = errors.New("natsauth: account update not confirmed by every server")
)

// Authority is the operator and its accounts, loaded from a folder. It is
// safe for concurrent use.
type Authority struct {
	dir string

	operator    nkeys.KeyPair
	operatorJWT string
	system      nkeys.KeyPair
	systemJWT   string

	mu         sync.Mutex
	account    nkeys.KeyPair
	accountPub string
	accountJWT string
}

const (
	operatorName = "outpost-operator"
	systemName   = "SYS"
	accountName  = "outpost"
)

// Open loads the authority kept in dir, creating the folder, the operator
// and both accounts when they are not there yet.
func Open(dir string) (*Authority, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("natsauth: folder: %w", err)
	}
	a := &Authority{dir: dir}
	var err error
	if a.operator, err = a.key("operator", nkeys.CreateOperator); err != nil {
		return nil, err
	}
	opPub, _ := a.operator.PublicKey()
	if a.system, err = a.key("system", nkeys.CreateAccount); err != nil {
		return nil, err
	}
	sysPub, _ := a.system.PublicKey()
	if a.account, err = a.key("outpost", nkeys.CreateAccount); err != nil {
		return nil, err
	}
	a.accountPub, _ = a.account.PublicKey()

	if a.operatorJWT, err = a.token("operator", func() (string, error) {
		oc := jwt.NewOperatorClaims(opPub)
		oc.Name = operatorName
		oc.SystemAccount = sysPub
		return oc.Encode(a.operator)
	}); err != nil {
		return nil, err
	}
	if a.systemJWT, err = a.token("system", func() (string, error) {
		ac := jwt.NewAccountClaims(sysPub)
		ac.Name = systemName
		return ac.Encode(a.operator)
	}); err != nil {
		return nil, err
	}
	if a.accountJWT, err = a.token("outpost", func() (string, error) {
		ac := jwt.NewAccountClaims(a.accountPub)
		ac.Name = accountName
		// JetStream without limits: the streams' own limits apply.
		ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		return ac.Encode(a.operator)
	}); err != nil {
		return nil, err
	}
	return a, nil
}

// key reads the seed in <name>.nk, or makes one and writes it (0600).
func (a *Authority) key(name string, create func() (nkeys.KeyPair, error)) (nkeys.KeyPair, error) {
	path := filepath.Join(a.dir, name+".nk")
	seed, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		kp, err := create()
		if err != nil {
			return nil, fmt.Errorf("natsauth: new %s key: %w", name, err)
		}
		seed, _ = kp.Seed()
		if err := writeFile(path, seed); err != nil {
			return nil, err
		}
		return kp, nil
	}
	if err != nil {
		return nil, fmt.Errorf("natsauth: read %s key: %w", name, err)
	}
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, path, err)
	}
	return kp, nil
}

// token reads <name>.jwt, or encodes one with make and writes it.
func (a *Authority) token(name string, make func() (string, error)) (string, error) {
	path := filepath.Join(a.dir, name+".jwt")
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		t, err := make()
		if err != nil {
			return "", fmt.Errorf("natsauth: encode %s jwt: %w", name, err)
		}
		return t, writeFile(path, []byte(t))
	}
	if err != nil {
		return "", fmt.Errorf("natsauth: read %s jwt: %w", name, err)
	}
	return string(raw), nil
}

// writeFile writes data to path (0600) through a temporary file, so that
// a reader never sees half a key.
func writeFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("natsauth: write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("natsauth: write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("natsauth: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("natsauth: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("natsauth: write %s: %w", path, err)
	}
	return nil
}

// Dir is the folder the authority is kept in.
func (a *Authority) Dir() string { return a.dir }

// AccountID is the public key of the Outpost account.
func (a *Authority) AccountID() string { return a.accountPub }

// ServerAuth is what an embedded server needs to run in operator mode with
// this authority, as the account JWTs are now (revocations included).
func (a *Authority) ServerAuth() *natsembed.Auth {
	sysPub, _ := a.system.PublicKey()
	a.mu.Lock()
	defer a.mu.Unlock()
	return &natsembed.Auth{
		OperatorJWT:   a.operatorJWT,
		SystemAccount: sysPub,
		Accounts:      map[string]string{sysPub: a.systemJWT, a.accountPub: a.accountJWT},
	}
}

// Credentials is an issued user: its id (public key), its JWT and the
// contents of its NATS credentials file.
type Credentials struct {
	ID      string
	JWT     string
	Expires time.Time // zero: no expiry
	// File is the credentials file (JWT and seed): a secret.
	File []byte
}

// Issue mints a user of scope in the Outpost account (the system account
// for RoleSystem), named name, valid for ttl (0: no expiry).
func (a *Authority) Issue(name string, scope Scope, ttl time.Duration) (Credentials, error) {
	user, err := nkeys.CreateUser()
	if err != nil {
		return Credentials{}, fmt.Errorf("natsauth: new user key: %w", err)
	}
	pub, _ := user.PublicKey()
	perms, err := Permissions(scope, pub)
	if err != nil {
		return Credentials{}, err
	}
	uc := jwt.NewUserClaims(pub)
	uc.Name = name
	uc.Permissions = perms
	var expires time.Time
	if ttl > 0 {
		expires = time.Now().Add(ttl).Truncate(time.Second)
		uc.Expires = expires.Unix()
	}
	signer := a.account
	if scope.Role == RoleSystem {
		signer = a.system
	} else {
		uc.Tags.Add("role:" + string(scope.Role))
		for k, v := range map[string]string{"tenant": scope.Tenant, "pool": scope.Pool, "zone": scope.Zone} {
			if v != "" {
				uc.Tags.Add(k + ":" + v)
			}
		}
	}
	token, err := uc.Encode(signer)
	if err != nil {
		return Credentials{}, fmt.Errorf("natsauth: encode user jwt: %w", err)
	}
	seed, _ := user.Seed()
	file, err := jwt.FormatUserConfig(token, seed)
	if err != nil {
		return Credentials{}, fmt.Errorf("natsauth: credentials file: %w", err)
	}
	return Credentials{ID: pub, JWT: token, Expires: expires, File: file}, nil
}

// WriteCredentials issues a user like Issue and writes its credentials
// file to path (0600).
func (a *Authority) WriteCredentials(path, name string, scope Scope, ttl time.Duration) (Credentials, error) {
	c, err := a.Issue(name, scope, ttl)
	if err != nil {
		return Credentials{}, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return Credentials{}, fmt.Errorf("natsauth: credentials folder: %w", err)
	}
	return c, writeFile(path, c.File)
}

// Revoke adds the user userID to the Outpost account's revocation list
// (every JWT of that user issued before now) and keeps the new account JWT
// in the folder. Push it to running servers with Push.
func (a *Authority) Revoke(userID string) error {
	if !nkeys.IsValidPublicUserKey(userID) {
		return fmt.Errorf("%w: %q is not a user id", ErrInvalidScope, userID)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	ac, err := jwt.DecodeAccountClaims(a.accountJWT)
	if err != nil {
		return fmt.Errorf("%w: account jwt: %w", ErrCorrupt, err)
	}
	// A revocation covers JWTs issued at or before the time; one second
	// later makes a JWT issued within this second revoked too.
	ac.RevokeAt(userID, time.Now().Add(time.Second))
	token, err := ac.Encode(a.operator)
	if err != nil {
		return fmt.Errorf("natsauth: encode account jwt: %w", err)
	}
	if err := writeFile(filepath.Join(a.dir, "outpost.jwt"), []byte(token)); err != nil {
		return err
	}
	a.accountJWT = token
	return nil
}

// Revoked reports whether userID is on the account's revocation list.
func (a *Authority) Revoked(userID string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	ac, err := jwt.DecodeAccountClaims(a.accountJWT)
	if err != nil {
		return false
	}
	_, ok := ac.Revocations[userID]
	return ok
}

// Option is a nats.go option that connects as this user.
func (c Credentials) Option() (nats.Option, error) {
	seed, err := jwt.ParseDecoratedNKey(c.File)
	if err != nil {
		return nil, fmt.Errorf("%w: credentials: %w", ErrCorrupt, err)
	}
	s, _ := seed.Seed()
	return nats.UserJWTAndSeed(c.JWT, string(s)), nil
}

// PushTo pushes the Outpost account's current JWT to the servers at url
// (comma-separated), connecting as a new short-lived system user with
// opts (TLS). The servers of a cluster pass the update on to each other.
func (a *Authority) PushTo(ctx context.Context, url string, opts ...nats.Option) error {
	sys, err := a.Issue("outpost-account-push", Scope{Role: RoleSystem}, time.Minute)
	if err != nil {
		return err
	}
	auth, err := sys.Option()
	if err != nil {
		return err
	}
	nc, err := nats.Connect(url, append([]nats.Option{auth, nats.Name("outpost-account-push")}, opts...)...)
	if err != nil {
		return fmt.Errorf("natsauth: push account: connect %s: %w", natsjs.RedactURL(url), err)
	}
	defer nc.Close()
	return a.Push(ctx, nc)
}

// Issued is the record of an issued user, kept in the folder (users/<id>.json)
// so that a revocation can be checked against the user's tenant.
type Issued struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Role    Role      `json:"role"`
	Tenant  string    `json:"tenant,omitempty"`
	Pool    string    `json:"pool,omitempty"`
	Zone    string    `json:"zone,omitempty"`
	Expires time.Time `json:"expires,omitzero"`
	Revoked bool      `json:"revoked,omitempty"`
}

// ErrUnknownUser is returned by Lookup for a user this authority has no
// record of.
var ErrUnknownUser = errors.New("natsauth: unknown user")

// IssueRecorded is Issue, and keeps a record of the user (Lookup).
func (a *Authority) IssueRecorded(name string, scope Scope, ttl time.Duration) (Credentials, error) {
	c, err := a.Issue(name, scope, ttl)
	if err != nil {
		return Credentials{}, err
	}
	rec := Issued{ID: c.ID, Name: name, Role: scope.Role, Tenant: scope.Tenant, Pool: scope.Pool, Zone: scope.Zone, Expires: c.Expires}
	raw, err := json.Marshal(rec)
	if err != nil {
		return Credentials{}, fmt.Errorf("natsauth: user record: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(a.dir, "users"), 0o700); err != nil {
		return Credentials{}, fmt.Errorf("natsauth: user record: %w", err)
	}
	return c, writeFile(filepath.Join(a.dir, "users", c.ID+".json"), raw)
}

// Lookup returns the record of a user issued with IssueRecorded, with
// Revoked set when it is on the revocation list.
func (a *Authority) Lookup(id string) (Issued, error) {
	if !nkeys.IsValidPublicUserKey(id) {
		return Issued{}, fmt.Errorf("%w: %q", ErrUnknownUser, id)
	}
	raw, err := os.ReadFile(filepath.Join(a.dir, "users", id+".json"))
	if errors.Is(err, fs.ErrNotExist) {
		return Issued{}, fmt.Errorf("%w: %q", ErrUnknownUser, id)
	}
	if err != nil {
		return Issued{}, fmt.Errorf("natsauth: user record: %w", err)
	}
	var rec Issued
	if err := json.Unmarshal(raw, &rec); err != nil {
		return Issued{}, fmt.Errorf("%w: user record %s: %w", ErrCorrupt, id, err)
	}
	rec.Revoked = a.Revoked(id)
	return rec, nil
}

// Package signing signs the control plane's work messages (JobDispatched,
// Operation, AccountLease) with ed25519 and verifies them on the agents.
//
// A signature (outpost.common.v1.Signature) names its key id, its expiry
// and its scope ("pool/<pool>" or "zone/<zone>"), and covers, besides
// those, the tenant, the subject (job id, operation id or account), the
// attempt and the whole message marshalled deterministically with its
// signature field cleared: a change to any of them makes it fail. Agents
// hold several trusted public keys, so that a new signing key can be
// trusted before the control plane switches to it (rotation).
package signing

import (
	"crypto/ed25519"
	"crypto/fips140"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	voied25519 "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/outposthq/outpost/proto/outpost/common/v1"
)

// Errors of Verify, one per reason a message is refused; Reason maps them
// to a short metric label.
var (
	// ErrUnsigned is returned for a message that carries no signature.
	ErrUnsigned = errors.New("signing: message is not signed")
	// ErrBadSignature is returned when the signature does not match the
	// message: it was changed after signing, or signed by another key.
	ErrBadSignature = errors.New("signing: bad signature")
	// ErrExpired is returned for a signature past its expiry.
	ErrExpired = errors.New("signing: signature expired")
	// ErrUnknownKey is returned for a key id the verifier does not trust.
	ErrUnknownKey = errors.New("signing: unknown signing key")
	// ErrWrongTenant is returned for a message of another tenant than the
	// agent's.
	ErrWrongTenant = errors.New("signing: message of another tenant")
	// ErrWrongScope is returned for a message signed for another pool or
	// zone than the agent's.
	ErrWrongScope = errors.New("signing: message signed for another pool or zone")
	// ErrInvalidKey is returned for a key id or key that cannot be used.
	ErrInvalidKey = errors.New("signing: invalid key")
	// ErrNotSignable is returned for a message type without a signature
	// field of type outpost.common.v1.Signature.
	ErrNotSignable = errors.New("signing: message has no signature field")
)

// Reasons for metrics, the values of Reason.
const (
	ReasonUnsigned     = "unsigned"
	ReasonBadSignature = "bad_signature"
	ReasonExpired      = "expired"
	ReasonUnknownKey   = "unknown_key"
	ReasonWrongTenant  = "wrong_tenant"
	ReasonWrongScope   = "wrong_scope"
	ReasonInvalid      = "invalid"
)

// Reason reduces an error of Verify to one of the Reason constants, a
// bounded metric label.
func Reason(err error) string {
	switch {
	case errors.Is(err, ErrUnsigned):
		return ReasonUnsigned
	case errors.Is(err, ErrBadSignature):
		return ReasonBadSignature
	case errors.Is(err, ErrExpired):
		return ReasonExpired
	case errors.Is(err, ErrUnknownKey):
		return ReasonUnknownKey
	case errors.Is(err, ErrWrongTenant):
		return ReasonWrongTenant
	case errors.Is(err, ErrWrongScope):
		return ReasonWrongScope
	}
	return ReasonInvalid
}

// PoolScope is the scope of a job of pool.
func PoolScope(pool string) string { return "pool/" + pool }

// ZoneScope is the scope of an account lease for zone.
func ZoneScope(zone string) string { return "zone/" + zone }

// AccountScope is the scope of an operation on account: operations are
// queued per account, and only the watcher holding it consumes them.
func AccountScope(account string) string { return "account/" + account }

// Binding is what a signature is bound to besides the message bytes.
type Binding struct {
	// Tenant owning the message.
	Tenant string
	// Scope is PoolScope, ZoneScope or AccountScope.
	Scope string
	// Subject is the job id, operation id or account name.
	Subject string
	// Attempt the message is issued for (0 where it does not apply).
	Attempt uint32
}

// DefaultTTL is how long a signature is valid when the signer is given no
// TTL: long enough for a job to wait in a backlog and for its attempts
// (each up to the scheduler's 24 h maximum timeout) to be retried.
const DefaultTTL = 7 * 24 * time.Hour

// Signer signs messages with one ed25519 key.
type Signer struct {
	kid string
	key ed25519.PrivateKey
	ttl time.Duration
	now func() time.Time
}

// NewSigner returns a signer with key id kid (a non-empty string without
// ':' or white space) whose signatures are valid for ttl (DefaultTTL when
// ttl <= 0).
func NewSigner(kid string, key ed25519.PrivateKey, ttl time.Duration) (*Signer, error) {
	if err := checkKeyID(kid); err != nil {
		return nil, err
	}
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: ed25519 private key of %d bytes", ErrInvalidKey, len(key))
	}
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	return &Signer{kid: kid, key: key, ttl: ttl, now: time.Now}, nil
}

// KeyID is the id of the signer's key.
func (s *Signer) KeyID() string { return s.kid }

// Public is the signer's public key, for the agents' trusted keys.
func (s *Signer) Public() PublicKey {
	return PublicKey{ID: s.kid, Key: s.key.Public().(ed25519.PublicKey)}
}

// WithTTL returns a copy of s whose signatures are valid for ttl
// (DefaultTTL when ttl <= 0).
func (s *Signer) WithTTL(ttl time.Duration) *Signer {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	c := *s
	c.ttl = ttl
	return &c
}

// WithClock returns a copy of s reading the time from now (tests).
func (s *Signer) WithClock(now func() time.Time) *Signer {
	c := *s
	c.now = now
	return &c
}

// Sign sets the signature field of m to a signature bound to b; any
// signature m had is replaced.
func (s *Signer) Sign(m proto.Message, b Binding) error {
	fd, err := signatureField(m)
	if err != nil {
		return err
	}
	sig := &commonv1.Signature{
		KeyId:     s.kid,
		ExpiresAt: timestamppb.New(s.now().Add(s.ttl).UTC()),
		Scope:     b.Scope,
	}
	body, err := marshalUnsigned(m, fd)
	if err != nil {
		return err
	}
	sig.Signature = ed25519.Sign(s.key, signedBytes(m, sig, b, body))
	m.ProtoReflect().Set(fd, protoreflect.ValueOfMessage(sig.ProtoReflect()))
	return nil
}

// PublicKey is a trusted ed25519 public key and its id.
type PublicKey struct {
	ID  string
	Key ed25519.PublicKey
}

// Verifier checks signatures against a set of trusted public keys.
type Verifier struct {
	keys map[string]trustedKey
	now  func() time.Time
}

// trustedKey is a trusted public key and its expanded form: the tables of
// the key's point, computed once, so that a verification does not
// decompress the key and build them again. It halves the CPU an agent
// spends per signature (BenchmarkVerify), which was a quarter of a
// runner's CPU per no-op job.
type trustedKey struct {
	key      ed25519.PublicKey
	expanded *voied25519.ExpandedPublicKey
}

// verify reports whether sig is the key's signature of payload. In FIPS
// 140-3 mode (GODEBUG=fips140=on) it is crypto/ed25519's, the validated
// module's; otherwise the expanded key's.
func (k trustedKey) verify(payload, sig []byte) bool {
	if fips140.Enabled() {
		return ed25519.Verify(k.key, payload, sig)
	}
	return voied25519.VerifyExpandedWithOptions(k.expanded, payload, sig, verifyOptions)
}

// verifyOptions makes the expanded verification accept and refuse exactly
// what crypto/ed25519.Verify does (cofactorless, canonical S).
var verifyOptions = &voied25519.Options{Verify: voied25519.VerifyOptionsStdLib}

// NewVerifier returns a verifier trusting keys; it needs at least one, and
// a key id may not name two different keys.
func NewVerifier(keys ...PublicKey) (*Verifier, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no trusted public key", ErrInvalidKey)
	}
	v := &Verifier{keys: make(map[string]trustedKey, len(keys)), now: time.Now}
	for _, k := range keys {
		if err := checkKeyID(k.ID); err != nil {
			return nil, err
		}
		if len(k.Key) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: public key %q has %d bytes", ErrInvalidKey, k.ID, len(k.Key))
		}
		if prev, dup := v.keys[k.ID]; dup && !prev.key.Equal(k.Key) {
			return nil, fmt.Errorf("%w: key id %q names two different keys", ErrInvalidKey, k.ID)
		}
		expanded, err := voied25519.NewExpandedPublicKey(voied25519.PublicKey(k.Key))
		if err != nil {
			// Not a point of the curve: no signature could verify with it.
			return nil, fmt.Errorf("%w: public key %q: %w", ErrInvalidKey, k.ID, err)
		}
		v.keys[k.ID] = trustedKey{key: k.Key, expanded: expanded}
	}
	return v, nil
}

// WithClock returns a copy of v reading the time from now (tests).
func (v *Verifier) WithClock(now func() time.Time) *Verifier {
	c := *v
	c.now = now
	return &c
}

// Verify checks the signature of m against b, where b.Tenant and b.Scope
// are the agent's own tenant and pool or zone, and b.Subject and b.Attempt
// are read from m. It returns an error wrapping one of ErrUnsigned,
// ErrWrongTenant, ErrWrongScope, ErrUnknownKey, ErrExpired or
// ErrBadSignature. msgTenant is the tenant the message names.
//
// raw is the message as received, m decoded from it: the signed bytes are
// raw less its signature field, so that an agent verifies fields it does
// not know (a newer control plane's) as they were signed. With raw nil, m
// is marshalled deterministically instead.
func (v *Verifier) Verify(m proto.Message, raw []byte, msgTenant string, b Binding) error {
	fd, err := signatureField(m)
	if err != nil {
		return err
	}
	r := m.ProtoReflect()
	if !r.Has(fd) {
		return ErrUnsigned
	}
	sig, ok := r.Get(fd).Message().Interface().(*commonv1.Signature)
	if !ok || len(sig.GetSignature()) == 0 {
		return ErrUnsigned
	}
	if msgTenant != b.Tenant {
		return fmt.Errorf("%w: signed for tenant %q, this agent serves %q", ErrWrongTenant, msgTenant, b.Tenant)
	}
	if sig.GetScope() != b.Scope {
		return fmt.Errorf("%w: signed for %q, this agent serves %q", ErrWrongScope, sig.GetScope(), b.Scope)
	}
	key, ok := v.keys[sig.GetKeyId()]
	if !ok {
		return fmt.Errorf("%w: key id %q", ErrUnknownKey, sig.GetKeyId())
	}
	if !sig.GetExpiresAt().IsValid() || !v.now().Before(sig.GetExpiresAt().AsTime()) {
		return fmt.Errorf("%w: at %s", ErrExpired, sig.GetExpiresAt().AsTime().Format(time.RFC3339))
	}
	var body []byte
	if raw != nil {
		if body, err = stripField(raw, fd.Number()); err != nil {
			return fmt.Errorf("%w: %w", ErrBadSignature, err)
		}
	} else if body, err = marshalUnsigned(m, fd); err != nil {
		return err
	}
	payload := signedBytes(m, sig, b, body)
	if !key.verify(payload, sig.GetSignature()) {
		return fmt.Errorf("%w: key id %q", ErrBadSignature, sig.GetKeyId())
	}
	return nil
}

// domain separates these signatures from any other use of the keys.
const domain = "outpost-signature-v1"

// marshalUnsigned is m marshalled deterministically with its signature
// field cleared. Marshalled deterministically with the signature (as
// events.Encode does), the same message is these bytes with the signature
// field in its place: fields are written in number order.
func marshalUnsigned(m proto.Message, fd protoreflect.FieldDescriptor) ([]byte, error) {
	// A message signed for the first time has no signature to leave out:
	// it is marshalled as it is, without the copy.
	c := m
	if m.ProtoReflect().Has(fd) {
		c = proto.Clone(m)
		c.ProtoReflect().Clear(fd)
	}
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("signing: marshal %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return body, nil
}

// stripField returns raw, a marshalled message, without its top-level
// fields of number num.
func stripField(raw []byte, num protowire.Number) ([]byte, error) {
	out := make([]byte, 0, len(raw))
	for rest := raw; len(rest) > 0; {
		n, typ, tl := protowire.ConsumeTag(rest)
		if tl < 0 {
			return nil, protowire.ParseError(tl)
		}
		vl := protowire.ConsumeFieldValue(n, typ, rest[tl:])
		if vl < 0 {
			return nil, protowire.ParseError(vl)
		}
		if n != num {
			out = append(out, rest[:tl+vl]...)
		}
		rest = rest[tl+vl:]
	}
	return out, nil
}

// signedBytes is what a signature covers: the domain, the message type,
// the signature's key id, expiry and scope, the binding, and body (the
// message without its signature); each part length-prefixed.
func signedBytes(m proto.Message, sig *commonv1.Signature, b Binding, body []byte) []byte {
	var out []byte
	put := func(p []byte) {
		out = binary.BigEndian.AppendUint32(out, uint32(len(p)))
		out = append(out, p...)
	}
	put([]byte(domain))
	put([]byte(m.ProtoReflect().Descriptor().FullName()))
	put([]byte(sig.GetKeyId()))
	out = binary.BigEndian.AppendUint64(out, uint64(sig.GetExpiresAt().GetSeconds()))
	out = binary.BigEndian.AppendUint32(out, uint32(sig.GetExpiresAt().GetNanos()))
	put([]byte(sig.GetScope()))
	put([]byte(b.Tenant))
	put([]byte(b.Subject))
	out = binary.BigEndian.AppendUint32(out, b.Attempt)
	put(body)
	return out
}

var signatureName = (&commonv1.Signature{}).ProtoReflect().Descriptor().FullName()

func signatureField(m proto.Message) (protoreflect.FieldDescriptor, error) {
	if m == nil {
		return nil, fmt.Errorf("%w: nil message", ErrNotSignable)
	}
	fd := m.ProtoReflect().Descriptor().Fields().ByName("signature")
	if fd == nil || fd.Message() == nil || fd.Message().FullName() != signatureName {
		return nil, fmt.Errorf("%w: %s", ErrNotSignable, m.ProtoReflect().Descriptor().FullName())
	}
	return fd, nil
}

// Package natsjs is the NATS JetStream backend of package queue, and the
// JetStream implementation of kv.Store.
//
// # Streams
//
// In the per-tenant layout (the default) every tenant gets three streams,
// created by EnsureTenant:
//
//	<STACK>_<tenant>_WORK    work queue   <stack>.<tenant>.submit, <stack>.<tenant>.jobs.*
//	<STACK>_<tenant>_EVENTS  limits       <stack>.<tenant>.{job-events,control,runners}.>
//	<STACK>_<tenant>_DLQ     limits       <stack>.<tenant>.dlq.>
//
// TenantLimits set MaxBytes and MaxMsgs on each of the three. The work
// stream discards new messages when full (Publish returns
// queue.ErrLimitExceeded); the event and dead-letter streams drop their
// oldest messages.
//
// In the shared layout (for thousands of tenants per server) the three
// streams are shared by every tenant of the stack (<STACK>_WORK with
// <stack>.*.submit and <stack>.*.jobs.*, and so on), consumers are filtered
// by the tenant's subjects, and EnsureTenant records the tenant in the
// <STACK>-tenants KV bucket so that Publish can still refuse unknown
// tenants. JetStream has no per-subject byte or message quota, so
// TenantLimits are recorded there but NOT enforced in the shared layout; use
// the per-tenant layout for tenants that need hard limits.
//
// A stack uses one layout; switching an existing stack from one to the
// other is not supported (the stream subjects would overlap).
//
// # Consumers
//
// Consume creates a durable pull consumer with explicit ack. Its name is
// derived from ConsumerConfig.Name, the tenant and the filter subject, so
// that instances with the same Name and Subject share it (and compete for
// messages) while the same Name on another subject gets its own consumer.
// JetStream's MaxDeliver is unlimited: the library enforces
// ConsumerConfig.MaxDeliveries itself and dead-letters a message delivered
// more often, without calling the handler. A new consumer starts at the
// oldest stored message: on work subjects that is everything not yet
// handled, on event subjects the retained history (up to EventsMaxAge).
//
// Pull requests ask for no more messages than there are free handler slots,
// so nothing sits in the process unhandled. MaxAckPending, which JetStream
// counts across every instance of a durable consumer and which includes
// deliveries waiting out a Nak delay, is max(256, 16 x Concurrency) so that
// scaled-out instances do not throttle each other.
//
// # Settlement
//
// Ack, Nak, InProgress and Term are request/reply: they return once the
// server has recorded them, and an error means they may be retried. Term
// (and a delivery past MaxDeliveries) first publishes a copy to
// Subjects.DeadLetter(tenant, role) with the dead-letter headers and the
// original headers (less JetStream's Nats-* ones), deduplicated by the
// original's stream sequence, then terminates the original. A delivery of
// the dead-letter stream itself is only terminated: it stays stored.
//
// # Dead letters
//
// Conn implements queue.DeadLetterStore: the dead-letter stream keeps its
// messages once consumed (30 days by default), DeadLetters lists a
// tenant's with their stream sequence as id, and DeleteDeadLetter removes
// one.
//
// Work streams store only the subject shapes consumers read (one key
// token: jobs.<pool>, leases.<zone>, ops.<account>), and the watch stream
// only watch.<account>.<kind>.<namespace>.<name>; Publish refuses other
// shapes with queue.ErrInvalidSubject, and no stream stores them.
package natsjs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outposthq/outpost/libs/kv"
	"github.com/outposthq/outpost/libs/queue"
)

// Layout chooses how tenants map onto streams (queue.Layout).
type Layout = queue.Layout

const (
	// LayoutPerTenant gives every tenant its own streams: the strongest
	// isolation, and TenantLimits are enforced. The default.
	LayoutPerTenant = queue.LayoutPerTenant
	// LayoutShared puts every tenant of a stack in the same three streams
	// with subject-filtered consumers. TenantLimits are not enforced.
	LayoutShared = queue.LayoutShared
)

// Defaults applied by Connect.
const (
	DefaultEventsMaxAge     = 7 * 24 * time.Hour
	DefaultDeadLetterMaxAge = 30 * 24 * time.Hour
	DefaultDuplicateWindow  = 2 * time.Minute
	DefaultReconnectWait    = 2 * time.Second
)

// Config configures a connection.
type Config struct {
	// URL of the NATS servers; several may be given comma-separated.
	URL string
	// Stack is the subject prefix; default queue.DefaultStack. It must be a
	// valid subject token (queue.ValidToken).
	Stack string
	// Layout maps tenants onto streams; default LayoutPerTenant.
	Layout Layout
	// Replicas of every stream and KV bucket: 1 (default) or 3.
	Replicas int
	// MaxPayload is the largest Message.Data Publish accepts, in bytes.
	// 0 means the server's max_payload. The server's limit applies to data
	// and headers together and is checked by the server as well.
	MaxPayload int
	// EventsMaxAge is how long event streams keep messages; default 7 days.
	EventsMaxAge time.Duration
	// DeadLetterMaxAge is how long dead-letter streams keep messages;
	// default 30 days.
	DeadLetterMaxAge time.Duration
	// DuplicateWindow is how long a Message.DedupeID is remembered;
	// default 2 minutes.
	DuplicateWindow time.Duration
	// Name is the client name shown by the server, e.g. the service name.
	Name string
	// ReconnectWait bounds the wait between reconnect attempts, which grows
	// from 100ms up to it; default 2s. The client reconnects forever.
	ReconnectWait time.Duration
	// Logger receives connection events and handler failures; default
	// slog.Default().
	Logger *slog.Logger
	// Credentials is a NATS credentials file (user JWT and nkey seed), as
	// issued by package natsauth. Empty connects without credentials,
	// which a server in operator mode refuses.
	Credentials string
	// TLS configures TLS to the server; the zero value uses TLS only when
	// the URL says tls://.
	TLS TLS
	// InboxPrefix replaces "_INBOX" as the prefix of reply subjects, so
	// that a user's permissions can allow replies to its own inbox only
	// (natsauth issues each user the prefix "_INBOX.<user id>").
	InboxPrefix string
}

// TLS is the client side of a TLS connection to NATS. CA verifies the
// server; Cert and Key are the client certificate for mutual TLS.
type TLS struct {
	// CA is a PEM file of the CAs that sign the server's certificate;
	// empty means the system roots.
	CA string `yaml:"ca" env:"OUTPOST_BROKER_TLS_CA"`
	// Cert and Key are PEM files of the client certificate and its key,
	// for servers that verify clients (mTLS). Both or neither.
	Cert string `yaml:"cert" env:"OUTPOST_BROKER_TLS_CERT"`
	Key  string `yaml:"key" env:"OUTPOST_BROKER_TLS_KEY"`
}

// Enabled reports whether any TLS setting is given.
func (t TLS) Enabled() bool { return t.CA != "" || t.Cert != "" || t.Key != "" }

// ErrTLSConfig is returned by Connect when the TLS settings are incomplete.
var ErrTLSConfig = errors.New("natsjs: tls: cert and key must be given together")

// Options are the nats.go options of t, for connections made outside
// Connect (e.g. a system-account user pushing an account update).
func (t TLS) Options() ([]nats.Option, error) { return t.options() }

func (t TLS) options() ([]nats.Option, error) {
	if (t.Cert == "") != (t.Key == "") {
		return nil, ErrTLSConfig
	}
	var opts []nats.Option
	if t.Enabled() {
		opts = append(opts, nats.Secure())
	}
	if t.CA != "" {
		opts = append(opts, nats.RootCAs(t.CA))
	}
	if t.Cert != "" {
		opts = append(opts, nats.ClientCert(t.Cert, t.Key))
	}
	return opts, nil
}

func (cfg Config) withDefaults() (Config, error) {
	if cfg.URL == "" {
		cfg.URL = nats.DefaultURL
	}
	if cfg.Stack == "" {
		cfg.Stack = queue.DefaultStack
	}
	if !queue.ValidToken(cfg.Stack) {
		return cfg, fmt.Errorf("natsjs: stack %q: want 1-64 characters of [a-zA-Z0-9_-]", cfg.Stack)
	}
	switch cfg.Layout {
	case "":
		cfg.Layout = LayoutPerTenant
	case LayoutPerTenant, LayoutShared:
	default:
		return cfg, fmt.Errorf("natsjs: unknown layout %q", cfg.Layout)
	}
	switch cfg.Replicas {
	case 0:
		cfg.Replicas = 1
	case 1, 3:
	default:
		return cfg, fmt.Errorf("natsjs: replicas %d: want 1 or 3", cfg.Replicas)
	}
	if cfg.MaxPayload < 0 {
		return cfg, fmt.Errorf("natsjs: negative max payload %d", cfg.MaxPayload)
	}
	if cfg.EventsMaxAge <= 0 {
		cfg.EventsMaxAge = DefaultEventsMaxAge
	}
	if cfg.DeadLetterMaxAge <= 0 {
		cfg.DeadLetterMaxAge = DefaultDeadLetterMaxAge
	}
	if cfg.DuplicateWindow <= 0 {
		cfg.DuplicateWindow = DefaultDuplicateWindow
	}
	if cfg.DuplicateWindow > cfg.EventsMaxAge {
		cfg.DuplicateWindow = cfg.EventsMaxAge
	}
	if cfg.ReconnectWait <= 0 {
		cfg.ReconnectWait = DefaultReconnectWait
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}

// Conn is a connection to NATS JetStream. It implements queue.Broker and
// kv.Opener and is safe for concurrent use.
type Conn struct {
	cfg      Config
	subjects queue.Subjects
	prefix   string // stream name prefix: the stack, upper-cased
	log      *slog.Logger
	nc       *nats.Conn
	js       jetstream.JetStream

	maxPayload int

	// pubAllow and pubDeny are the publish permissions of the
	// credentials' user (none: no restriction); see mayPublish.
	pubAllow, pubDeny []string

	closed atomic.Bool

	// known holds tenants whose streams (or registry entry) were seen, so
	// that Publish does not look them up again.
	known sync.Map // tenant -> struct{}
	// accountsReady holds tenants whose streams carry the account roles
	// (per-tenant layout): added on first use, see ensureAccounts.
	accountsReady sync.Map // tenant -> struct{}

	sharedMu    sync.Mutex
	sharedReady bool
	registry    jetstream.KeyValue // shared layout: the tenants bucket

	epochMu     sync.Mutex
	epoch       context.Context // cancelled when the connection reconnects
	epochCancel context.CancelFunc

	consMu    sync.Mutex
	consumers map[*consumer]struct{}

	// jsReady is the last verdict of probeJetStream; probeDone closes
	// when the probe stops.
	jsReady   atomic.Bool
	probeStop context.CancelFunc
	probeDone chan struct{}
}

var (
	_ queue.Broker     = (*Conn)(nil)
	_ queue.LastReader = (*Conn)(nil)
	_ queue.Purger     = (*Conn)(nil)
	_ queue.WorkLister = (*Conn)(nil)
	_ kv.Opener        = (*Conn)(nil)
)

// Connect dials NATS and waits until the connection is up and JetStream
// answers, or ctx is done. Once connected, the client reconnects forever
// after a loss; Ready reports the state.
func Connect(ctx context.Context, cfg Config) (*Conn, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Conn{
		cfg:       cfg,
		subjects:  queue.NewSubjects(cfg.Stack),
		prefix:    sanitizeName(strings.ToUpper(cfg.Stack)),
		log:       cfg.Logger.With("component", "natsjs", "stack", cfg.Stack),
		consumers: map[*consumer]struct{}{},
	}
	c.epoch, c.epochCancel = context.WithCancel(context.Background())

	maxWait := cfg.ReconnectWait
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.CustomReconnectDelay(func(attempts int) time.Duration {
			d := 100 * time.Millisecond << min(attempts, 10)
			d = min(d, maxWait)
			return d/2 + rand.N(d/2+1)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				c.log.Warn("nats disconnected", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			c.log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
			c.newEpoch()
		}),
		nats.ConnectHandler(func(nc *nats.Conn) {
			c.log.Info("nats connected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			c.log.Warn("nats async error", "subject", subject, "error", err)
		}),
	}
	tlsOpts, err := cfg.TLS.options()
	if err != nil {
		return nil, err
	}
	opts = append(opts, tlsOpts...)
	if cfg.Credentials != "" {
		if _, err := os.Stat(cfg.Credentials); err != nil {
			return nil, fmt.Errorf("natsjs: credentials: %w", err)
		}
		opts = append(opts, nats.UserCredentials(cfg.Credentials))
	}
	inbox := cfg.InboxPrefix
	if cfg.Credentials != "" {
		user, err := credentialsUser(cfg.Credentials)
		if err != nil {
			return nil, err
		}
		if inbox == "" {
			inbox = InboxPrefix(user.Subject)
		}
		c.pubAllow, c.pubDeny = user.Pub.Allow, user.Pub.Deny
	}
	if inbox != "" {
		opts = append(opts, nats.CustomInboxPrefix(inbox))
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("natsjs: connect %s: %w", redactURL(cfg.URL), err)
	}
	c.nc = nc
	if err := c.waitConnected(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	c.js, err = jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("natsjs: jetstream: %w", err)
	}
	if err := c.waitJetStream(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	c.jsReady.Store(true)
	pctx, stop := context.WithCancel(context.Background())
	c.probeStop, c.probeDone = stop, make(chan struct{})
	go c.probeJetStream(pctx)
	c.maxPayload = int(nc.MaxPayload())
	if cfg.MaxPayload > 0 {
		if cfg.MaxPayload > c.maxPayload {
			c.log.Warn("configured max payload is above the server's", "max_payload", cfg.MaxPayload, "server_max_payload", c.maxPayload)
		}
		c.maxPayload = cfg.MaxPayload
	}
	return c, nil
}

func (c *Conn) waitConnected(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !c.nc.IsConnected() {
		if c.nc.IsClosed() {
			// The client gives up on a server that refuses its
			// credentials (twice in a row): waiting longer is pointless.
			return fmt.Errorf("natsjs: connect %s: %w", redactURL(c.cfg.URL), closedErr(c.nc))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("natsjs: connect %s: %w", redactURL(c.cfg.URL), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// jetStreamGrace is how long Connect keeps asking a server that answers
// that JetStream is not enabled: a cluster node still starting answers so
// for a moment, a server without JetStream for ever.
var jetStreamGrace = 10 * time.Second

// waitJetStream checks that JetStream answers; a cluster that is still
// electing its meta leader gets until ctx is done, one whose node says
// JetStream is not enabled gets jetStreamGrace.
func (c *Conn) waitJetStream(ctx context.Context) error {
	var notEnabledSince time.Time
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := c.js.AccountInfo(actx)
		cancel()
		switch {
		case err == nil:
			return nil
		case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
			if notEnabledSince.IsZero() {
				notEnabledSince = time.Now()
			}
			if time.Since(notEnabledSince) >= jetStreamGrace {
				return fmt.Errorf("natsjs: %w", err)
			}
		default:
			notEnabledSince = time.Time{}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("natsjs: jetstream not available: %w (%w)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *Conn) newEpoch() {
	c.epochMu.Lock()
	defer c.epochMu.Unlock()
	c.epochCancel()
	c.epoch, c.epochCancel = context.WithCancel(context.Background())
}

// currentEpoch is cancelled at the next reconnect: pull requests tied to it
// are re-issued at once instead of waiting for their expiry.
func (c *Conn) currentEpoch() context.Context {
	c.epochMu.Lock()
	defer c.epochMu.Unlock()
	return c.epoch
}

// Ready reports whether the connection is up and JetStream answers, for
// readiness probes. A node of a cluster that lost its quorum keeps the
// connection up while every JetStream request fails, so the connection
// alone is not enough: JetStream is asked every ReadyProbeInterval, and
// two failed probes in a row make the connection not ready until one
// succeeds.
func (c *Conn) Ready() bool {
	return !c.closed.Load() && c.nc.IsConnected() && c.jsReady.Load()
}

// Status is the connection state, e.g. "CONNECTED" or "RECONNECTING", or
// "JETSTREAM UNAVAILABLE" while connected to a server whose JetStream does
// not answer.
func (c *Conn) Status() string {
	if c.closed.Load() {
		return "CLOSED"
	}
	st := c.nc.Status()
	if st == nats.CONNECTED && !c.jsReady.Load() {
		return "JETSTREAM UNAVAILABLE"
	}
	return st.String()
}

// ReadyProbeInterval is how often a connection asks JetStream whether it
// answers (see Ready).
const ReadyProbeInterval = 2 * time.Second

// probeJetStream keeps jsReady: JetStream's account info needs the
// cluster's meta leader, so it fails while the cluster has no quorum.
func (c *Conn) probeJetStream(ctx context.Context) {
	defer close(c.probeDone)
	t := time.NewTicker(ReadyProbeInterval)
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !c.nc.IsConnected() {
			continue // Ready says so already; reconnecting is not a JetStream fault
		}
		actx, cancel := context.WithTimeout(ctx, ReadyProbeInterval)
		_, err := c.js.AccountInfo(actx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
			if failures >= 2 {
				c.log.Info("jetstream answers again")
			}
			failures = 0
			c.jsReady.Store(true)
		default:
			failures++
			if failures == 2 {
				c.log.Warn("jetstream does not answer: not ready", "error", err)
				c.jsReady.Store(false)
			}
		}
	}
}

// Subjects returns the subject builder of the connection's stack.
func (c *Conn) Subjects() queue.Subjects { return c.subjects }

// Layout is the layout in use.
func (c *Conn) Layout() Layout { return c.cfg.Layout }

// MaxPayload is the largest Message.Data that Publish accepts.
func (c *Conn) MaxPayload() int { return c.maxPayload }

// DedupeWindow implements queue.Deduplicator: the work streams' duplicate
// window (they have no age limit to shorten it).
func (c *Conn) DedupeWindow() time.Duration { return c.cfg.DuplicateWindow }

// NATS returns the underlying connection, for tests and diagnostics.
// Services must not publish or subscribe on it directly.
func (c *Conn) NATS() *nats.Conn { return c.nc }

// closeWait bounds how long Close waits for running handlers.
const closeWait = 5 * time.Second

// Close stops every consumer (running handlers see their context
// cancelled and get up to 5s to return) and closes the connection.
// Operations after Close return queue.ErrClosed.
func (c *Conn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	c.consMu.Lock()
	cons := make([]*consumer, 0, len(c.consumers))
	for k := range c.consumers {
		cons = append(cons, k)
	}
	c.consMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), closeWait)
	defer cancel()
	for _, k := range cons {
		k.stopFetching()
		k.cancelHandlers()
	}
	for _, k := range cons {
		if err := k.Stop(ctx); err != nil {
			c.log.Warn("consumer did not stop before close", "consumer", k.durable, "error", err)
		}
	}
	c.probeStop()
	<-c.probeDone
	c.nc.Close()
	c.epochMu.Lock()
	c.epochCancel()
	c.epochMu.Unlock()
	return nil
}

func (c *Conn) addConsumer(k *consumer) bool {
	c.consMu.Lock()
	defer c.consMu.Unlock()
	if c.closed.Load() {
		return false
	}
	c.consumers[k] = struct{}{}
	return true
}

func (c *Conn) removeConsumer(k *consumer) {
	c.consMu.Lock()
	defer c.consMu.Unlock()
	delete(c.consumers, k)
}

// ErrConnectionClosed is returned by Connect when the client gave up, e.g.
// because the server refused its credentials.
var ErrConnectionClosed = errors.New("natsjs: connection closed")

func closedErr(nc *nats.Conn) error {
	if err := nc.LastError(); err != nil {
		return fmt.Errorf("%w: %w", ErrConnectionClosed, err)
	}
	return ErrConnectionClosed
}

// InboxPrefix is the reply-subject prefix of the NATS user userID (its
// public key): "_INBOX.<userID>". Connect uses it for a credentials file
// when Config.InboxPrefix is empty, and natsauth allows each user to
// subscribe under its own prefix only, so that no user can read another's
// replies.
func InboxPrefix(userID string) string { return "_INBOX." + userID }

// credentialsUser reads the user's claims (public key, permissions) from a
// credentials file.
func credentialsUser(path string) (*jwt.UserClaims, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("natsjs: credentials: %w", err)
	}
	token, err := jwt.ParseDecoratedJWT(raw)
	if err != nil {
		return nil, fmt.Errorf("natsjs: credentials %s: %w", path, err)
	}
	claims, err := jwt.DecodeUserClaims(token)
	if err != nil {
		return nil, fmt.Errorf("natsjs: credentials %s: %w", path, err)
	}
	return claims, nil
}

// mayPublish reports whether the connection's user may publish to subject
// (a JetStream API request included), as its credentials say: a request
// the server would refuse goes unanswered, so it is better not sent. A
// connection without credentials may publish anything.
func (c *Conn) mayPublish(subject string) bool {
	for _, d := range c.pubDeny {
		if subjectMatches(d, subject) {
			return false
		}
	}
	if len(c.pubAllow) == 0 {
		return true
	}
	for _, a := range c.pubAllow {
		if subjectMatches(a, subject) {
			return true
		}
	}
	return false
}

// subjectMatches reports whether subject matches the NATS pattern (with
// "*" for one token and a final ">" for one or more).
func subjectMatches(pattern, subject string) bool {
	pt, st := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, p := range pt {
		if p == ">" {
			return len(st) > i
		}
		if i >= len(st) || (p != "*" && p != st[i]) {
			return false
		}
	}
	return len(pt) == len(st)
}

// RedactURL replaces the user information of every URL in a
// comma-separated NATS URL with "redacted", for logs and errors.
func RedactURL(u string) string { return redactURL(u) }

func redactURL(u string) string {
	parts := strings.Split(u, ",")
	for i, p := range parts {
		if at := strings.LastIndexByte(p, '@'); at >= 0 {
			if scheme := strings.Index(p, "://"); scheme >= 0 && scheme < at {
				parts[i] = p[:scheme+3] + "redacted@" + p[at+1:]
			}
		}
	}
	return strings.Join(parts, ",")
}

// apiAttempt bounds one JetStream API request made by retryAPI.
const apiAttempt = 5 * time.Second

// retryAPI runs an idempotent JetStream API request (create or update a
// stream, a consumer, a KV bucket), giving each attempt apiAttempt and
// trying again while ctx lasts when an attempt goes unanswered. Right after
// a cluster forms, or while its meta leader moves, a request can be lost
// on its way to the leader and no reply ever comes: waiting for the whole
// of ctx would turn that into a failure.
//
// Two answers are transient in a cluster and tried again the same way,
// after a short pause: "no suitable peers for placement" (a peer that
// missed a heartbeat, right after the cluster formed or under load, counts
// as offline for a moment) and "JetStream system temporarily unavailable"
// (no meta leader yet).
func retryAPI(ctx context.Context, fn func(context.Context) error) error {
	b := leaderBackoff()
	for {
		actx, cancel := context.WithTimeout(ctx, apiAttempt)
		err := fn(actx)
		cancel()
		switch {
		case err == nil || ctx.Err() != nil:
			return err
		case errors.Is(err, context.DeadlineExceeded):
		case transientClusterError(err):
			select {
			case <-ctx.Done():
				return err
			case <-time.After(b.NextBackOff()):
			}
		default:
			return err
		}
	}
}

// JetStream's error codes for a peer counted offline (no placement) and
// for a cluster without a meta leader.
const (
	errCodeClusterNoPeers  = 10005
	errCodeClusterNotAvail = 10008
)

func transientClusterError(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == errCodeClusterNoPeers || apiErr.ErrorCode == errCodeClusterNotAvail
}

package natsjs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outposthq/outpost/libs/queue"
)

// streamKind is one of a tenant's streams.
type streamKind uint8

const (
	kindWork streamKind = iota
	kindEvents
	kindDLQ
	// The streams of the Kubernetes account roles (see accountRole).
	kindAccountWork
	kindAccountEvents
	// kindWatch keeps one message per subject: the last state of every
	// watched Kubernetes object, tombstones included.
	kindWatch
)

var kindSuffix = [...]string{
	kindWork: "WORK", kindEvents: "EVENTS", kindDLQ: "DLQ",
	kindAccountWork: "ACCOUNT_WORK", kindAccountEvents: "ACCOUNT_EVENTS", kindWatch: "WATCH",
}

// baseKinds are the streams EnsureTenant makes; accountKinds are made on
// first use of an account role (ensureAccounts): most tenants never watch
// a cluster, and on a server with thousands of streams every stream and
// subject adds to the time a restart takes to load them.
var (
	baseKinds    = []streamKind{kindWork, kindEvents, kindDLQ}
	accountKinds = []streamKind{kindAccountWork, kindAccountEvents, kindWatch}
)

// kindOf is the stream a role's messages are stored in.
func kindOf(r queue.Role) streamKind {
	switch {
	case r == queue.RoleLeases, r == queue.RoleOps:
		return kindAccountWork
	case r == queue.RoleAccounts:
		return kindAccountEvents
	case r.IsCompacted():
		return kindWatch
	case r.IsWork():
		return kindWork
	case r == queue.RoleDeadLetter:
		return kindDLQ
	default:
		return kindEvents
	}
}

// eventRoles are the roles stored in the events stream.
var eventRoles = []queue.Role{queue.RoleJobEvents, queue.RoleControl, queue.RoleRunners, queue.RoleAudit, queue.RoleInstances}

// accountRole reports the roles of Kubernetes accounts, whose streams are
// made on first use.
func accountRole(r queue.Role) bool {
	switch kindOf(r) {
	case kindAccountWork, kindAccountEvents, kindWatch:
		return true
	}
	return false
}

// StreamName is the name of the stream that stores role's messages of
// tenant, e.g. "OUTPOST_acme_WORK" (per-tenant) or "OUTPOST_WORK" (shared).
func (c *Conn) StreamName(tenant string, role queue.Role) string {
	return c.streamName(tenant, kindOf(role))
}

func (c *Conn) streamName(tenant string, k streamKind) string {
	return streamNameOf(c.prefix, c.cfg.Layout, tenant, k)
}

func streamNameOf(prefix string, layout Layout, tenant string, k streamKind) string {
	if layout == LayoutShared {
		return prefix + "_" + kindSuffix[k]
	}
	return prefix + "_" + sanitizeName(tenant) + "_" + kindSuffix[k]
}

// StreamNameFor is the name of the stream that stores role's messages of
// tenant in a stack and layout, without a connection: what Conn.StreamName
// answers for a Conn of that stack and layout (an empty layout is the
// per-tenant one). Broker permissions name streams with it.
func StreamNameFor(stack string, layout Layout, tenant string, role queue.Role) string {
	if stack == "" {
		stack = queue.DefaultStack
	}
	if layout == "" {
		layout = LayoutPerTenant
	}
	return streamNameOf(sanitizeName(strings.ToUpper(stack)), layout, tenant, kindOf(role))
}

// TenantRegistryBucket is the KV bucket of the shared layout's tenants
// (its stream is "KV_" and the bucket name).
func TenantRegistryBucket(stack string) string {
	if stack == "" {
		stack = queue.DefaultStack
	}
	return sanitizeName(strings.ToUpper(stack)) + "-tenants"
}

// streamConfig is the configuration of one of tenant's streams. In the
// shared layout tenant is ignored and the subjects match every tenant.
func (c *Conn) streamConfig(tenant string, k streamKind, limits queue.TenantLimits) jetstream.StreamConfig {
	t := tenant
	if c.cfg.Layout == LayoutShared {
		t = "*"
		limits = queue.TenantLimits{}
	}
	s := c.subjects
	cfg := jetstream.StreamConfig{
		Name:       c.streamName(tenant, k),
		Storage:    jetstream.FileStorage,
		Replicas:   c.cfg.Replicas,
		MaxBytes:   -1,
		MaxMsgs:    -1,
		Duplicates: c.cfg.DuplicateWindow,
	}
	if limits.MaxBytes > 0 {
		cfg.MaxBytes = limits.MaxBytes
	}
	if limits.MaxMessages > 0 {
		cfg.MaxMsgs = limits.MaxMessages
	}
	switch k {
	case kindWork:
		cfg.Description = "outpost work queue: " + c.cfg.Stack + " tenant " + t
		// Only the shapes consumers read: a message on jobs.x.y would sit
		// in a work queue that nobody consumes, against the tenant's
		// limits, so the stream does not take it (Publish is refused).
		cfg.Subjects = []string{s.Submit(t), s.Jobs(t, "*")}
		cfg.Retention = jetstream.WorkQueuePolicy
		cfg.Discard = jetstream.DiscardNew
	case kindEvents:
		cfg.Description = "outpost events: " + c.cfg.Stack + " tenant " + t
		for _, r := range eventRoles {
			cfg.Subjects = append(cfg.Subjects, s.All(t, r))
		}
		cfg.Retention = jetstream.LimitsPolicy
		cfg.Discard = jetstream.DiscardOld
		cfg.MaxAge = c.cfg.EventsMaxAge
	case kindDLQ:
		cfg.Description = "outpost dead letters: " + c.cfg.Stack + " tenant " + t
		cfg.Subjects = []string{s.All(t, queue.RoleDeadLetter)}
		cfg.Retention = jetstream.LimitsPolicy
		cfg.Discard = jetstream.DiscardOld
		cfg.MaxAge = c.cfg.DeadLetterMaxAge
	case kindAccountWork:
		cfg.Description = "outpost account work queue: " + c.cfg.Stack + " tenant " + t
		cfg.Subjects = []string{s.Leases(t, "*"), s.Ops(t, "*")}
		cfg.Retention = jetstream.WorkQueuePolicy
		cfg.Discard = jetstream.DiscardNew
	case kindAccountEvents:
		cfg.Description = "outpost account events: " + c.cfg.Stack + " tenant " + t
		cfg.Subjects = []string{s.All(t, queue.RoleAccounts)}
		cfg.Retention = jetstream.LimitsPolicy
		cfg.Discard = jetstream.DiscardOld
		cfg.MaxAge = c.cfg.EventsMaxAge
	case kindWatch:
		// Compaction, not age, bounds it: one message per object, so the
		// stream is the inventory itself.
		cfg.Description = "outpost watch inventory: " + c.cfg.Stack + " tenant " + t
		// Only the inventory's shape, <account>.<kind>.<namespace>.<name>:
		// nothing else could ever be listed or purged with an account.
		cfg.Subjects = []string{s.Watch(t, "*") + ".*.*.*"}
		cfg.Retention = jetstream.LimitsPolicy
		cfg.Discard = jetstream.DiscardOld
		cfg.MaxMsgsPerSubject = 1
		cfg.AllowDirect = true
	}
	if cfg.MaxAge > 0 && cfg.Duplicates > cfg.MaxAge {
		cfg.Duplicates = cfg.MaxAge
	}
	return cfg
}

// EnsureTenant creates or updates the tenant's streams with its limits (per
// tenant layout), or makes sure the shared streams exist and records the
// tenant (shared layout). It is idempotent and safe to call concurrently
// from several processes.
func (c *Conn) EnsureTenant(ctx context.Context, tenant string, limits queue.TenantLimits) error {
	if c.closed.Load() {
		return queue.ErrClosed
	}
	if !queue.ValidToken(tenant) {
		return fmt.Errorf("natsjs: ensure tenant: %w: tenant %q is not 1-64 characters of [a-zA-Z0-9_-]", queue.ErrInvalidSubject, tenant)
	}
	if limits.MaxBytes < 0 || limits.MaxMessages < 0 {
		return fmt.Errorf("natsjs: ensure tenant %q: negative limits %+v", tenant, limits)
	}
	if c.cfg.Layout == LayoutShared {
		if err := c.ensureShared(ctx); err != nil {
			return err
		}
		reg, err := c.tenantRegistry(ctx, true)
		if err != nil {
			return err
		}
		val, _ := json.Marshal(limits)
		if _, err := reg.Put(ctx, tenant, val); err != nil {
			return fmt.Errorf("natsjs: ensure tenant %q: record in %s: %w", tenant, reg.Bucket(), err)
		}
	} else {
		kinds := baseKinds
		// A tenant that already uses the account roles has its account
		// streams updated with the new limits too.
		_, err := c.js.Stream(ctx, c.streamName(tenant, kindWatch))
		switch {
		case err == nil:
			kinds = append(slices.Clone(baseKinds), accountKinds...)
		case !errors.Is(err, jetstream.ErrStreamNotFound):
			return fmt.Errorf("natsjs: ensure tenant %q: %w", tenant, err)
		}
		for _, k := range kinds {
			if err := c.ensureStream(ctx, c.streamConfig(tenant, k, limits)); err != nil {
				return fmt.Errorf("natsjs: ensure tenant %q: %w", tenant, err)
			}
		}
		if len(kinds) > len(baseKinds) {
			c.accountsReady.Store(tenant, struct{}{})
		}
	}
	c.markKnown(tenant)
	c.log.Debug("tenant ensured", "tenant", tenant, "layout", string(c.cfg.Layout), "max_bytes", limits.MaxBytes, "max_messages", limits.MaxMessages)
	return nil
}

func (c *Conn) ensureShared(ctx context.Context) error {
	c.sharedMu.Lock()
	defer c.sharedMu.Unlock()
	if c.sharedReady {
		return nil
	}
	for k := range kindSuffix {
		if err := c.ensureStream(ctx, c.streamConfig("", streamKind(k), queue.TenantLimits{})); err != nil {
			return fmt.Errorf("natsjs: ensure shared streams: %w", err)
		}
	}
	c.sharedReady = true
	return nil
}

// ensureStream creates the stream or updates it to cfg. Two processes
// creating the same stream at once is not an error.
func (c *Conn) ensureStream(ctx context.Context, cfg jetstream.StreamConfig) error {
	err := retryAPI(ctx, func(ctx context.Context) error {
		_, err := c.js.CreateOrUpdateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			// Somebody created it between our update and create: update.
			_, err = c.js.UpdateStream(ctx, cfg)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("stream %s: %w", cfg.Name, err)
	}
	if cfg.Replicas > 1 {
		c.waitStreamLeader(ctx, cfg.Name)
	}
	return nil
}

// waitStreamLeader returns once the replicated stream has elected a
// leader. A stream create is answered by the meta leader as soon as the
// stream is assigned; its own raft group elects a leader after that, and a
// publish in between finds no responder. Waiting here keeps the first
// publishes after EnsureTenant from paying for the election. It waits at
// most leaderWait: Publish rides out an election on its own, so a stream
// that is slow to elect is logged, not an error.
func (c *Conn) waitStreamLeader(ctx context.Context, name string) {
	ctx, cancel := context.WithTimeout(ctx, leaderWait)
	defer cancel()
	err := backoff.Retry(func() error {
		actx, cancel := context.WithTimeout(ctx, apiAttempt)
		defer cancel()
		s, err := c.js.Stream(actx, name)
		if err != nil {
			return fmt.Errorf("look up leader: %w", err)
		}
		if info := s.CachedInfo(); info.Cluster == nil || info.Cluster.Leader == "" {
			return errNoLeader
		}
		return nil
	}, backoff.WithContext(leaderBackoff(), ctx))
	if err != nil {
		c.log.Warn("stream has no leader yet", "stream", name, "waited", leaderWait, "error", err)
	}
}

// leaderWait bounds waitStreamLeader.
const leaderWait = 10 * time.Second

// errNoLeader is the retryable state of a stream whose raft group has no
// leader yet.
var errNoLeader = errors.New("stream has no leader yet")

// leaderBackoff paces the waits for a stream leader and the publishes
// retried through an election: elections take a few hundred milliseconds
// on an idle cluster and seconds on a loaded one.
func leaderBackoff() *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 25 * time.Millisecond
	b.MaxInterval = 500 * time.Millisecond
	b.MaxElapsedTime = 0 // bounded by the caller's context
	return b
}

// tenantRegistryBucket is the KV bucket listing the tenants of a stack in
// the shared layout. The "-" keeps it apart from OpenStore's "<STACK>_"
// buckets.
func (c *Conn) tenantRegistryBucket() string { return c.prefix + "-tenants" }

func (c *Conn) tenantRegistry(ctx context.Context, create bool) (jetstream.KeyValue, error) {
	c.sharedMu.Lock()
	defer c.sharedMu.Unlock()
	if c.registry != nil {
		return c.registry, nil
	}
	name := c.tenantRegistryBucket()
	var (
		reg jetstream.KeyValue
		err error
	)
	if create {
		reg, err = c.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      name,
			Description: "outpost tenants of stack " + c.cfg.Stack,
			History:     1,
			Storage:     jetstream.FileStorage,
			Replicas:    c.cfg.Replicas,
		})
	} else {
		reg, err = c.js.KeyValue(ctx, name)
	}
	if err != nil {
		return nil, fmt.Errorf("natsjs: tenant registry %s: %w", name, err)
	}
	c.registry = reg
	return reg, nil
}

func (c *Conn) isKnown(tenant string) bool {
	_, ok := c.known.Load(tenant)
	return ok
}

func (c *Conn) markKnown(tenant string) { c.known.Store(tenant, struct{}{}) }

func (c *Conn) forgetTenant(tenant string) {
	c.known.Delete(tenant)
	c.accountsReady.Delete(tenant)
}

// checkRole is checkTenant, and for the account roles also makes sure the
// tenant's streams carry them (ensureAccounts).
func (c *Conn) checkRole(ctx context.Context, tenant string, role queue.Role) error {
	if err := c.checkTenant(ctx, tenant, role); err != nil {
		return err
	}
	if accountRole(role) {
		return c.ensureAccounts(ctx, tenant)
	}
	return nil
}

// ensureAccounts makes a provisioned tenant's account streams, in the
// per-tenant layout, the first time an account subject of the tenant is
// used (see baseKinds). They take the limits of the tenant's WORK stream.
// The WATCH stream is made last: EnsureTenant takes it as the sign that
// the others exist.
func (c *Conn) ensureAccounts(ctx context.Context, tenant string) error {
	if c.cfg.Layout == LayoutShared {
		return nil // the shared streams carry every role
	}
	if _, ok := c.accountsReady.Load(tenant); ok {
		return nil
	}
	// Streams that exist are only bound: an agent's credentials allow it
	// to look streams up, not to make them (the control plane does).
	if _, err := c.js.Stream(ctx, c.streamName(tenant, kindWatch)); err == nil {
		c.accountsReady.Store(tenant, struct{}{})
		return nil
	}
	if !c.mayPublish(jetstream.DefaultAPIPrefix + "STREAM.CREATE." + c.streamName(tenant, kindWatch)) {
		return fmt.Errorf("%w: %q: its account streams are not made yet (the control plane makes them)", queue.ErrUnknownTenant, tenant)
	}
	work, err := c.js.Stream(ctx, c.streamName(tenant, kindWork))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		c.forgetTenant(tenant)
		return fmt.Errorf("%w: %q (call EnsureTenant first)", queue.ErrUnknownTenant, tenant)
	}
	if err != nil {
		return fmt.Errorf("natsjs: account streams of %q: %w", tenant, err)
	}
	var limits queue.TenantLimits
	if wc := work.CachedInfo().Config; wc.MaxBytes > 0 || wc.MaxMsgs > 0 {
		limits = queue.TenantLimits{MaxBytes: max(wc.MaxBytes, 0), MaxMessages: max(wc.MaxMsgs, 0)}
	}
	for _, k := range accountKinds {
		if err := c.ensureStream(ctx, c.streamConfig(tenant, k, limits)); err != nil {
			return fmt.Errorf("natsjs: account streams of %q: %w", tenant, err)
		}
	}
	c.accountsReady.Store(tenant, struct{}{})
	c.log.Debug("account streams ensured", "tenant", tenant)
	return nil
}

// checkTenant returns nil if the tenant was provisioned, an error wrapping
// queue.ErrUnknownTenant if not. The answer is cached once positive.
func (c *Conn) checkTenant(ctx context.Context, tenant string, role queue.Role) error {
	if c.isKnown(tenant) {
		return nil
	}
	exists, err := c.tenantExists(ctx, tenant, role)
	if err != nil {
		return err
	}
	if !exists {
		return fmt.Errorf("%w: %q (call EnsureTenant first)", queue.ErrUnknownTenant, tenant)
	}
	c.markKnown(tenant)
	return nil
}

func (c *Conn) tenantExists(ctx context.Context, tenant string, role queue.Role) (bool, error) {
	if c.cfg.Layout == LayoutShared {
		reg, err := c.tenantRegistry(ctx, false)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		_, err = reg.Get(ctx, tenant)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("natsjs: look up tenant %q: %w", tenant, err)
		}
		return true, nil
	}
	k := kindOf(role)
	if accountRole(role) {
		k = kindWork // the account streams come later: see ensureAccounts
	}
	name := c.streamName(tenant, k)
	// The stream's leader answers the lookup: while a cluster elects a
	// new one (a node was lost) a request can go unanswered, so it is
	// tried again while ctx lasts rather than failing a consumer's start.
	err := retryAPI(ctx, func(ctx context.Context) error {
		_, err := c.js.Stream(ctx, name)
		return err
	})
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("natsjs: look up stream %s: %w", name, err)
	}
	return true, nil
}

// splitSubject splits "<stack>.<tenant>.<role>[.<key>]" like
// queue.ParseSubject, without allocating.
func splitSubject(s string) (stack, tenant, role, key string, ok bool) {
	i := strings.IndexByte(s, '.')
	if i <= 0 {
		return
	}
	stack, s = s[:i], s[i+1:]
	i = strings.IndexByte(s, '.')
	if i <= 0 {
		return
	}
	tenant, s = s[:i], s[i+1:]
	if i = strings.IndexByte(s, '.'); i >= 0 {
		role, key = s[:i], s[i+1:]
	} else {
		role = s
	}
	return stack, tenant, role, key, role != ""
}

// checkSubject validates a subject for this connection and returns its
// tenant and role. filter allows wildcards in the key (consumers, Read).
func (c *Conn) checkSubject(subject string, filter bool) (string, queue.Role, error) {
	stack, tenant, r, key, ok := splitSubject(subject)
	role := queue.Role(r)
	switch {
	case !ok:
		return "", "", fmt.Errorf("%w: %q: want <stack>.<tenant>.<role>[.<key>]", queue.ErrInvalidSubject, subject)
	case stack != c.subjects.Stack:
		return "", "", fmt.Errorf("%w: %q: stack %q, this connection serves %q", queue.ErrInvalidSubject, subject, stack, c.subjects.Stack)
	case !queue.ValidToken(tenant):
		return "", "", fmt.Errorf("%w: %q: tenant %q is not 1-64 characters of [a-zA-Z0-9_-]", queue.ErrInvalidSubject, subject, tenant)
	case !role.Known():
		return "", "", fmt.Errorf("%w: %q: unknown role %q", queue.ErrInvalidSubject, subject, r)
	case role == queue.RoleSubmit && key != "":
		return "", "", fmt.Errorf("%w: %q: role %q takes no key", queue.ErrInvalidSubject, subject, r)
	case role != queue.RoleSubmit && key == "":
		return "", "", fmt.Errorf("%w: %q: role %q needs a key", queue.ErrInvalidSubject, subject, r)
	case role.IsWork() && strings.Contains(key, "."):
		// The work streams store only these shapes (see streamConfig).
		return "", "", fmt.Errorf("%w: %q: the key of work role %q is one token (a pool, zone or account)", queue.ErrInvalidSubject, subject, r)
	case role == queue.RoleWatch && !filter && strings.Count(key, ".") != 3:
		// The watch stream stores only this shape (see streamConfig).
		return "", "", fmt.Errorf("%w: %q: a watch subject is <account>.<kind>.<namespace>.<name>", queue.ErrInvalidSubject, subject)
	case !validKey(key, filter):
		return "", "", fmt.Errorf("%w: %q: bad key %q", queue.ErrInvalidSubject, subject, key)
	}
	return tenant, role, nil
}

// validKey checks the key's tokens: none empty, no white space, and
// wildcards only as whole tokens when filter is set ('>' last).
func validKey(key string, filter bool) bool {
	if key == "" {
		return true
	}
	start := 0
	for i := 0; i <= len(key); i++ {
		if i < len(key) && key[i] != '.' {
			switch key[i] {
			case ' ', '\t', '\r', '\n':
				return false
			case '*', '>':
				if !filter {
					return false
				}
			}
			continue
		}
		tok := key[start:i]
		switch {
		case tok == "":
			return false
		case len(tok) > 1 && strings.ContainsAny(tok, "*>"):
			return false
		case tok == ">" && i != len(key):
			return false
		}
		start = i + 1
	}
	return true
}

// sanitizeName keeps [a-zA-Z0-9_-] and replaces anything else with '_', so
// the result is valid as a stream, consumer and KV bucket name.
func sanitizeName(s string) string {
	ok := true
	for i := 0; i < len(s); i++ {
		if !nameChar(s[i]) {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	b := []byte(s)
	for i := range b {
		if !nameChar(b[i]) {
			b[i] = '_'
		}
	}
	return string(b)
}

func nameChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// ConsumerName is the durable consumer name Consume uses for cfgName on
// subject: "<name>_<tenant>_<role>_<hash of subject>", sanitized. Instances
// with the same name and subject share it; the same name on another subject
// gets another consumer (JetStream would otherwise re-filter the shared one).
func ConsumerName(cfgName, subject string) string {
	_, tenant, role, _, _ := splitSubject(subject)
	h := fnv.New32a()
	_, _ = h.Write([]byte(subject))
	name := cfgName
	if len(name) > 100 {
		name = name[:100]
	}
	return sanitizeName(name + "_" + tenant + "_" + role + "_" + strconv.FormatUint(uint64(h.Sum32()), 16))
}

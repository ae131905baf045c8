package queue

import (
	"fmt"
	"slices"
	"strings"
)

// DefaultStack is the subject prefix used when none is configured.
const DefaultStack = "outpost"

// Role is the third token of a subject: what the messages under it are.
type Role string

// Roles and their retention. Work roles are consumed once and removed on
// ack; event roles keep history within limits and can be Read.
const (
	RoleSubmit     Role = "submit"     // work: SubmitJob
	RoleJobs       Role = "jobs"       // work: JobDispatched, keyed by pool
	RoleJobEvents  Role = "job-events" // events: JobStatus, LogChunk, keyed by job
	RoleControl    Role = "control"    // events: CancelJob, keyed by pool.runner (or pool)
	RoleRunners    Role = "runners"    // events: RunnerHeartbeat, keyed by pool
	RoleDeadLetter Role = "dlq"        // events: dead-lettered messages, keyed by the role they came from
	RoleLeases     Role = "leases"     // work: AccountLease, keyed by zone
	RoleOps        Role = "ops"        // work: Operation, keyed by account
	RoleAccounts   Role = "accounts"   // events: account status, presence, control, checksums, operation results
	RoleWatch      Role = "watch"      // compacted: ObjectDelta, keyed by account.kind.namespace.name
	RoleAudit      Role = "audit"      // events: AuditEvent, keyed by service
	RoleInstances  Role = "instances"  // events: InstanceHeartbeat, keyed by service.replica
)

// IsWork reports whether messages of the role are work items (consumed once,
// removed on ack) rather than events.
func (r Role) IsWork() bool {
	switch r {
	case RoleSubmit, RoleJobs, RoleLeases, RoleOps:
		return true
	}
	return false
}

// IsCompacted reports whether the role keeps only the last message of each
// subject (the watch inventory): a new message replaces the one before it.
func (r Role) IsCompacted() bool { return r == RoleWatch }

// Known reports whether r is one of the roles above.
func (r Role) Known() bool {
	switch r {
	case RoleSubmit, RoleJobs, RoleJobEvents, RoleControl, RoleRunners, RoleDeadLetter,
		RoleLeases, RoleOps, RoleAccounts, RoleWatch, RoleAudit, RoleInstances:
		return true
	}
	return false
}

// Subjects builds subjects under one stack prefix.
type Subjects struct {
	Stack string
}

// NewSubjects returns Subjects for stack, or DefaultStack when it is empty.
func NewSubjects(stack string) Subjects {
	if stack == "" {
		stack = DefaultStack
	}
	return Subjects{Stack: stack}
}

// Submit is where SubmitJob messages of a tenant go.
func (s Subjects) Submit(tenant string) string { return s.join(tenant, RoleSubmit) }

// Jobs is the work queue of one executor pool.
func (s Subjects) Jobs(tenant, pool string) string { return s.join(tenant, RoleJobs, pool) }

// JobStatus carries the JobStatus events of one job.
func (s Subjects) JobStatus(tenant, jobID string) string {
	return s.join(tenant, RoleJobEvents, jobID, "status")
}

// JobLogs carries the LogChunk events of one job.
func (s Subjects) JobLogs(tenant, jobID string) string {
	return s.join(tenant, RoleJobEvents, jobID, "logs")
}

// JobRecords carries the JobRecords (metadata records, check results) of
// one job.
func (s Subjects) JobRecords(tenant, jobID string) string {
	return s.join(tenant, RoleJobEvents, jobID, "records")
}

// AllJobRecords matches the JobRecords events of every job of a tenant, for
// the scheduler's results consumer.
func (s Subjects) AllJobRecords(tenant string) string {
	return s.join(tenant, RoleJobEvents, "*", "records")
}

// AllJobStatus matches the JobStatus events of every job of a tenant (and
// not their logs), for the scheduler's status consumer.
func (s Subjects) AllJobStatus(tenant string) string {
	return s.join(tenant, RoleJobEvents, "*", "status")
}

// AllJobLogs matches the LogChunk events of every job of a tenant (and not
// their statuses), for the scheduler's copy of the logs from SQS.
func (s Subjects) AllJobLogs(tenant string) string {
	return s.join(tenant, RoleJobEvents, "*", "logs")
}

// Control carries commands for every runner of one pool. The scheduler no
// longer sends anything there (cancel goes to RunnerControl, which SQS can
// deliver too: it has no fan-out); it is kept for pool-wide commands.
func (s Subjects) Control(tenant, pool string) string { return s.join(tenant, RoleControl, pool) }

// RunnerControl carries commands (cancel) for one runner of a pool:
// "<stack>.<tenant>.control.<pool>.<runner>". The runner id must be a token
// (ValidToken) like the pool, so that the subject has exactly two key
// tokens and maps onto one SQS queue.
func (s Subjects) RunnerControl(tenant, pool, runnerID string) string {
	return s.join(tenant, RoleControl, pool, runnerID)
}

// Runners carries heartbeats of the runners of one pool.
func (s Subjects) Runners(tenant, pool string) string { return s.join(tenant, RoleRunners, pool) }

// DeadLetter is where messages taken out of a role's queue go.
func (s Subjects) DeadLetter(tenant string, from Role) string {
	return s.join(tenant, RoleDeadLetter, string(from))
}

// Leases is the work queue of the account leases of one zone: one
// AccountLease per account, held in progress by the watcher that watches it.
func (s Subjects) Leases(tenant, zone string) string { return s.join(tenant, RoleLeases, zone) }

// Ops is the work queue of the operations (apply, delete, scale) for one
// account, consumed by the watcher that holds the account's lease.
func (s Subjects) Ops(tenant, account string) string { return s.join(tenant, RoleOps, account) }

// AccountStatus carries the AccountStatus events every watcher reports.
func (s Subjects) AccountStatus(tenant string) string {
	return s.join(tenant, RoleAccounts, "status")
}

// WatcherPresence carries the heartbeats of one watcher replica.
func (s Subjects) WatcherPresence(tenant, zone, watcherID string) string {
	return s.join(tenant, RoleAccounts, "presence", zone, watcherID)
}

// AllWatcherPresence matches the heartbeats of every watcher of a tenant.
func (s Subjects) AllWatcherPresence(tenant string) string {
	return s.join(tenant, RoleAccounts, "presence", ">")
}

// ZoneControl carries AccountControl commands for the watchers of a zone;
// every replica reads them and the one holding the account acts.
func (s Subjects) ZoneControl(tenant, zone string) string {
	return s.join(tenant, RoleAccounts, "control", zone)
}

// InventoryChecksums carries the InventoryChecksum events of one account.
func (s Subjects) InventoryChecksums(tenant, account string) string {
	return s.join(tenant, RoleAccounts, "checksums", account)
}

// AllInventoryChecksums matches the checksums of every account of a tenant.
func (s Subjects) AllInventoryChecksums(tenant string) string {
	return s.join(tenant, RoleAccounts, "checksums", "*")
}

// OperationResults carries the OperationResult events of a tenant.
func (s Subjects) OperationResults(tenant string) string {
	return s.join(tenant, RoleAccounts, "results")
}

// Watch is the prefix of an account's inventory subjects,
// "<stack>.<tenant>.watch.<account>"; package inventory appends the kind,
// namespace and name tokens.
func (s Subjects) Watch(tenant, account string) string { return s.join(tenant, RoleWatch, account) }

// Audit is the subject of the audit events (AuditEvent) of tenant's calls
// to service, "<stack>.<tenant>.audit.<service>"; All(tenant, RoleAudit)
// reads them all.
func (s Subjects) Audit(tenant, service string) string { return s.join(tenant, RoleAudit, service) }

// Instance is the subject of the heartbeats (InstanceHeartbeat) of one
// control-plane replica, "<stack>.<tenant>.instances.<service>.<replica>";
// All(tenant, RoleInstances) reads every replica's.
func (s Subjects) Instance(tenant, service, replica string) string {
	return s.join(tenant, RoleInstances, service, replica)
}

// All matches every key under a role, for consumers and Read. RoleSubmit has
// no key, so Submit(tenant) is already its whole queue and All(tenant,
// RoleSubmit) matches nothing.
func (s Subjects) All(tenant string, role Role) string { return s.join(tenant, role, ">") }

func (s Subjects) join(tenant string, role Role, key ...string) string {
	parts := append([]string{s.Stack, tenant, string(role)}, key...)
	return strings.Join(parts, ".")
}

// Parsed is a subject split into its parts.
type Parsed struct {
	Stack  string
	Tenant string
	Role   Role
	// Key is everything after the role ("" for RoleSubmit).
	Key string
}

// ParseSubject splits a subject into its parts and checks the role. A
// subject with an empty token ("a..b", a trailing ".") is no subject: one
// can arrive where the broker does not check subjects (an SQS attribute).
func ParseSubject(subject string) (Parsed, error) {
	parts := strings.SplitN(subject, ".", 4)
	if len(parts) < 3 || slices.Contains(strings.Split(subject, "."), "") {
		return Parsed{}, fmt.Errorf("%w: %q", ErrInvalidSubject, subject)
	}
	p := Parsed{Stack: parts[0], Tenant: parts[1], Role: Role(parts[2])}
	if len(parts) == 4 {
		p.Key = parts[3]
	}
	if !p.Role.Known() {
		return Parsed{}, fmt.Errorf("%w: unknown role %q in %q", ErrInvalidSubject, p.Role, subject)
	}
	return p, nil
}

// ValidToken reports whether s can be used as a tenant, pool or job id inside
// a subject: 1 to 64 characters of [a-zA-Z0-9_-].
func ValidToken(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

package queue

import (
	"fmt"
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
)

// IsWork reports whether messages of the role are work items (consumed once,
// removed on ack) rather than events.
func (r Role) IsWork() bool {
	switch r {
	case RoleSubmit, RoleJobs:
		return true
	}
	return false
}

// Known reports whether r is one of the roles above.
func (r Role) Known() bool {
	switch r {
	case RoleSubmit, RoleJobs, RoleJobEvents, RoleControl, RoleRunners, RoleDeadLetter:
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

// ParseSubject splits a subject into its parts and checks the role.
func ParseSubject(subject string) (Parsed, error) {
	parts := strings.SplitN(subject, ".", 4)
	if len(parts) < 3 || parts[0] == "" || parts[1] == "" {
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

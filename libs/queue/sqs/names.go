package sqs

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/outposthq/outpost/libs/queue"
)

// maxQueueName is SQS's limit on a queue name, ".fifo" included.
const maxQueueName = 80

// fifoSuffix ends the name of every FIFO queue.
const fifoSuffix = ".fifo"

// deadLetterSources are the roles whose queues have a dead-letter queue,
// in the order EnsureTenant creates them.
var deadLetterSources = []queue.Role{queue.RoleSubmit, queue.RoleJobs, queue.RoleJobEvents, queue.RoleControl, queue.RoleRunners}

// Job event kinds that EnsureTenant provisions; other kinds get their
// queue on first use.
var jobEventKinds = []string{"status", "logs", "records"}

// queueID names one SQS queue of a tenant: the role and, for roles with
// one queue per key, that key (pool, job event kind, or the role a
// dead-letter queue serves).
type queueID struct {
	Tenant string
	Role   queue.Role
	Key    string
}

func (id queueID) String() string {
	if id.Key == "" {
		return id.Tenant + "/" + string(id.Role)
	}
	return id.Tenant + "/" + string(id.Role) + "/" + id.Key
}

// QueueName is the SQS queue that stores messages published to subject,
// e.g. "outpost-acme-jobs-remote" (or "outpost-acme-jobs-remote.fifo"),
// without resolving it. See the package documentation for the mapping.
func (b *Broker) QueueName(subject string) (string, error) {
	id, err := b.queueFor(subject)
	if err != nil {
		return "", err
	}
	return b.queueName(id), nil
}

// queueName builds "<prefix><stack>-<tenant>-<role>[-<key>][.fifo]". A
// name over SQS's 80 characters keeps its first characters and ends with
// "-" and 8 hex digits of a hash of the full name, so it stays unique.
func (b *Broker) queueName(id queueID) string {
	return QueueNameFor(b.cfg.QueuePrefix, b.cfg.Stack, id.Tenant, id.Role, id.Key, b.fifo)
}

// QueueNameFor is the queue name mapping as a pure function, for tools and
// IAM policy generation: "<prefix><stack>-<tenant>-<role>[-<key>]", plus
// ".fifo" for FIFO queues, shortened with a hash when over 80 characters.
// key is the pool (jobs, control, runners), the event kind (job-events:
// "status", "logs") or the source role (dlq); empty for submit.
//
// A key of two tokens (a runner's control queue, "<pool>.<runner>") has
// its dot replaced by a dash, since SQS names allow only [A-Za-z0-9_-]:
// "outpost-acme-control-remote-runner-1". That can run together with pool
// "remote-runner" and runner "1", like tenant and pool names can; the
// ownership tags (which keep the dot) tell them apart.
func QueueNameFor(prefix, stack, tenant string, role queue.Role, key string, fifo bool) string {
	name := prefix + stack + "-" + tenant + "-" + string(role)
	if key != "" {
		name += "-" + strings.ReplaceAll(key, ".", "-")
	}
	limit := maxQueueName
	if fifo {
		limit -= len(fifoSuffix)
	}
	if len(name) > limit {
		h := fnv.New32a()
		_, _ = h.Write([]byte(name))
		sum := strconv.FormatUint(uint64(h.Sum32()), 16)
		sum = strings.Repeat("0", 8-len(sum)) + sum
		name = name[:limit-9] + "-" + sum
	}
	if fifo {
		name += fifoSuffix
	}
	return name
}

// splitSubject splits "<stack>.<tenant>.<role>[.<key>]".
func splitSubject(s string) (stack, tenant, role, key string, ok bool) {
	stack, rest, ok1 := strings.Cut(s, ".")
	tenant, rest, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || stack == "" || tenant == "" {
		return "", "", "", "", false
	}
	role, key, _ = strings.Cut(rest, ".")
	return stack, tenant, role, key, role != ""
}

// checkSubject validates the parts every subject or filter shares and
// returns the tenant, role and key.
func (b *Broker) checkSubject(subject string) (string, queue.Role, string, error) {
	stack, tenant, r, key, ok := splitSubject(subject)
	role := queue.Role(r)
	switch {
	case !ok:
		return "", "", "", fmt.Errorf("%w: %q: want <stack>.<tenant>.<role>[.<key>]", queue.ErrInvalidSubject, subject)
	case stack != b.cfg.Stack:
		return "", "", "", fmt.Errorf("%w: %q: stack %q, this broker serves %q", queue.ErrInvalidSubject, subject, stack, b.cfg.Stack)
	case !queue.ValidToken(tenant):
		return "", "", "", fmt.Errorf("%w: %q: tenant %q is not 1-64 characters of [a-zA-Z0-9_-]", queue.ErrInvalidSubject, subject, tenant)
	case !role.Known():
		return "", "", "", fmt.Errorf("%w: %q: unknown role %q", queue.ErrInvalidSubject, subject, r)
	case !sqsRole(role):
		return "", "", "", fmt.Errorf("%w: %q: the %s role (Kubernetes accounts) needs JetStream: SQS cannot compact per object or fan out control", ErrRoleUnsupported, subject, role)
	case role == queue.RoleSubmit && key != "":
		return "", "", "", fmt.Errorf("%w: %q: role %q takes no key", queue.ErrInvalidSubject, subject, r)
	case role != queue.RoleSubmit && key == "":
		return "", "", "", fmt.Errorf("%w: %q: role %q needs a key", queue.ErrInvalidSubject, subject, r)
	}
	return tenant, role, key, nil
}

// queueFor maps a subject to publish to (no wildcards) onto its queue.
func (b *Broker) queueFor(subject string) (queueID, error) {
	tenant, role, key, err := b.checkSubject(subject)
	if err != nil {
		return queueID{}, err
	}
	id := queueID{Tenant: tenant, Role: role}
	switch role {
	case queue.RoleSubmit:
	case queue.RoleJobs, queue.RoleRunners:
		if !queue.ValidToken(key) {
			return queueID{}, fmt.Errorf("%w: %q: on SQS the %s key (the pool) must be one token of [a-zA-Z0-9_-]", queue.ErrInvalidSubject, subject, role)
		}
		id.Key = key
	case queue.RoleControl:
		// "<pool>" (every runner of the pool) or "<pool>.<runner>" (one
		// runner's own queue; see Subjects.RunnerControl).
		pool, runner, perRunner := strings.Cut(key, ".")
		if !queue.ValidToken(pool) || (perRunner && !queue.ValidToken(runner)) {
			return queueID{}, fmt.Errorf("%w: %q: on SQS the control key is <pool> or <pool>.<runner>, each one token of [a-zA-Z0-9_-]", queue.ErrInvalidSubject, subject)
		}
		id.Key = key
	case queue.RoleJobEvents:
		job, kind, ok := strings.Cut(key, ".")
		if !ok || !queue.ValidToken(job) || !queue.ValidToken(kind) {
			return queueID{}, fmt.Errorf("%w: %q: on SQS job events are <job>.<kind>, both tokens of [a-zA-Z0-9_-]", queue.ErrInvalidSubject, subject)
		}
		id.Key = kind
	case queue.RoleDeadLetter:
		from := queue.Role(key)
		if !from.Known() || from == queue.RoleDeadLetter {
			return queueID{}, fmt.Errorf("%w: %q: the dead-letter key must be the role the message came from", queue.ErrInvalidSubject, subject)
		}
		id.Key = key
	}
	return id, nil
}

// ErrRoleUnsupported is returned (wrapped, and wrapping
// errors.ErrUnsupported) for subjects of the Kubernetes account roles
// (leases, ops, accounts, watch), of audit and of instances, which only
// JetStream carries.
var ErrRoleUnsupported = fmt.Errorf("sqs: role not supported: %w", errors.ErrUnsupported)

// sqsRole reports whether SQS carries role.
func sqsRole(r queue.Role) bool {
	switch r {
	case queue.RoleLeases, queue.RoleOps, queue.RoleAccounts, queue.RoleWatch, queue.RoleAudit, queue.RoleInstances:
		return false
	}
	return true
}

// ErrFilterUnsupported is returned (wrapped, and wrapping
// errors.ErrUnsupported) by Consume for a filter that selects only part of
// one SQS queue, such as the events of one job: an SQS queue cannot be
// filtered, so every consumer of a queue sees all of its messages.
var ErrFilterUnsupported = fmt.Errorf("sqs: filter narrower than its queue: %w", errors.ErrUnsupported)

// queueSet is what a consumer filter covers: fixed queues and, for a
// wildcard over a role with one queue per key, every queue of that role
// found by listing (discover).
type queueSet struct {
	tenant   string
	role     queue.Role
	fixed    []queueID
	discover bool
}

// filterQueues maps a consumer filter onto the queues it covers. Every
// queue must be covered whole; see ErrFilterUnsupported.
func (b *Broker) filterQueues(filter string) (queueSet, error) {
	tenant, role, key, err := b.checkSubject(filter)
	if err != nil {
		return queueSet{}, err
	}
	set := queueSet{tenant: tenant, role: role}
	if !strings.ContainsAny(filter, "*>") {
		id, err := b.queueFor(filter)
		if err != nil {
			return queueSet{}, err
		}
		if role == queue.RoleJobEvents {
			job, kind, _ := strings.Cut(key, ".")
			return queueSet{}, fmt.Errorf("%w: %q: SQS keeps the %q events of every job in one queue; consume %s.%s.%s.*.%s and filter on the job in the handler (job %q)",
				ErrFilterUnsupported, filter, kind, b.cfg.Stack, tenant, role, kind, job)
		}
		set.fixed = []queueID{id}
		return set, nil
	}
	wildAll := key == ">" || key == "*"
	switch role {
	case queue.RoleJobs, queue.RoleControl, queue.RoleRunners:
		if !wildAll {
			return queueSet{}, fmt.Errorf("%w: %q: want one pool or a wildcard as the key", queue.ErrInvalidSubject, filter)
		}
		set.discover = true
	case queue.RoleJobEvents:
		switch {
		case key == ">" || key == "*.>" || key == "*.*":
			for _, k := range jobEventKinds {
				set.fixed = append(set.fixed, queueID{Tenant: tenant, Role: role, Key: k})
			}
			set.discover = true
		case strings.HasPrefix(key, "*.") && queue.ValidToken(key[2:]):
			set.fixed = []queueID{{Tenant: tenant, Role: role, Key: key[2:]}}
		case !strings.HasPrefix(key, "*") && !strings.HasPrefix(key, ">"):
			return queueSet{}, fmt.Errorf("%w: %q: SQS keeps the events of every job in one queue per kind; consume %s.%s.%s.*.<kind>",
				ErrFilterUnsupported, filter, b.cfg.Stack, tenant, role)
		default:
			return queueSet{}, fmt.Errorf("%w: %q: want *.<kind> or > as the key", queue.ErrInvalidSubject, filter)
		}
	case queue.RoleDeadLetter:
		if !wildAll {
			return queueSet{}, fmt.Errorf("%w: %q: want a role or a wildcard as the key", queue.ErrInvalidSubject, filter)
		}
		for _, r := range deadLetterSources {
			set.fixed = append(set.fixed, queueID{Tenant: tenant, Role: role, Key: string(r)})
		}
	default:
		return queueSet{}, fmt.Errorf("%w: %q: no wildcard allowed", queue.ErrInvalidSubject, filter)
	}
	return set, nil
}

// deadLetterQueue is the queue dead letters of id's messages go to.
func deadLetterQueue(id queueID) queueID {
	return queueID{Tenant: id.Tenant, Role: queue.RoleDeadLetter, Key: string(id.Role)}
}

// tenantMarker is the queue whose existence says the tenant is provisioned.
func tenantMarker(tenant string) queueID {
	return queueID{Tenant: tenant, Role: queue.RoleSubmit}
}

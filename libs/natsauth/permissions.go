package natsauth

import (
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/jwt/v2"

	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/natsjs"
)

// Role is what a NATS user of Outpost does; it decides its permissions.
type Role string

// Roles.
const (
	// RoleScheduler is the scheduler (control plane): jobs, dispatch,
	// cancels, dead letters and their KV buckets, for every tenant.
	RoleScheduler Role = "scheduler"
	// RoleAccountMigrator is the account-migrator (control plane):
	// accounts, leases, operations, the watch inventory and their KV
	// buckets, for every tenant.
	RoleAccountMigrator Role = "account-migrator"
	// RoleRunner is an ingestion-runner of one tenant and one pool.
	RoleRunner Role = "runner"
	// RoleWatcher is a k8s-watcher of one tenant and one zone.
	RoleWatcher Role = "watcher"
	// RoleSystem is a user of the system account: it pushes account
	// updates (revocations) to the servers. Only the control plane holds
	// one.
	RoleSystem Role = "system"
)

// Sentinel errors.
var (
	// ErrInvalidScope is returned for a scope that names no valid role,
	// tenant, pool or zone.
	ErrInvalidScope = errors.New("natsauth: invalid scope")
)

// Scope is what one user may reach.
type Scope struct {
	// Role decides the permissions.
	Role Role
	// Stack is the subject prefix; default queue.DefaultStack.
	Stack string
	// Layout is the stream layout of the stack; default per-tenant.
	Layout natsjs.Layout
	// Tenant is the agent's tenant (runner, watcher).
	Tenant string
	// Pool is the runner's executor pool.
	Pool string
	// Zone is the watcher's zone.
	Zone string
}

// Runner and watcher durable consumer names, as the services name them
// (services/ingestion-runner: "runners-<pool>"; services/k8s-watcher:
// "k8s-watcher"). Their permissions name the consumer natsjs derives.
const watcherConsumer = "k8s-watcher"

func runnerConsumer(pool string) string { return "runners-" + pool }

func (s Scope) normalized() (Scope, error) {
	if s.Stack == "" {
		s.Stack = queue.DefaultStack
	}
	if s.Layout == "" {
		s.Layout = natsjs.LayoutPerTenant
	}
	if !queue.ValidToken(s.Stack) {
		return s, fmt.Errorf("%w: stack %q", ErrInvalidScope, s.Stack)
	}
	if s.Layout != natsjs.LayoutPerTenant && s.Layout != natsjs.LayoutShared {
		return s, fmt.Errorf("%w: layout %q", ErrInvalidScope, s.Layout)
	}
	switch s.Role {
	case RoleScheduler, RoleAccountMigrator, RoleSystem:
		if s.Tenant != "" || s.Pool != "" || s.Zone != "" {
			return s, fmt.Errorf("%w: role %s serves every tenant: no tenant, pool or zone", ErrInvalidScope, s.Role)
		}
	case RoleRunner:
		if !queue.ValidToken(s.Tenant) || !queue.ValidToken(s.Pool) || s.Zone != "" {
			return s, fmt.Errorf("%w: a runner needs a tenant and a pool (subject tokens) and no zone", ErrInvalidScope)
		}
	case RoleWatcher:
		if !queue.ValidToken(s.Tenant) || !queue.ValidToken(s.Zone) || s.Pool != "" {
			return s, fmt.Errorf("%w: a watcher needs a tenant and a zone (subject tokens) and no pool", ErrInvalidScope)
		}
	default:
		return s, fmt.Errorf("%w: unknown role %q", ErrInvalidScope, s.Role)
	}
	return s, nil
}

// Permissions are the publish and subscribe allow lists of a scope for the
// user userID (its public key, which names its reply inbox).
//
// The control-plane roles may use the whole JetStream and KV API (stream
// and bucket names are single subject tokens, so they cannot be told apart
// by wildcards): the control plane is one trust domain. What each publishes
// on the Outpost subjects is limited to the roles it produces.
//
// An agent's permissions name its tenant's streams, its own durable
// consumer (create with its exact filter, pull, settle), the filter
// subjects it may read history with (ordered consumers), the subjects it
// publishes, and replies to its own inbox only. Agents never make streams
// or delete consumers. See docs/architecture.md for what the shared
// layout can and cannot isolate.
func Permissions(scope Scope, userID string) (jwt.Permissions, error) {
	s, err := scope.normalized()
	if err != nil {
		return jwt.Permissions{}, err
	}
	var pub, sub []string
	inbox := natsjs.InboxPrefix(userID) + ".>"
	subj := queue.NewSubjects(s.Stack)
	switch s.Role {
	case RoleSystem:
		return jwt.Permissions{}, nil // system account users: server updates only
	case RoleScheduler:
		pub = []string{
			"$JS.API.>", "$JS.ACK.>", "$KV.>", jsFlowControl,
			subj.Submit("*"), subj.All("*", queue.RoleJobs),
			subj.All("*", queue.RoleJobEvents), // the SQS bridge copies logs
			subj.All("*", queue.RoleControl),
			subj.All("*", queue.RoleRunners), // the SQS bridge copies heartbeats
			subj.All("*", queue.RoleDeadLetter),
			subj.All("*", queue.RoleAudit),     // the API's audit events
			subj.All("*", queue.RoleInstances), // its replicas' heartbeats
		}
		sub = []string{inbox}
	case RoleAccountMigrator:
		pub = []string{
			"$JS.API.>", "$JS.ACK.>", "$KV.>", jsFlowControl,
			subj.All("*", queue.RoleLeases), subj.All("*", queue.RoleOps),
			subj.All("*", queue.RoleAccounts), subj.All("*", queue.RoleDeadLetter),
			subj.All("*", queue.RoleAudit),     // the API's audit events
			subj.All("*", queue.RoleInstances), // its replicas' heartbeats
		}
		sub = []string{inbox}
	case RoleRunner:
		pub = runnerPublish(s, subj)
		sub = []string{inbox}
	case RoleWatcher:
		pub = watcherPublish(s, subj)
		sub = []string{inbox}
	}
	return jwt.Permissions{
		Pub:  jwt.Permission{Allow: jwt.StringList(pub)},
		Sub:  jwt.Permission{Allow: jwt.StringList(sub)},
		Resp: nil,
	}, nil
}

const jsAPI = "$JS.API."

// jsFlowControl is where a client answers the flow control requests of a
// push consumer: the control plane's KV watchers are ordered push
// consumers with flow control, and one whose answers are refused stalls
// once the server waits for one (a burst of record updates does that).
const jsFlowControl = "$JS.FC.>"

func streamOf(s Scope, role queue.Role) string {
	return natsjs.StreamNameFor(s.Stack, s.Layout, s.Tenant, role)
}

// tenantLookup is what checking the tenant takes: the info of its streams
// (per-tenant) or its entry in the tenants bucket (shared).
func tenantLookup(s Scope, roles ...queue.Role) []string {
	out := []string{jsAPI + "INFO"}
	if s.Layout == natsjs.LayoutShared {
		b := natsjs.TenantRegistryBucket(s.Stack)
		return append(out,
			jsAPI+"STREAM.INFO.KV_"+b,
			jsAPI+"DIRECT.GET.KV_"+b+".$KV."+b+"."+s.Tenant,
		)
	}
	for _, r := range roles {
		out = append(out, jsAPI+"STREAM.INFO."+streamOf(s, r))
	}
	return out
}

// durable is the create, pull and settle permissions of the durable
// consumer natsjs makes for name on the filter subject.
func durable(s Scope, role queue.Role, name, filter string) []string {
	stream, cons := streamOf(s, role), natsjs.ConsumerName(name, filter)
	return []string{
		jsAPI + "CONSUMER.CREATE." + stream + "." + cons + "." + filter,
		jsAPI + "CONSUMER.INFO." + stream + "." + cons,
		jsAPI + "CONSUMER.MSG.NEXT." + stream + "." + cons,
		"$JS.ACK." + stream + "." + cons + ".>",
	}
}

// ordered is what reading history through ordered consumers takes: create
// one (any name) on a filter within filter, and pull from it.
func ordered(s Scope, role queue.Role, filter string) []string {
	stream := streamOf(s, role)
	return []string{
		jsAPI + "CONSUMER.CREATE." + stream + ".*." + filter,
		jsAPI + "CONSUMER.MSG.NEXT." + stream + ".*",
	}
}

func runnerPublish(s Scope, subj queue.Subjects) []string {
	t := s.Tenant
	jobs := subj.Jobs(t, s.Pool)
	pub := tenantLookup(s, queue.RoleJobs, queue.RoleControl, queue.RoleDeadLetter)
	pub = append(pub, durable(s, queue.RoleJobs, runnerConsumer(s.Pool), jobs)...)
	// Cancels for the runners of its pool (control.<pool>.<runner id>).
	pub = append(pub, ordered(s, queue.RoleControl, subj.Control(t, s.Pool)+".>")...)
	pub = append(pub,
		subj.JobStatus(t, "*"), subj.JobLogs(t, "*"), subj.JobRecords(t, "*"),
		subj.Runners(t, s.Pool),
		subj.DeadLetter(t, queue.RoleJobs),
	)
	return dedupe(pub)
}

func watcherPublish(s Scope, subj queue.Subjects) []string {
	t := s.Tenant
	pub := tenantLookup(s, queue.RoleLeases, queue.RoleAccounts, queue.RoleWatch, queue.RoleJobs, queue.RoleDeadLetter)
	pub = append(pub, durable(s, queue.RoleLeases, watcherConsumer, subj.Leases(t, s.Zone))...)
	// Operations of the accounts its zone holds: the account is not known
	// when the credentials are issued, so any account of the tenant.
	work := streamOf(s, queue.RoleOps)
	pub = append(pub,
		jsAPI+"CONSUMER.CREATE."+work+".*."+subj.Ops(t, "*"),
		jsAPI+"CONSUMER.MSG.NEXT."+work+".*",
		"$JS.ACK."+work+".*.>",
	)
	pub = append(pub, ordered(s, queue.RoleAccounts, subj.ZoneControl(t, s.Zone))...)
	watch := streamOf(s, queue.RoleWatch)
	pub = append(pub, ordered(s, queue.RoleWatch, subj.All(t, queue.RoleWatch))...)
	pub = append(pub,
		// What an account's stream already holds, and one object's last state.
		jsAPI+"STREAM.MSG.GET."+watch,
		jsAPI+"DIRECT.GET."+watch+"."+subj.All(t, queue.RoleWatch),
		subj.AccountStatus(t),
		subj.WatcherPresence(t, s.Zone, "*"),
		subj.InventoryChecksums(t, "*"),
		subj.OperationResults(t),
		subj.All(t, queue.RoleWatch),
		subj.DeadLetter(t, queue.RoleLeases), subj.DeadLetter(t, queue.RoleOps),
	)
	return dedupe(pub)
}

func dedupe(in []string) []string {
	slices.Sort(in)
	return slices.Compact(in)
}

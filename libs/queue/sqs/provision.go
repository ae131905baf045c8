package sqs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/outposthq/outpost/libs/queue"
)

// ErrNameConflict is returned when the queue a subject maps to exists but
// its tags name another stack, tenant, role or key: two tenants whose names
// run together (see the package documentation). Rename one tenant.
var ErrNameConflict = errors.New("sqs: queue name already used by another tenant or role")

// Queue tags: who a queue belongs to, and the tenant's recorded limits.
const (
	tagStack       = "outpost:stack"
	tagTenant      = "outpost:tenant"
	tagRole        = "outpost:role"
	tagKey         = "outpost:key"
	tagMaxBytes    = "outpost:max-bytes"
	tagMaxMessages = "outpost:max-messages"
)

// maxVisibility is SQS's longest visibility timeout.
const maxVisibility = 12 * time.Hour

// queueInfo is a resolved queue, cached by name for the broker's life.
type queueInfo struct {
	id   queueID
	name string
	url  string
	arn  string // set when attributes were read (dead-letter queues)
}

// EnsureTenant creates, or updates to the broker's configuration, the
// tenant's dead-letter queues (one per role), its submit queue and its
// job-events queues (status, logs), each with its redrive policy,
// visibility timeout, retention and ownership tags. Queues per pool are
// created on first use, or by EnsureQueues. TenantLimits are recorded as
// tags of the submit queue; SQS does not enforce them. It is idempotent and
// safe to call concurrently from several processes.
func (b *Broker) EnsureTenant(ctx context.Context, tenant string, limits queue.TenantLimits) error {
	if b.closed.Load() {
		return queue.ErrClosed
	}
	if !queue.ValidToken(tenant) {
		return fmt.Errorf("sqs: ensure tenant: %w: tenant %q is not 1-64 characters of [a-zA-Z0-9_-]", queue.ErrInvalidSubject, tenant)
	}
	if limits.MaxBytes < 0 || limits.MaxMessages < 0 {
		return fmt.Errorf("sqs: ensure tenant %q: negative limits %+v", tenant, limits)
	}
	dlqArn := map[queue.Role]string{}
	for _, r := range deadLetterSources {
		qi, err := b.ensureQueue(ctx, queueID{Tenant: tenant, Role: queue.RoleDeadLetter, Key: string(r)}, "")
		if err != nil {
			return fmt.Errorf("sqs: ensure tenant %q: %w", tenant, err)
		}
		dlqArn[r] = qi.arn
	}
	ids := []queueID{tenantMarker(tenant)}
	for _, k := range jobEventKinds {
		ids = append(ids, queueID{Tenant: tenant, Role: queue.RoleJobEvents, Key: k})
	}
	var submit *queueInfo
	for _, id := range ids {
		qi, err := b.ensureQueue(ctx, id, dlqArn[id.Role])
		if err != nil {
			return fmt.Errorf("sqs: ensure tenant %q: %w", tenant, err)
		}
		if id.Role == queue.RoleSubmit {
			submit = qi
		}
	}
	_, err := b.client.TagQueue(ctx, &sqs.TagQueueInput{QueueUrl: aws.String(submit.url), Tags: map[string]string{
		tagMaxBytes:    strconv.FormatInt(limits.MaxBytes, 10),
		tagMaxMessages: strconv.FormatInt(limits.MaxMessages, 10),
	}})
	if err != nil {
		return fmt.Errorf("sqs: ensure tenant %q: record limits on %s: %w", tenant, submit.name, err)
	}
	b.log.Debug("tenant ensured", "tenant", tenant, "queue_type", string(b.cfg.QueueType), "max_bytes", limits.MaxBytes, "max_messages", limits.MaxMessages)
	return nil
}

// EnsureQueues provisions the queues that subjects map to (with their
// dead-letter queues), for the control plane to create a pool's queues
// before its first job; the tenant must have been ensured. Otherwise they
// are created on first Publish or Consume by a principal allowed to.
func (b *Broker) EnsureQueues(ctx context.Context, subjects ...string) error {
	if b.closed.Load() {
		return queue.ErrClosed
	}
	for _, s := range subjects {
		id, err := b.queueFor(s)
		if err != nil {
			return fmt.Errorf("sqs: ensure queues: %w", err)
		}
		if _, err := b.resolve(ctx, id, true); err != nil {
			return fmt.Errorf("sqs: ensure queue for %s: %w", s, err)
		}
	}
	return nil
}

// maxReceiveCount is the redrive policy's maxReceiveCount for role's queues.
func (b *Broker) maxReceiveCount(role queue.Role) int {
	if role == queue.RoleJobs {
		return b.cfg.JobsMaxDeliveries + 1
	}
	return BackstopMaxReceiveCount
}

func seconds(d time.Duration) string {
	return strconv.Itoa(int((d + time.Second - 1) / time.Second))
}

// queueAttributes is the configuration of id's queue. dlqArn is empty for
// dead-letter queues.
func (b *Broker) queueAttributes(id queueID, dlqArn string) map[string]string {
	retention := b.cfg.EventsRetention
	switch {
	case id.Role == queue.RoleDeadLetter:
		retention = b.cfg.DeadLetterRetention
	case id.Role.IsWork():
		retention = b.cfg.WorkRetention
	}
	attrs := map[string]string{
		string(types.QueueAttributeNameVisibilityTimeout):             seconds(b.cfg.VisibilityTimeout),
		string(types.QueueAttributeNameMessageRetentionPeriod):        seconds(retention),
		string(types.QueueAttributeNameMaximumMessageSize):            strconv.Itoa(b.cfg.MaxMessageSize),
		string(types.QueueAttributeNameReceiveMessageWaitTimeSeconds): seconds(b.cfg.WaitTime),
	}
	if b.fifo {
		attrs[string(types.QueueAttributeNameFifoQueue)] = "true"
		attrs[string(types.QueueAttributeNameContentBasedDeduplication)] = "false"
	}
	if dlqArn != "" {
		policy, _ := json.Marshal(map[string]any{"deadLetterTargetArn": dlqArn, "maxReceiveCount": b.maxReceiveCount(id.Role)})
		attrs[string(types.QueueAttributeNameRedrivePolicy)] = string(policy)
	}
	return attrs
}

func (b *Broker) ownerTags(id queueID) map[string]string {
	tags := map[string]string{tagStack: b.cfg.Stack, tagTenant: id.Tenant, tagRole: string(id.Role)}
	if id.Key != "" {
		tags[tagKey] = id.Key
	}
	return tags
}

// ensureQueue creates id's queue or updates its attributes, checks its
// owner and caches it. Dead-letter queues get their ARN read.
func (b *Broker) ensureQueue(ctx context.Context, id queueID, dlqArn string) (*queueInfo, error) {
	name := b.queueName(id)
	attrs := b.queueAttributes(id, dlqArn)
	out, err := b.client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs, Tags: b.ownerTags(id)})
	var url string
	var exists *types.QueueNameExists
	switch {
	case err == nil:
		url = aws.ToString(out.QueueUrl)
	case errors.As(err, &exists):
		// It exists with other attributes (an older configuration):
		// bring it to this one.
		got, gerr := b.client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
		if gerr != nil {
			return nil, fmt.Errorf("look up existing queue %s: %w", name, gerr)
		}
		url = aws.ToString(got.QueueUrl)
		delete(attrs, string(types.QueueAttributeNameFifoQueue))
		if _, serr := b.client.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: aws.String(url), Attributes: attrs}); serr != nil {
			return nil, fmt.Errorf("update attributes of queue %s: %w", name, serr)
		}
	default:
		return nil, fmt.Errorf("create queue %s: %w", name, err)
	}
	qi := &queueInfo{id: id, name: name, url: url}
	if err := b.verifyOwner(ctx, qi, true); err != nil {
		return nil, err
	}
	if id.Role == queue.RoleDeadLetter {
		if err := b.readArn(ctx, qi); err != nil {
			return nil, err
		}
	}
	b.cache(qi)
	return qi, nil
}

func (b *Broker) readArn(ctx context.Context, qi *queueInfo) error {
	out, err := b.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(qi.url),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return fmt.Errorf("read ARN of queue %s: %w", qi.name, err)
	}
	qi.arn = out.Attributes[string(types.QueueAttributeNameQueueArn)]
	if qi.arn == "" {
		return fmt.Errorf("read ARN of queue %s: SQS returned none", qi.name)
	}
	return nil
}

// verifyOwner checks the queue's ownership tags. An untagged queue (made
// by hand or by infrastructure code) is tagged when claim is set; a
// principal that may not read tags is trusted, with a warning.
func (b *Broker) verifyOwner(ctx context.Context, qi *queueInfo, claim bool) error {
	out, err := b.client.ListQueueTags(ctx, &sqs.ListQueueTagsInput{QueueUrl: aws.String(qi.url)})
	if isAccessDenied(err) {
		b.log.Warn("may not read queue tags; queue ownership not checked", "queue", qi.name)
		return nil
	}
	if err != nil {
		return fmt.Errorf("read tags of queue %s: %w", qi.name, err)
	}
	want := b.ownerTags(qi.id)
	if _, tagged := out.Tags[tagTenant]; !tagged {
		if !claim {
			b.log.Warn("queue has no outpost ownership tags", "queue", qi.name)
			return nil
		}
		if _, err := b.client.TagQueue(ctx, &sqs.TagQueueInput{QueueUrl: aws.String(qi.url), Tags: want}); err != nil {
			return fmt.Errorf("tag queue %s: %w", qi.name, err)
		}
		return nil
	}
	for _, k := range []string{tagStack, tagTenant, tagRole, tagKey} {
		if out.Tags[k] != want[k] {
			return fmt.Errorf("%w: queue %s belongs to stack %q tenant %q role %q key %q, not %s",
				ErrNameConflict, qi.name, out.Tags[tagStack], out.Tags[tagTenant], out.Tags[tagRole], out.Tags[tagKey], qi.id)
		}
	}
	return nil
}

func (b *Broker) cache(qi *queueInfo) {
	b.queuesMu.Lock()
	defer b.queuesMu.Unlock()
	b.queues[qi.name] = qi
}

func (b *Broker) cached(name string) *queueInfo {
	b.queuesMu.Lock()
	defer b.queuesMu.Unlock()
	return b.queues[name]
}

// forget drops a queue from the cache, after SQS said it does not exist.
func (b *Broker) forget(name string) {
	b.queuesMu.Lock()
	defer b.queuesMu.Unlock()
	delete(b.queues, name)
}

// resolve finds id's queue. A missing queue of a provisioned tenant is
// created when create is set (a principal without sqs:CreateQueue gets an
// error wrapping queue.ErrUnknownTenant, to wait for the control plane);
// a tenant whose submit queue does not exist is unknown.
func (b *Broker) resolve(ctx context.Context, id queueID, create bool) (*queueInfo, error) {
	name := b.queueName(id)
	if qi := b.cached(name); qi != nil {
		if qi.id != id {
			return nil, fmt.Errorf("%w: queue %s belongs to %s, not %s", ErrNameConflict, name, qi.id, id)
		}
		return qi, nil
	}
	out, err := b.client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if err == nil {
		qi := &queueInfo{id: id, name: name, url: aws.ToString(out.QueueUrl)}
		if err := b.verifyOwner(ctx, qi, false); err != nil {
			return nil, err
		}
		b.cache(qi)
		return qi, nil
	}
	if !isNotFound(err) {
		return nil, fmt.Errorf("look up queue %s: %w", name, err)
	}
	marker := tenantMarker(id.Tenant)
	if id == marker {
		return nil, fmt.Errorf("%w: %q: queue %s does not exist (call EnsureTenant first)", queue.ErrUnknownTenant, id.Tenant, name)
	}
	if _, err := b.resolve(ctx, marker, false); err != nil {
		if !isAccessDenied(err) || !create {
			if isAccessDenied(err) {
				// A runner may not look at the tenant's submit queue: all
				// it can tell is that its own queue is not there yet.
				return nil, fmt.Errorf("%w: %q: queue %s does not exist (yet): %w", queue.ErrUnknownTenant, id.Tenant, name, err)
			}
			return nil, err
		}
		// A runner may not look at the tenant's submit queue, but it may
		// be allowed to create a queue of its own (its control queue):
		// try, and let IAM say no. The dead-letter queue it needs exists
		// only if the tenant was provisioned.
	}
	if !create {
		return nil, fmt.Errorf("%w: %q: queue %s does not exist", queue.ErrUnknownTenant, id.Tenant, name)
	}
	qi, err := b.create(ctx, id)
	if isAccessDenied(err) {
		return nil, fmt.Errorf("%w: %q: queue %s is not provisioned yet and this principal may not create it: %w", queue.ErrUnknownTenant, id.Tenant, name, err)
	}
	if err != nil {
		return nil, err
	}
	b.log.Info("queue created on first use", "queue", name)
	return qi, nil
}

// create creates id's queue with a redrive policy to its dead-letter
// queue (resolved, or created, first).
func (b *Broker) create(ctx context.Context, id queueID) (*queueInfo, error) {
	dlqArn := ""
	if id.Role != queue.RoleDeadLetter {
		dlq, err := b.resolve(ctx, deadLetterQueue(id), true)
		if err != nil {
			return nil, err
		}
		if dlq.arn == "" {
			if err := b.readArn(ctx, dlq); err != nil {
				return nil, err
			}
		}
		dlqArn = dlq.arn
	}
	return b.ensureQueue(ctx, id, dlqArn)
}

// redrive reads the maxReceiveCount of a queue's redrive policy, 0 when it
// has none or it cannot be read.
func (b *Broker) redrive(ctx context.Context, qi *queueInfo) int {
	out, err := b.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(qi.url),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameRedrivePolicy},
	})
	if err != nil {
		b.log.Debug("cannot read redrive policy", "queue", qi.name, "error", err)
		return 0
	}
	var p struct {
		MaxReceiveCount json.Number `json:"maxReceiveCount"`
	}
	if json.Unmarshal([]byte(out.Attributes[string(types.QueueAttributeNameRedrivePolicy)]), &p) != nil {
		return 0
	}
	n, _ := strconv.Atoi(p.MaxReceiveCount.String())
	return n
}

// discover lists the tenant's queues of role (one per key), checking each
// one's owner; queues of other tenants whose names share the prefix are
// skipped.
func (b *Broker) discover(ctx context.Context, tenant string, role queue.Role) ([]*queueInfo, error) {
	prefix := strings.TrimSuffix(QueueNameFor(b.cfg.QueuePrefix, b.cfg.Stack, tenant, role, "", false), fifoSuffix) + "-"
	var found []*queueInfo
	in := &sqs.ListQueuesInput{QueueNamePrefix: aws.String(prefix), MaxResults: aws.Int32(1000)}
	for range 100 { // up to 100,000 queues
		out, err := b.client.ListQueues(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("list queues %s*: %w", prefix, err)
		}
		for _, url := range out.QueueUrls {
			name := url[strings.LastIndexByte(url, '/')+1:]
			if strings.HasSuffix(name, fifoSuffix) != b.fifo {
				continue
			}
			id := queueID{Tenant: tenant, Role: role, Key: strings.TrimSuffix(strings.TrimPrefix(name, prefix), fifoSuffix)}
			if !queue.ValidToken(id.Key) || b.queueName(id) != name {
				continue
			}
			qi := b.cached(name)
			if qi != nil && qi.id != id {
				continue // another tenant's queue whose name runs together with ours
			}
			if qi == nil {
				qi = &queueInfo{id: id, name: name, url: url}
				if err := b.verifyOwner(ctx, qi, false); err != nil {
					b.log.Debug("queue skipped by discovery", "queue", name, "error", err)
					continue
				}
				b.cache(qi)
			}
			found = append(found, qi)
		}
		if out.NextToken == nil {
			break
		}
		in.NextToken = out.NextToken
	}
	return found, nil
}

// Package backend is the one place services open the broker: NATS
// JetStream (package natsjs, the default) or AWS SQS (package sqs), chosen
// by their configuration. Services embed Settings inline in their
// configuration (its "broker" and "queue" keys), call Open, and take from
// the Backend the roles they need (package queue's role interfaces and
// kv.Opener); no service imports natsjs or sqs.
//
//	broker:
//	  url: nats://nats:4222  # OUTPOST_BROKER_URL
//	  stack: outpost         # OUTPOST_STACK
//	  layout: per-tenant     # OUTPOST_BROKER_LAYOUT: per-tenant (default) or shared
//	  credentials: /c/creds  # OUTPOST_BROKER_CREDENTIALS
//	  tls: {ca: /c/ca.pem}   # OUTPOST_BROKER_TLS_CA, _CERT, _KEY
//	queue:
//	  kind: sqs              # OUTPOST_QUEUE: nats (default) or sqs
//	  sqs:
//	    region: eu-west-1    # OUTPOST_SQS_REGION; default from the AWS chain
//	    queue_type: fifo     # OUTPOST_SQS_QUEUE_TYPE: fifo (default) or standard
//
// SQS credentials come from the standard AWS chain (environment, shared
// files, web identity, ECS and EC2 roles).
package backend

import (
	"errors"
	"fmt"
	"time"

	libconfig "github.com/outposthq/outpost/libs/config"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/natsjs"
	"github.com/outposthq/outpost/libs/queue/sqs"
)

// ErrInvalid is wrapped by Validate's errors. It is the libs/config
// sentinel, so that services test one error for every configuration fault.
var ErrInvalid = libconfig.ErrInvalid

// Kind names a backend.
type Kind string

// Backends.
const (
	// KindNATS is NATS JetStream: streams, history (Read) and KV stores.
	KindNATS Kind = "nats"
	// KindSQS is AWS SQS: queues only, no history (see package sqs).
	KindSQS Kind = "sqs"
)

// Settings is a service's whole broker configuration: the NATS
// connection (YAML key "broker") and the backend's kind with its SQS
// settings (key "queue"). Services embed it inline, so that the keys and
// OUTPOST_* variables are the same in every service:
//
//	type Config struct {
//		backend.Settings `yaml:",inline"`
//		...
//	}
type Settings struct {
	// Broker is the NATS JetStream connection: the queue with KindNATS,
	// and the scheduler's records and history with either kind.
	Broker Broker `yaml:"broker"`
	// Queue chooses where messages are published and consumed.
	Queue Config `yaml:"queue"`
}

// Broker is the NATS JetStream connection.
type Broker struct {
	// URL of the NATS server(s), comma-separated. User and password or a
	// token may be given in it; it is logged redacted (RedactURL).
	URL string `yaml:"url" env:"OUTPOST_BROKER_URL"`
	// Stack is the subject prefix shared by one Outpost installation.
	Stack string `yaml:"stack" env:"OUTPOST_STACK"`
	// Layout maps tenants onto streams: "per-tenant" (default) or
	// "shared" (see docs/architecture.md). Every service of a stack, and
	// every agent's credentials, must use the same.
	Layout queue.Layout `yaml:"layout" env:"OUTPOST_BROKER_LAYOUT"`
	// Name is the connection name shown by the server; the service's
	// name when empty.
	Name string `yaml:"name" env:"OUTPOST_BROKER_NAME"`
	// Replicas of the streams and buckets the service creates: 1, or 3
	// on a JetStream cluster (a node can then fail without an outage).
	Replicas int `yaml:"replicas" env:"OUTPOST_BROKER_REPLICAS"`
	// Credentials is the NATS credentials file issued for this service
	// (libs/natsauth); a broker in operator mode refuses connections
	// without one.
	Credentials string `yaml:"credentials" env:"OUTPOST_BROKER_CREDENTIALS"`
	// TLS verifies the broker (ca) and presents a client certificate
	// (cert, key) to a broker that asks for one.
	TLS TLS `yaml:"tls"`
}

// TLS is the broker connection's TLS settings (CA, client certificate and
// key), as services configure them.
type TLS = natsjs.TLS

// RedactURL returns the broker URL (or comma-separated URLs) without user
// information, for logs.
func RedactURL(u string) string { return natsjs.RedactURL(u) }

// DefaultURL is the broker URL of the default settings: a local NATS.
const DefaultURL = "nats://127.0.0.1:4222"

// DefaultSettings are the settings before any file or variable is read:
// a local NATS, the default stack and layout, one replica, NATS as the
// queue; name is the connection's name.
func DefaultSettings(name string) Settings {
	return Settings{
		Broker: Broker{
			URL:      DefaultURL,
			Stack:    queue.DefaultStack,
			Layout:   queue.LayoutPerTenant,
			Name:     name,
			Replicas: 1,
		},
		Queue: Default(),
	}
}

// Requirements say what a service can run on, for Settings.Validate.
type Requirements struct {
	// SQS: the service can publish and consume on SQS (queue.kind sqs).
	// Without it, "sqs" is refused: the service needs JetStream's KV
	// stores and history.
	SQS bool
	// History: the service needs the JetStream connection with either
	// kind (broker.url is required even with SQS); see Options.History.
	History bool
}

// Validate reports every unusable value at once, with its YAML key.
func (s Settings) Validate(req Requirements) error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrInvalid, key, fmt.Sprintf(format, args...)))
	}
	if s.Queue.Kind == KindSQS && !req.SQS {
		bad("queue.kind", "%q is not supported by this service: it needs NATS JetStream (%q)", KindSQS, KindNATS)
	} else if err := s.Queue.Validate(); err != nil {
		errs = append(errs, err)
	}
	b := s.Broker
	if b.URL == "" && (s.Queue.Kind != KindSQS || req.History) {
		bad("broker.url", "must not be empty")
	}
	if !queue.ValidToken(b.Stack) {
		bad("broker.stack", "%q must be 1-64 characters of [A-Za-z0-9_-]", b.Stack)
	}
	if !b.Layout.Valid() {
		bad("broker.layout", "%q is neither %q nor %q", b.Layout, queue.LayoutPerTenant, queue.LayoutShared)
	}
	if b.Replicas != 1 && b.Replicas != 3 {
		bad("broker.replicas", "%d must be 1 or 3", b.Replicas)
	}
	if (b.TLS.Cert == "") != (b.TLS.Key == "") {
		bad("broker.tls", "cert and key must be given together")
	}
	return errors.Join(errs...)
}

// SQSBackstopMaxReceiveCount bounds the deliveries of a message on SQS:
// a service's max deliveries must stay below it (see
// SQS.JobsMaxDeliveries).
const SQSBackstopMaxReceiveCount = sqs.BackstopMaxReceiveCount

// Config chooses and tunes the backend (the "queue" key of Settings).
type Config struct {
	// Kind is "nats" (default) or "sqs".
	Kind Kind `yaml:"kind" env:"OUTPOST_QUEUE"`
	// SQS applies when Kind is "sqs".
	SQS SQS `yaml:"sqs"`
}

// SQS tunes the SQS backend; see sqs.Config for each field.
type SQS struct {
	// Region of the queues; empty: the standard AWS chain (AWS_REGION).
	Region string `yaml:"region" env:"OUTPOST_SQS_REGION"`
	// Endpoint overrides the SQS endpoint: a VPC endpoint, or a local
	// SQS-compatible server in tests.
	Endpoint string `yaml:"endpoint" env:"OUTPOST_SQS_ENDPOINT"`
	// QueueType is "fifo" (default) or "standard".
	QueueType string `yaml:"queue_type" env:"OUTPOST_SQS_QUEUE_TYPE"`
	// QueuePrefix is put before every queue name, e.g. "prod-".
	QueuePrefix string `yaml:"queue_prefix" env:"OUTPOST_SQS_QUEUE_PREFIX"`
	// VisibilityTimeout is the queues' default visibility timeout (a
	// consumer's ack wait overrides it on each receive).
	VisibilityTimeout time.Duration `yaml:"visibility_timeout" env:"OUTPOST_SQS_VISIBILITY_TIMEOUT"`
	// WaitTime is the long poll of a receive, 1s to 20s. Longer polls cost
	// fewer requests on idle queues.
	WaitTime time.Duration `yaml:"wait_time" env:"OUTPOST_SQS_WAIT_TIME"`
	// BatchLinger is how long a send, delete or visibility change waits for
	// others to the same queue to share its request; 0 sends at once.
	BatchLinger time.Duration `yaml:"batch_linger" env:"OUTPOST_SQS_BATCH_LINGER"`
	// DiscoveryInterval is how often a wildcard consumer (the scheduler's
	// copy of the runners' heartbeats) lists the queues again to find
	// those of new pools.
	DiscoveryInterval time.Duration `yaml:"discovery_interval" env:"OUTPOST_SQS_DISCOVERY_INTERVAL"`
	// JobsMaxDeliveries is what the jobs queues' redrive policy is made
	// for (maxReceiveCount = JobsMaxDeliveries + 1); it must equal the
	// runners' max_deliveries. 0: the runner takes its max_deliveries, the
	// control plane the runners' default (10).
	JobsMaxDeliveries int `yaml:"jobs_max_deliveries" env:"OUTPOST_SQS_JOBS_MAX_DELIVERIES"`
}

// Default is the configuration before any file or variable is read.
func Default() Config {
	return Config{
		Kind: KindNATS,
		SQS: SQS{
			QueueType:         string(sqs.QueueFIFO),
			VisibilityTimeout: sqs.DefaultVisibilityTimeout,
			WaitTime:          sqs.DefaultWaitTime,
			BatchLinger:       sqs.DefaultBatchLinger,
			DiscoveryInterval: sqs.DefaultDiscoveryInterval,
		},
	}
}

// Validate reports every unusable value at once, with its YAML key under
// "queue.". The SQS section is checked only for Kind "sqs".
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: queue.%s: %s", ErrInvalid, key, fmt.Sprintf(format, args...)))
	}
	switch c.Kind {
	case KindNATS:
		return nil
	case KindSQS:
	default:
		bad("kind", "%q is neither %q nor %q", c.Kind, KindNATS, KindSQS)
		return errors.Join(errs...)
	}
	s := c.SQS
	if t := sqs.QueueType(s.QueueType); t != sqs.QueueFIFO && t != sqs.QueueStandard {
		bad("sqs.queue_type", "%q is neither %q nor %q", s.QueueType, sqs.QueueFIFO, sqs.QueueStandard)
	}
	if len(s.QueuePrefix) > 20 || !tokenOrEmpty(s.QueuePrefix) {
		bad("sqs.queue_prefix", "%q must be up to 20 characters of [A-Za-z0-9_-]", s.QueuePrefix)
	}
	if s.VisibilityTimeout < time.Second || s.VisibilityTimeout > 12*time.Hour {
		bad("sqs.visibility_timeout", "%s must be between 1s and 12h", s.VisibilityTimeout)
	}
	if s.WaitTime < time.Second || s.WaitTime > 20*time.Second || s.WaitTime%time.Second != 0 {
		bad("sqs.wait_time", "%s must be whole seconds between 1s and 20s", s.WaitTime)
	}
	if s.BatchLinger < 0 || s.BatchLinger > time.Second {
		bad("sqs.batch_linger", "%s must be between 0 and 1s", s.BatchLinger)
	}
	if s.DiscoveryInterval < time.Second {
		bad("sqs.discovery_interval", "%s must be at least 1s", s.DiscoveryInterval)
	}
	if s.JobsMaxDeliveries < 0 || s.JobsMaxDeliveries >= sqs.BackstopMaxReceiveCount {
		bad("sqs.jobs_max_deliveries", "%d must be between 1 and %d (0: derived)", s.JobsMaxDeliveries, sqs.BackstopMaxReceiveCount-1)
	}
	return errors.Join(errs...)
}

func tokenOrEmpty(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

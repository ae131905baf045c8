// Package backend chooses a service's queue backend from its configuration,
// in one place: NATS JetStream (package natsjs, the default) or AWS SQS
// (package sqs). Services embed Config under their "queue" key and call
// Open.
//
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

// Config chooses and tunes the backend. The NATS connection itself is
// configured by each service (its broker section), since the scheduler
// needs it with either kind.
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

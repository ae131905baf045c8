package sqs

// LivenessDown reports whether the liveness probe has marked the broker not
// ready, for tests that must wait for the probe's verdict.
func (b *Broker) LivenessDown() bool { return !b.metrics.alive.Load() }

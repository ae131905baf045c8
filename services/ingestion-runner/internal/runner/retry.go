package runner

import (
	"time"

	"github.com/cenkalti/backoff/v4"

	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
)

// Defaults of a RetryPolicy's zero fields.
const (
	DefaultMaxAttempts    = 3
	DefaultInitialBackoff = time.Second
	DefaultMaxBackoff     = time.Minute
	DefaultMultiplier     = 2.0
)

// MaxAttempts is the policy's attempt budget, the first attempt included.
func MaxAttempts(p *jobsv1.RetryPolicy) int {
	if n := p.GetMaxAttempts(); n > 0 {
		return int(n)
	}
	return DefaultMaxAttempts
}

// RetryDelay is how long to wait before the attempt after failed attempt
// number attempt (1-based): initial * multiplier^(attempt-1), capped at the
// policy's max backoff, then spread by ±jitter (0.1 = ±10%) so jobs that
// failed together (a database down) do not all come back together.
func RetryDelay(p *jobsv1.RetryPolicy, attempt int, jitter float64) time.Duration {
	initial := positive(p.GetInitialBackoff().AsDuration(), DefaultInitialBackoff)
	maxBackoff := max(positive(p.GetMaxBackoff().AsDuration(), DefaultMaxBackoff), initial)
	mult := p.GetMultiplier()
	if mult < 1 {
		mult = DefaultMultiplier
	}
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(initial),
		backoff.WithMaxInterval(maxBackoff),
		backoff.WithMultiplier(mult),
		backoff.WithRandomizationFactor(jitter),
		backoff.WithMaxElapsedTime(0),
	)
	d := initial
	// Past a few dozen steps every policy sits at its cap.
	for range min(max(attempt, 1), 64) {
		d = b.NextBackOff()
	}
	return d
}

func positive(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

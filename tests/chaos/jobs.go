package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/outposthq/outpost/tests/harness"
)

// Submitter submits n short jobs at a steady pace, each with an id of its
// own so that a submission retried after a 503 or a connection error (the
// scheduler or the broker is down) cannot create a second job.
type Submitter struct {
	Client *harness.Client
	Prefix string
	// Accepted lists the ids the API accepted (200, 201 or 202): those
	// jobs count as submitted.
	Accepted []string
	// Refused maps the ids the API refused for good to the answer.
	Refused map[string]string
	// Retries counts the submissions sent again after an outage.
	Retries atomic.Int64
	mu      sync.Mutex
}

// noopJob is the job the chaos run submits: a noop that lasts long enough
// to be caught running by a kill.
func noopJob(id string) map[string]any {
	return map[string]any{"id": id, "pool": "default", "task": map[string]any{"noop": map[string]any{"sleep": "500ms"}}}
}

// Run submits n jobs spread over span with a few submitters in parallel and
// returns once each was accepted or refused, or ctx ended.
func (s *Submitter) Run(ctx context.Context, n int, span time.Duration) {
	s.Refused = map[string]string{}
	ids := make(chan string)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for id := range ids {
				s.submit(ctx, id)
			}
		})
	}
	tick := time.NewTicker(max(span/time.Duration(max(n, 1)), time.Millisecond))
	defer tick.Stop()
	for i := range n {
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
		if ctx.Err() != nil {
			break
		}
		ids <- fmt.Sprintf("%s-%04d", s.Prefix, i)
	}
	close(ids)
	wg.Wait()
}

// errRetry marks an answer worth sending the submission again for.
var errRetry = errors.New("scheduler unavailable")

func (s *Submitter) submit(ctx context.Context, id string) {
	b := backoff.NewExponentialBackOff(backoff.WithInitialInterval(100*time.Millisecond), backoff.WithMaxInterval(time.Second), backoff.WithMaxElapsedTime(0))
	first := true
	err := backoff.Retry(func() error {
		if !first {
			s.Retries.Add(1)
		}
		first = false
		code, body, err := s.Client.Try(http.MethodPost, "/api/v1/jobs", noopJob(id))
		switch {
		case err != nil:
			return fmt.Errorf("%w: %w", errRetry, err)
		case code == http.StatusServiceUnavailable || code == http.StatusTooManyRequests || code >= 500:
			return fmt.Errorf("%w: status %d: %s", errRetry, code, body)
		case code == http.StatusOK || code == http.StatusCreated || code == http.StatusAccepted:
			s.mu.Lock()
			s.Accepted = append(s.Accepted, id)
			s.mu.Unlock()
			return nil
		default:
			return backoff.Permanent(fmt.Errorf("status %d: %s", code, body))
		}
	}, backoff.WithContext(b, ctx))
	if err != nil {
		s.mu.Lock()
		s.Refused[id] = err.Error()
		s.mu.Unlock()
	}
}

// Pending returns how many of the tenant's jobs are not terminal yet.
func Pending(c *harness.Client) (int, error) {
	code, body, err := c.Try(http.MethodGet, "/api/v1/jobs?state=QUEUED,RUNNING&limit=1", nil)
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("list jobs: status %d: %s", code, body)
	}
	var out struct {
		Total int `json:"total"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return 0, fmt.Errorf("list jobs: %w", err)
	}
	return out.Total, nil
}

// Drain waits until no job is pending or timeout passes, and returns how
// long it waited and the jobs still pending.
func Drain(c *harness.Client, timeout time.Duration) (time.Duration, int) {
	start := time.Now()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	pending := -1
	for time.Since(start) < timeout {
		if n, err := Pending(c); err == nil {
			pending = n
			if n == 0 {
				break
			}
		}
		<-tick.C
	}
	return time.Since(start), pending
}

// Records fetches the record of every id; ids the scheduler does not know
// are left out. A transient error is retried for a while.
func Records(c *harness.Client, ids []string) (map[string]harness.Job, error) {
	out := make(map[string]harness.Job, len(ids))
	for _, id := range ids {
		b := backoff.NewExponentialBackOff(backoff.WithInitialInterval(50*time.Millisecond), backoff.WithMaxElapsedTime(30*time.Second))
		err := backoff.Retry(func() error {
			code, body, err := c.Try(http.MethodGet, "/api/v1/jobs/"+id, nil)
			switch {
			case err != nil:
				return err
			case code == http.StatusNotFound:
				return nil
			case code != http.StatusOK:
				return fmt.Errorf("get %s: status %d: %s", id, code, body)
			}
			var j harness.Job
			if err := json.Unmarshal(body, &j); err != nil {
				return backoff.Permanent(fmt.Errorf("get %s: %w", id, err))
			}
			out[id] = j
			return nil
		}, b)
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// terminalStates are the states a job ends in.
var terminalStates = []string{"SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"}

func isTerminal(state string) bool { return slices.Contains(terminalStates, state) }

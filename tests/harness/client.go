package harness

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/testenv"
)

// Job is the scheduler's job record as the REST API returns it (the fields
// the tests look at).
type Job struct {
	ID       string            `json:"id"`
	Tenant   string            `json:"tenant"`
	Pool     string            `json:"pool"`
	State    string            `json:"state"`
	Attempt  int               `json:"attempt"`
	Reason   string            `json:"reason"`
	ExitCode *int              `json:"exit_code"`
	RunnerID string            `json:"runner_id"`
	Outputs  map[string]string `json:"outputs"`
	History  []struct {
		State    string    `json:"state"`
		Attempt  int       `json:"attempt"`
		Reason   string    `json:"reason"`
		RunnerID string    `json:"runner_id"`
		At       time.Time `json:"at"`
	} `json:"history"`
}

// Terminal reports whether the job has ended.
func (j Job) Terminal() bool {
	return slices.Contains([]string{"SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"}, j.State)
}

// Client calls the scheduler's REST API as one tenant.
type Client struct {
	t      testing.TB
	Base   string
	Tenant string
	// Token is the API key sent as the bearer credential.
	Token string
}

// Client returns an API client for the stack's tenant.
func (s *Stack) Client() *Client {
	return &Client{t: s.t, Base: s.API, Tenant: s.Tenant, Token: s.Token}
}

// Do sends a request with a JSON body (nil for none) and returns the status
// and body; a transport error fails the test.
func (c *Client) Do(method, path string, body any) (int, []byte) {
	c.t.Helper()
	code, data, err := c.Try(method, path, body)
	require.NoError(c.t, err)
	return code, data
}

// Try is Do returning its error instead of failing the test, for the
// conditions of require.Eventually: they run on a goroutine of their own
// that may outlive the test, and must not fail it.
func (c *Client) Try(method, path string, body any) (int, []byte, error) {
	api := testenv.Client{Base: c.Base, Token: c.Token}
	if c.Tenant != "" {
		api.Header = map[string]string{"X-Outpost-Tenant": c.Tenant}
	}
	return api.Try(method, path, body)
}

// Submit posts a job and returns its record; the API must accept it. A
// 503 whose body names the job's id (the record was not written in time)
// is answered as the API asks: the same job is submitted again with that
// id, until the record is there.
func (c *Client) Submit(spec map[string]any) Job {
	c.t.Helper()
	spec = maps.Clone(spec)
	var (
		j    Job
		last string
	)
	// A failed wait is reported with the last answer, below.
	_ = assert.Eventually(c.t, func() bool {
		code, body, err := c.Try(http.MethodPost, "/api/v1/jobs", spec)
		last = fmt.Sprintf("%d %s %v", code, body, err)
		switch {
		case err != nil:
			return false
		case code == http.StatusCreated || code == http.StatusOK:
			return json.Unmarshal(body, &j) == nil && j.ID != ""
		case code != http.StatusServiceUnavailable:
			return true // refused: no use trying again
		default:
			var pending struct {
				ID string `json:"id"`
			}
			if json.Unmarshal(body, &pending) == nil && pending.ID != "" {
				spec["id"] = pending.ID
			}
		}
		return false
	}, time.Minute, 100*time.Millisecond)
	require.NotEmpty(c.t, j.ID, "submit: %s", last)
	return j
}

// Get returns the job's record.
func (c *Client) Get(id string) Job {
	c.t.Helper()
	code, body := c.Do(http.MethodGet, "/api/v1/jobs/"+id, nil)
	require.Equal(c.t, http.StatusOK, code, "get %s: %s", id, body)
	var j Job
	require.NoError(c.t, json.Unmarshal(body, &j))
	return j
}

// WaitFor polls the job until cond holds.
func (c *Client) WaitFor(id string, timeout time.Duration, cond func(Job) bool) Job {
	c.t.Helper()
	var last Job
	// A failed wait is reported with the last answer, below.
	_ = assert.Eventually(c.t, func() bool {
		code, body, err := c.Try(http.MethodGet, "/api/v1/jobs/"+id, nil)
		if err != nil || code != http.StatusOK {
			return false
		}
		last = Job{}
		if json.Unmarshal(body, &last) != nil {
			return false
		}
		return cond(last)
	}, timeout, 50*time.Millisecond, "job %s: condition never held; last seen %+v", id, &last)
	return last
}

// WaitTerminal waits until the job has ended and returns it.
func (c *Client) WaitTerminal(id string, timeout time.Duration) Job {
	c.t.Helper()
	return c.WaitFor(id, timeout, Job.Terminal)
}

// Logs returns the job's logs as plain text.
func (c *Client) Logs(id string) string {
	c.t.Helper()
	code, body := c.Do(http.MethodGet, "/api/v1/jobs/"+id+"/logs", nil)
	require.Equal(c.t, http.StatusOK, code, "logs %s: %s", id, body)
	return string(body)
}

// Cancel asks the scheduler to cancel the job.
func (c *Client) Cancel(id string) Job {
	c.t.Helper()
	code, body := c.Do(http.MethodPost, "/api/v1/jobs/"+id+"/cancel", nil)
	require.Equal(c.t, http.StatusOK, code, "cancel %s: %s", id, body)
	var j Job
	require.NoError(c.t, json.Unmarshal(body, &j))
	return j
}

// Command returns a job spec for a command task.
func Command(pool, command string, args ...string) map[string]any {
	return map[string]any{
		"pool":    pool,
		"task":    map[string]any{"command": map[string]any{"command": command, "args": args}},
		"timeout": "2m",
	}
}

// Describe prints a job for failure messages.
func (j Job) String() string {
	return fmt.Sprintf("job %s state=%s attempt=%d reason=%q runner=%s", j.ID, j.State, j.Attempt, j.Reason, j.RunnerID)
}

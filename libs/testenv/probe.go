package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// probeTimeout bounds one request of HTTPProbe.
const probeTimeout = 2 * time.Second

// ErrNotOK is wrapped by HTTPProbe's error for an answer other than 200.
var ErrNotOK = errors.New("status is not 200 OK")

// HTTPProbe is a probe ready once GET url answers 200 OK, with client (nil:
// http.DefaultClient), e.g. a service's /readyz.
func HTTPProbe(client *http.Client, url string) Probe {
	if client == nil {
		client = http.DefaultClient
	}
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, probeTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("GET %s: %w", url, err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("GET %s: %w", url, err)
		}
		defer func() { _ = resp.Body.Close() }()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s: %s: %w", url, resp.Status, body, ErrNotOK)
		}
		return nil
	}
}

// WaitProbe asks probe every interval until it returns nil or timeout
// passes, for what is not a Process of this package (a server in the test
// process); the error wraps ErrNotReady and the probe's last error.
func WaitProbe(timeout, interval time.Duration, probe Probe) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		last := probe(ctx)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w within %s: %w", ErrNotReady, timeout, last)
		case <-tick.C:
		}
	}
}

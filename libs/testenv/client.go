package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// DefaultRequestTimeout bounds one request of a Client whose Timeout is 0.
const DefaultRequestTimeout = 30 * time.Second

// Client calls a JSON HTTP API in tests. The zero value with Base set is
// ready to use.
type Client struct {
	// Base is the API's base URL, e.g. "http://127.0.0.1:41234".
	Base string
	// Header is sent with every request, e.g. a tenant header.
	Header map[string]string
	// Token, when set, is sent as "Authorization: Bearer <Token>".
	Token string
	// HTTP is the client to use; nil is http.DefaultClient.
	HTTP *http.Client
	// Timeout bounds each request; DefaultRequestTimeout when 0.
	Timeout time.Duration
}

// Send sends method to Base+path with body and the extra header (on top of
// Client.Header), and returns the status and the whole response body. A
// body of type string or []byte is sent as it is, nil sends none, anything
// else is encoded as JSON. Its error is a transport error, never a status.
func (c *Client) Send(ctx context.Context, method, path string, body any, header map[string]string) (int, []byte, error) {
	code, _, data, err := c.SendHeader(ctx, method, path, body, header)
	return code, data, err
}

// SendHeader is Send that also returns the response's header.
func (c *Client) SendHeader(ctx context.Context, method, path string, body any, header map[string]string) (int, http.Header, []byte, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			return 0, nil, nil, fmt.Errorf("encode the body of %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(raw)
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultRequestTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, rd)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	all := maps.Clone(c.Header)
	if all == nil {
		all = map[string]string{}
	}
	maps.Copy(all, header)
	for k, v := range all {
		req.Header.Set(k, v)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, resp.Header, data, fmt.Errorf("%s %s: read the answer: %w", method, path, err)
	}
	return resp.StatusCode, resp.Header, data, nil
}

// Try is Send without a context or an extra header. It returns its error
// instead of failing a test: use it in the conditions of
// require.Eventually, which run on a goroutine of their own that may
// outlive the test.
func (c *Client) Try(method, path string, body any) (int, []byte, error) {
	return c.Send(context.Background(), method, path, body, nil)
}

// Do is Try that fails the test on a transport error.
func (c *Client) Do(t testing.TB, method, path string, body any) (int, []byte) {
	t.Helper()
	code, data, err := c.Try(method, path, body)
	require.NoError(t, err)
	return code, data
}

// DoJSON sends a request, requires the status want and decodes the JSON
// answer into a T.
func DoJSON[T any](t testing.TB, c *Client, method, path string, body any, want int) T {
	t.Helper()
	code, data := c.Do(t, method, path, body)
	require.Equal(t, want, code, "%s %s: %s", method, path, data)
	return DecodeJSON[T](t, data)
}

// DecodeJSON decodes data into a T, failing the test (with data in the
// message) when it is not valid.
func DecodeJSON[T any](t testing.TB, data []byte) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal(data, &v), "%s", data)
	return v
}

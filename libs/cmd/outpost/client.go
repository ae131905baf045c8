package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/outposthq/outpost/libs/auth"
)

// APIError is an error answer of an Outpost API: its status and the
// message (and field) of its {"error": …, "field": …} body.
type APIError struct {
	Status  int
	Message string
	Field   string
	// RequestID identifies a 500 in the service's log.
	RequestID string
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	if e.Field != "" {
		msg += " (field " + e.Field + ")"
	}
	if e.Status >= 500 && e.RequestID != "" && !strings.Contains(msg, e.RequestID) {
		msg += " (request " + e.RequestID + ")"
	}
	return fmt.Sprintf("%s [HTTP %d]", msg, e.Status)
}

// client calls one Outpost API with a context's credential.
type client struct {
	base   string
	token  string
	tenant string
	http   *http.Client
}

// maxErrorBody bounds how much of an error answer is read.
const maxErrorBody = 1 << 16

// request sends method path with body (JSON-encoded unless nil or
// []byte) and returns the response, or an *APIError for a status of 400 or
// more. The caller closes the body.
func (c *client) request(ctx context.Context, method, path string, body any) (*http.Response, error) {
	if c.base == "" {
		return nil, errors.New("no API address: set it with outpost login or --scheduler/--accounts")
	}
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.base, "/")+path, rd)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.tenant != "" {
		req.Header.Set(auth.TenantHeader, c.tenant)
	}
	hc := c.http
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode < 400 {
		return resp, nil
	}
	defer func() { _ = resp.Body.Close() }()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	apiErr := &APIError{Status: resp.StatusCode, RequestID: resp.Header.Get(auth.RequestIDHeader)}
	var eb struct {
		Error string `json:"error"`
		Field string `json:"field"`
	}
	if json.Unmarshal(raw, &eb) == nil && eb.Error != "" {
		apiErr.Message, apiErr.Field = eb.Error, eb.Field
	} else {
		apiErr.Message = strings.TrimSpace(string(raw))
	}
	return nil, apiErr
}

// do sends the request and decodes a JSON answer into out (skipped when
// out is nil or the answer is empty).
func (c *client) do(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.request(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	dec := json.NewDecoder(resp.Body)
	dec.UseNumber()
	if err := dec.Decode(out); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("decode the answer of %s %s: %w", method, path, err)
	}
	return nil
}

// defaultTimeout bounds a request that is not a stream.
const defaultTimeout = 60 * time.Second

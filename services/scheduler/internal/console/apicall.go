package console

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/outposthq/outpost/libs/auth"
)

// ErrAPI is an answer of the API that is not a success.
var ErrAPI = errors.New("API error")

// apiError is an error answer of the API: its status, message and the
// JSON path of the field at fault.
type apiError struct {
	Status  int
	Message string `json:"error"`
	Field   string `json:"field"`
}

// inputError returns the API's refusal of a form's input, shown at its
// field on the form again: a 4xx other than 403 (a role the form cannot
// mend).
func inputError(err error) (*apiError, bool) {
	var e *apiError
	if errors.As(err, &e) && e.Status < http.StatusInternalServerError && e.Status != http.StatusForbidden {
		return e, true
	}
	return nil, false
}

func (e *apiError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s", e.Field, e.Message)
	}
	return e.Message
}

func (e *apiError) Unwrap() error { return ErrAPI }

// maxAPIBody bounds what the console reads of one API answer.
const maxAPIBody = 16 << 20

// call makes an in-process request of the API with credential (and the
// tenant header when tenant is set) and returns the answer.
func (c *Console) call(ctx context.Context, credential, tenant, method, path string, body any) (int, []byte, error) {
	req, err := apiRequest(ctx, credential, tenant, method, path, body)
	if err != nil {
		return 0, nil, err
	}
	rec := &recorder{header: http.Header{}, status: http.StatusOK}
	c.api.ServeHTTP(rec, req)
	return rec.status, rec.body.Bytes(), nil
}

func apiRequest(ctx context.Context, credential, tenant, method, path string, body any) (*http.Request, error) {
	var rd io.Reader = http.NoBody
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode API request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, path, rd)
	if err != nil {
		return nil, fmt.Errorf("API request: %w", err)
	}
	req.RemoteAddr = "127.0.0.1:0"
	req.Header.Set("Authorization", "Bearer "+credential)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tenant != "" {
		req.Header.Set(auth.TenantHeader, tenant)
	}
	return req, nil
}

// get calls the API for the request's session and decodes a 200 answer
// into out; another answer is an *apiError.
func (c *Console) get(r *http.Request, path string, out any) error {
	return c.do(r, http.MethodGet, path, nil, out)
}

// do calls the API for the request's session: the same credential and
// tenant as the console route the guard let through.
func (c *Console) do(r *http.Request, method, path string, body, out any) error {
	s := sessionFrom(r)
	status, raw, err := c.call(r.Context(), s.Credential, s.Tenant, method, path, body)
	if err != nil {
		return err
	}
	return decodeAnswer(status, raw, out)
}

func decodeAnswer(status int, raw []byte, out any) error {
	if status < 200 || status > 299 {
		e := &apiError{Status: status}
		if json.Unmarshal(raw, e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(http.StatusText(status))
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("decode API answer: %w", err)
	}
	return nil
}

// recorder keeps an in-process API answer.
type recorder struct {
	header http.Header
	status int
	wrote  bool
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	if r.body.Len()+len(b) > maxAPIBody {
		return 0, fmt.Errorf("%w: answer over %d bytes", ErrAPI, maxAPIBody)
	}
	return r.body.Write(b)
}

// stream makes an in-process request of the API whose answer is read as
// it is written (a log follow): each line is handed to line until the
// answer ends, ctx is done or line returns false.
func (c *Console) stream(ctx context.Context, s session, path string, line func([]byte) bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := apiRequest(ctx, s.Credential, s.Tenant, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	sw := &pipeWriter{header: http.Header{}, pw: pw, status: make(chan int, 1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.api.ServeHTTP(sw, req)
		sw.WriteHeader(http.StatusOK)
		_ = pw.Close()
	}()
	defer func() {
		cancel()
		_ = pr.Close() // a writer blocked on the pipe returns
		<-done
	}()
	if st := <-sw.status; st != http.StatusOK {
		raw, _ := io.ReadAll(io.LimitReader(pr, 64<<10))
		return decodeAnswer(st, raw, nil)
	}
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if !line(sc.Bytes()) {
			return nil
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("read API stream: %w", err)
	}
	return nil
}

// pipeWriter hands a streamed answer to the reader of its pipe.
type pipeWriter struct {
	header http.Header
	pw     *io.PipeWriter
	status chan int
	wrote  bool
}

func (p *pipeWriter) Header() http.Header { return p.header }

func (p *pipeWriter) WriteHeader(code int) {
	if !p.wrote {
		p.wrote = true
		p.status <- code
	}
}

func (p *pipeWriter) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	n, err := p.pw.Write(b)
	if err != nil {
		return n, fmt.Errorf("stream: %w", err)
	}
	return n, nil
}

// Flush is a no-op: every Write reaches the reader.
func (p *pipeWriter) Flush() {}

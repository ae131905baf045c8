package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Defaults of the http and datahub-rest sinks.
const (
	defaultHTTPBatch   = 100
	defaultHTTPTimeout = 30 * time.Second
	defaultHTTPRetries = 4
	// maxErrorBody is how much of a refusal's body goes into the error.
	maxErrorBody = 512
)

// poster POSTs JSON with retries: network errors, 429 and 5xx are retried
// with exponential backoff; any other status is final.
type poster struct {
	client    *http.Client
	headers   map[string]string
	retries   int
	retryBase time.Duration
}

// errStatus is a response that is not 2xx.
type errStatus struct {
	code int
	body string
}

func (e errStatus) Error() string {
	if e.body == "" {
		return fmt.Sprintf("HTTP %d", e.code)
	}
	return fmt.Sprintf("HTTP %d: %s", e.code, e.body)
}

func (p *poster) post(ctx context.Context, url string, body []byte) error {
	b := backoff.NewExponentialBackOff(backoff.WithInitialInterval(p.retryBase), backoff.WithMaxInterval(30*p.retryBase), backoff.WithMaxElapsedTime(0))
	attempts := 0
	return backoff.Retry(func() error {
		attempts++
		err := p.once(ctx, url, body)
		var st errStatus
		if errors.As(err, &st) && st.code != http.StatusTooManyRequests && st.code < 500 {
			return backoff.Permanent(err)
		}
		if err != nil && attempts > p.retries {
			return backoff.Permanent(fmt.Errorf("%w (after %d attempts)", err, attempts))
		}
		return err
	}, backoff.WithContext(b, ctx))
}

func (p *poster) once(ctx context.Context, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return backoff.Permanent(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for _, k := range slices.Sorted(maps.Keys(p.headers)) {
		req.Header.Set(k, p.headers[k])
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	return errStatus{code: resp.StatusCode, body: strings.TrimSpace(string(raw))}
}

// httpSink POSTs {job_id, pipeline_name, first_seq, records} per batch.
type httpSink struct {
	poster
	url          string
	batchSize    int
	jobID        string
	pipelineName string
	next         uint64
}

// HTTPBatch is the body of one http sink request.
type HTTPBatch struct {
	JobID        string            `json:"job_id"`
	PipelineName string            `json:"pipeline_name,omitempty"`
	FirstSeq     uint64            `json:"first_seq"`
	Records      []json.RawMessage `json:"records"`
}

func (s *httpSink) BatchSize() int { return s.batchSize }

func (s *httpSink) Write(ctx context.Context, recs []*Record) error {
	if s.next == 0 {
		s.next = 1
	}
	batch := HTTPBatch{JobID: s.jobID, PipelineName: s.pipelineName, FirstSeq: s.next, Records: make([]json.RawMessage, len(recs))}
	for i, r := range recs {
		raw, err := r.AppendJSON(nil)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrSink, err)
		}
		batch.Records[i] = raw
	}
	body, err := json.Marshal(batch)
	if err != nil {
		return fmt.Errorf("%w: encode batch: %w", ErrSink, err)
	}
	if err := s.post(ctx, s.url, body); err != nil {
		return fmt.Errorf("%w: http: POST %s records %d-%d: %w", ErrSink, s.url, s.next, s.next+uint64(len(recs))-1, err)
	}
	s.next += uint64(len(recs))
	return nil
}

func (s *httpSink) Close(context.Context) error { return nil }

// dataHubSink emits MetadataChangeProposals, one per aspect, to GMS.
type dataHubSink struct {
	poster
	server    string
	mode      string
	batchSize int
	// system, when set, is the systemMetadata of each proposal (run_id,
	// lastObserved, pipeline_name).
	system func() map[string]any
}

// Proposal is DataHub's MetadataChangeProposal as rest.li takes it: the
// aspect travels as a JSON string.
type Proposal struct {
	EntityType string         `json:"entityType"`
	EntityURN  string         `json:"entityUrn"`
	ChangeType string         `json:"changeType"`
	AspectName string         `json:"aspectName"`
	Aspect     GenericAspect  `json:"aspect"`
	System     map[string]any `json:"systemMetadata,omitempty"`
}

// GenericAspect is an aspect serialized as JSON.
type GenericAspect struct {
	Value       string `json:"value"`
	ContentType string `json:"contentType"`
}

func (s *dataHubSink) BatchSize() int { return s.batchSize }

// dataHubEntityType is the DataHub entity type of a record.
func dataHubEntityType(entityType string) string {
	if entityType == EntityDatabase || entityType == EntitySchema {
		return "container"
	}
	return "dataset"
}

// Proposals turns a record into its proposals, aspects in name order.
func Proposals(r *Record) ([]Proposal, error) {
	out := make([]Proposal, 0, len(r.aspects))
	for _, a := range r.sorted() {
		raw, err := aspectJSON(a.value)
		if err != nil {
			return nil, fmt.Errorf("encode aspect %s of %s: %w", a.name, r.URN, err)
		}
		out = append(out, Proposal{
			EntityType: dataHubEntityType(r.EntityType),
			EntityURN:  r.URN,
			ChangeType: "UPSERT",
			AspectName: a.name,
			Aspect:     GenericAspect{Value: string(raw), ContentType: "application/json"},
		})
	}
	return out, nil
}

func (s *dataHubSink) Write(ctx context.Context, recs []*Record) error {
	var props []Proposal
	for _, r := range recs {
		p, err := Proposals(r)
		if err != nil {
			return fmt.Errorf("%w: datahub-rest: %w", ErrSink, err)
		}
		if s.system != nil {
			sys := s.system()
			for i := range p {
				p[i].System = sys
			}
		}
		props = append(props, p...)
	}
	async := "true"
	if s.mode == "SYNC" {
		async = "false"
	}
	if s.mode == "ASYNC_BATCH" {
		body, err := json.Marshal(map[string]any{"proposals": props, "async": async})
		if err != nil {
			return fmt.Errorf("%w: datahub-rest: %w", ErrSink, err)
		}
		if err := s.post(ctx, s.server+"/aspects?action=ingestProposalBatch", body); err != nil {
			return fmt.Errorf("%w: datahub-rest: ingestProposalBatch of %d proposals: %w", ErrSink, len(props), err)
		}
		return nil
	}
	for _, p := range props {
		body, err := json.Marshal(map[string]any{"proposal": p, "async": async})
		if err != nil {
			return fmt.Errorf("%w: datahub-rest: %w", ErrSink, err)
		}
		if err := s.post(ctx, s.server+"/aspects?action=ingestProposal", body); err != nil {
			return fmt.Errorf("%w: datahub-rest: ingestProposal %s of %s: %w", ErrSink, p.AspectName, p.EntityURN, err)
		}
	}
	return nil
}

func (s *dataHubSink) Close(context.Context) error { return nil }

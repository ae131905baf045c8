package recipe

import (
	"slices"
	"strings"
)

// FileSink writes JSON lines.
type FileSink struct {
	Filename   string `json:"filename" recipe:"required"`
	LegacyJSON any    `json:"legacy_nested_json,omitempty" recipe:"noeffect" why:"records are written as Outpost's JSON lines"`
}

// ConsoleSink writes JSON lines to the job log's stdout.
type ConsoleSink struct{}

// OutpostSink sends records back to the control plane.
type OutpostSink struct {
	// BatchSize is the number of records per JobRecords message.
	BatchSize int `json:"batch_size,omitempty"`
}

func (s *OutpostSink) check(path string, f *faults) {
	if s.BatchSize < 0 {
		f.add(path+".batch_size", "must not be negative")
	}
}

// HTTPSink POSTs batches of records as JSON.
type HTTPSink struct {
	URL string `json:"url" recipe:"required"`
	// Headers are sent with every request: an auth header takes its value
	// from a ${SECRET}.
	Headers       map[string]string `json:"headers,omitempty"`
	BatchSize     int               `json:"batch_size,omitempty"`
	TimeoutSec    int               `json:"timeout_sec,omitempty"`
	RetryMaxTimes int               `json:"retry_max_times,omitempty"`
}

func (s *HTTPSink) check(path string, f *faults) {
	checkURL(path+".url", s.URL, f)
	checkCounts(path, f, map[string]int{"batch_size": s.BatchSize, "timeout_sec": s.TimeoutSec, "retry_max_times": s.RetryMaxTimes})
}

// ClientExtras are DataHub's client keys (DatahubClientConfig) this runner
// accepts without effect.
type ClientExtras struct {
	RetryStatusCodes any `json:"retry_status_codes,omitempty" recipe:"noeffect" why:"429 and 5xx are retried"`
	PoolConnections  any `json:"pool_connections,omitempty" recipe:"noeffect"`
	PoolMaxsize      any `json:"pool_maxsize,omitempty" recipe:"noeffect"`
	CACertificate    any `json:"ca_certificate_path,omitempty" recipe:"noeffect" why:"the runner's system CAs are used"`
	ClientCert       any `json:"client_certificate_path,omitempty" recipe:"noeffect"`
	ClientKey        any `json:"client_key_path,omitempty" recipe:"noeffect"`
	DisableSSLVerify any `json:"disable_ssl_verification,omitempty" recipe:"noeffect" why:"TLS is always verified"`
	OpenAPI          any `json:"openapi_ingestion,omitempty" recipe:"noeffect"`
	ClientMode       any `json:"client_mode,omitempty" recipe:"noeffect"`
	Component        any `json:"datahub_component,omitempty" recipe:"noeffect"`
	ConfigRefresh    any `json:"server_config_refresh_interval,omitempty" recipe:"noeffect"`
	TCPKeepalive     any `json:"tcp_keepalive,omitempty" recipe:"noeffect"`
	DefaultEmitMode  any `json:"default_emit_mode,omitempty" recipe:"noeffect"`
}

// DataHubRESTSink emits MetadataChangeProposals to DataHub's GMS.
type DataHubRESTSink struct {
	Server       string            `json:"server" recipe:"required"`
	Token        string            `json:"token,omitempty"`
	TimeoutSec   int               `json:"timeout_sec,omitempty"`
	RetryMaxTime int               `json:"retry_max_times,omitempty"`
	ExtraHeaders map[string]string `json:"extra_headers,omitempty"`
	// Mode is DataHub's: SYNC and ASYNC post one proposal per request to
	// /aspects?action=ingestProposal; ASYNC_BATCH posts a batch to
	// /aspects?action=ingestProposalBatch.
	Mode      string `json:"mode,omitempty"`
	BatchSize int    `json:"max_per_batch,omitempty"`
	ClientExtras
	Endpoint           any `json:"endpoint,omitempty" recipe:"noeffect" why:"proposals go to rest.li's /aspects"`
	MaxThreads         any `json:"max_threads,omitempty" recipe:"noeffect" why:"batches are sent one at a time"`
	MaxPendingRequests any `json:"max_pending_requests,omitempty" recipe:"noeffect"`
}

// DataHub REST modes.
var dataHubModes = []string{"SYNC", "ASYNC", "ASYNC_BATCH"}

func (s *DataHubRESTSink) check(path string, f *faults) {
	checkURL(path+".server", s.Server, f)
	if s.Mode != "" && !slices.Contains(dataHubModes, strings.ToUpper(s.Mode)) {
		f.add(path+".mode", "unknown mode %q (supported: %s)", s.Mode, strings.Join(dataHubModes, ", "))
	}
	checkCounts(path, f, map[string]int{"timeout_sec": s.TimeoutSec, "retry_max_times": s.RetryMaxTime, "max_per_batch": s.BatchSize})
}

var sinks = registry{
	"file":         {func() any { return &FileSink{} }},
	"console":      {func() any { return &ConsoleSink{} }},
	"outpost":      {func() any { return &OutpostSink{} }},
	"http":         {func() any { return &HTTPSink{} }},
	"datahub-rest": {func() any { return &DataHubRESTSink{} }},
}

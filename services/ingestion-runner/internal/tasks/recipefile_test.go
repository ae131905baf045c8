package tasks

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	ingestv1 "github.com/outposthq/outpost/proto/outpost/ingest/v1"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/secrets"
)

// TestCommandRecipeFile: the recipe is written resolved to a 0600 file
// named by OUTPOST_RECIPE_FILE and ${OUTPOST_RECIPE_FILE}, removed after.
func TestCommandRecipeFile(t *testing.T) {
	c := newCommand(time.Second)
	c.Resolver = &secrets.Resolver{Providers: []secrets.Provider{secrets.Env{
		Prefixes:  []string{"RCP_"},
		LookupEnv: func(n string) (string, bool) { return map[string]string{"RCP_PW": `p"a: ss`}[n], n == "RCP_PW" },
	}}}
	tests := []struct {
		name   string
		recipe *ingestv1.IngestTask
		want   string
		err    string
	}{
		{name: "yaml", recipe: &ingestv1.IngestTask{Recipe: "source:\n  type: snowflake\n  config: {password: '${RCP_PW}'}\n"},
			want: "source:\n    config:\n        password: 'p\"a: ss'\n    type: snowflake\n"},
		{name: "json", recipe: &ingestv1.IngestTask{Recipe: `{"source": {"config": {"password": "${RCP_PW}"}}}`, Format: ingestv1.RecipeFormat_RECIPE_FORMAT_JSON},
			want: "{\n  \"source\": {\n    \"config\": {\n      \"password\": \"p\\\"a: ss\"\n    }\n  }\n}"},
		{name: "unknown secret", recipe: &ingestv1.IngestTask{Recipe: "a: ${RCP_NOPE}"}, err: `recipe: a: unknown secret "RCP_NOPE"`},
		{name: "malformed", recipe: &ingestv1.IngestTask{Recipe: "a: ["}, err: "malformed recipe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := &jobsv1.JobSpec{Task: &jobsv1.Task{Kind: &jobsv1.Task_Command{Command: &jobsv1.CommandTask{
				Command: "sh",
				Args:    []string{"-c", `stat -c %a "$OUTPOST_RECIPE_FILE"; echo "$1"; cat "$1"`, "sh", "${OUTPOST_RECIPE_FILE}"},
				Recipe:  tt.recipe,
			}}}}
			out := newOutput()
			res := c.Run(context.Background(), Input{JobID: "j", Attempt: 1, Spec: spec}, out)
			if tt.err != "" {
				require.ErrorContains(t, res.Err, tt.err)
				require.True(t, IsPermanent(res.Err))
				return
			}
			require.NoError(t, res.Err, out.text("stderr"))
			mode, rest, _ := strings.Cut(out.text("stdout"), "\n")
			path, content, _ := strings.Cut(rest, "\n")
			require.Equal(t, "600", mode)
			require.Equal(t, tt.want, strings.TrimSuffix(content, "\n")+map[bool]string{true: "\n", false: ""}[strings.HasSuffix(tt.want, "\n")])
			_, err := os.Stat(path)
			require.ErrorIs(t, err, os.ErrNotExist, "the recipe file is removed after the job")
			require.Contains(t, out.masked, `p"a: ss`)
		})
	}
}

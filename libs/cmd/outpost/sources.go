package main

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"github.com/spf13/cobra"
)

var sourceColumns = []column{
	col("ID", "id"), col("POOL", "pool"), col("SCHEDULE", "schedule.cron"), col("ENABLED", "enabled"),
	col("NEXT FIRE", "next_fire"), col("LAST FIRE", "last_fire"),
}

var runColumns = []column{
	col("JOB", "job_id"), col("STATE", "state"), col("TRIGGER", "trigger"), col("SCHEDULED", "scheduled_at"),
	col("ATTEMPT", "attempt"), col("CREATED", "created_at"), col("REASON", "reason"),
}

func sourcePath(id string, rest string) string { return "/api/v1/sources/" + url.PathEscape(id) + rest }

func (a *app) sourcesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "sources",
		Aliases: []string{"source"},
		Short:   "Ingestion sources: a recipe run on a schedule or on demand (scheduler)",
		Example: `  outpost sources create --id mysql-prod --recipe mysql.yml --schedule '0 * * * *' --pool remote
  outpost sources run mysql-prod
  outpost sources runs mysql-prod`,
		Args: noArgs,
	}
	var (
		id, recipe, schedule, zone, pool, timeout string
		labels                                    map[string]string
	)
	create := &cobra.Command{
		Use:   "create --recipe FILE [--schedule CRON]",
		Short: "Create a source from a recipe file, optionally on a cron schedule",
		Example: `  outpost sources create --recipe mysql.yml --schedule '0 * * * *'
  outpost sources create --id pg --recipe pg.yml --schedule '30 2 * * *' --time-zone Europe/Paris --pool remote`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if recipe == "" {
				return usageError{errors.New("--recipe is required")}
			}
			task, err := a.recipeTask(recipe)
			if err != nil {
				return err
			}
			body := map[string]any{"task": map[string]any{"ingest": task}}
			for k, v := range map[string]string{"id": id, "pool": pool, "timeout": timeout} {
				if v != "" {
					body[k] = v
				}
			}
			if len(labels) > 0 {
				body["labels"] = labels
			}
			if schedule != "" {
				s := map[string]any{"cron": schedule}
				if zone != "" {
					s["time_zone"] = zone
				}
				body["schedule"] = s
			}
			c, err := a.schedulerClient()
			if err != nil {
				return err
			}
			return a.send(cmd, c, http.MethodPost, "/api/v1/sources", body, "", sourceColumns)
		},
	}
	f := create.Flags()
	f.StringVar(&id, "id", "", "source id (default: generated)")
	f.StringVar(&recipe, "recipe", "", "recipe file (YAML, or JSON with a .json name)")
	f.StringVar(&schedule, "schedule", "", "cron schedule, e.g. '0 * * * *' (none: runs only on demand)")
	f.StringVar(&zone, "time-zone", "", "time zone of the schedule (default UTC)")
	f.StringVar(&pool, "pool", "", "executor pool of its jobs")
	f.StringVar(&timeout, "timeout", "", "timeout of each run")
	f.StringToStringVar(&labels, "label", nil, "label key=value (repeatable)")

	var limit int
	runs := &cobra.Command{
		Use:     "runs SOURCE_ID",
		Short:   "List a source's runs (its jobs), newest first",
		Example: `  outpost sources runs mysql-prod --limit 5`,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.schedulerClient()
			if err != nil {
				return err
			}
			q := url.Values{}
			if limit > 0 {
				q.Set("limit", strconv.Itoa(limit))
			}
			return a.get(cmd, c, sourcePath(args[0], "/runs")+query(q), "runs", runColumns)
		},
	}
	runs.Flags().IntVar(&limit, "limit", 0, "at most this many runs")

	cmd.AddCommand(create, runs,
		&cobra.Command{
			Use:   "list",
			Short: "List the sources",
			Args:  noArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				c, err := a.schedulerClient()
				if err != nil {
					return err
				}
				return a.get(cmd, c, "/api/v1/sources", "sources", sourceColumns)
			},
		},
		&cobra.Command{
			Use:   "get SOURCE_ID",
			Short: "Show a source",
			Args:  exactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := a.schedulerClient()
				if err != nil {
					return err
				}
				return a.get(cmd, c, sourcePath(args[0], ""), "", sourceColumns)
			},
		},
		&cobra.Command{
			Use:     "run SOURCE_ID",
			Short:   "Run a source now; prints the job it made",
			Example: `  outpost sources run mysql-prod -o json | jq -r .id | xargs outpost jobs wait`,
			Args:    exactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := a.schedulerClient()
				if err != nil {
					return err
				}
				return a.send(cmd, c, http.MethodPost, sourcePath(args[0], "/run"), nil, "", jobColumns)
			},
		},
		&cobra.Command{
			Use:   "delete SOURCE_ID",
			Short: "Delete a source (its past runs stay)",
			Args:  exactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := a.schedulerClient()
				if err != nil {
					return err
				}
				return a.send(cmd, c, http.MethodDelete, sourcePath(args[0], ""), nil, "", nil)
			},
		},
	)
	return cmd
}

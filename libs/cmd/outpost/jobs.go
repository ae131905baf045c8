package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// terminalStates are the states a job does not leave.
var terminalStates = map[string]bool{"SUCCEEDED": true, "FAILED": true, "CANCELLED": true, "TIMED_OUT": true}

var jobColumns = []column{
	col("ID", "id"), col("POOL", "pool"), col("STATE", "state"), col("ATTEMPT", "attempt"),
	col("CREATED", "created_at"), col("REASON", "reason"),
}

func (a *app) jobsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "jobs",
		Aliases: []string{"job"},
		Short:   "Submit, follow and inspect jobs (scheduler)",
		Example: `  id=$(outpost jobs submit --pool default --timeout 1m -o json -- sh -c 'echo hello' | jq -r .id)
  outpost jobs logs -f "$id"
  outpost jobs wait "$id"
  outpost jobs explain "$id"`,
		Args: noArgs,
	}
	cmd.AddCommand(a.jobsSubmit(), a.jobsList(), a.jobsGet(), a.jobsLogs(), a.jobsCancel(), a.jobsExplain(), a.jobsWait())
	return cmd
}

type submitOptions struct {
	file    string
	id      string
	pool    string
	timeout string
	labels  map[string]string
	project string
	recipe  string
	noop    string
	env     map[string]string
}

func (a *app) jobsSubmit() *cobra.Command {
	var o submitOptions
	cmd := &cobra.Command{
		Use:   "submit [flags] [-- COMMAND [ARG...]]",
		Short: "Submit a job: a command, an ingestion recipe, a no-op, or a request body from a file",
		Long: `submit posts a job to the scheduler and prints its record. The task is the command
after --, an ingestion recipe (--recipe), a no-op (--noop), or the whole request
body of POST /api/v1/jobs read from a JSON file (--file, - for standard input).`,
		Example: `  outpost jobs submit --pool default --timeout 1m -- sh -c 'echo hello from $(uname -n)'
  outpost jobs submit --pool remote --recipe mysql.yml --label team=data
  outpost jobs submit --file job.json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := a.submitBody(o, args)
			if err != nil {
				return err
			}
			c, err := a.schedulerClient()
			if err != nil {
				return err
			}
			return a.send(cmd, c, http.MethodPost, "/api/v1/jobs", body, "", jobColumns)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.file, "file", "f", "", "request body (JSON) of POST /api/v1/jobs; - reads standard input")
	f.StringVar(&o.id, "id", "", "job id (a submit of an existing id returns its record)")
	f.StringVar(&o.pool, "pool", "", "executor pool (default: the scheduler's)")
	f.StringVar(&o.timeout, "timeout", "", "job timeout, e.g. 90s or 1h")
	f.StringToStringVar(&o.labels, "label", nil, "label key=value (repeatable)")
	f.StringVar(&o.project, "project", "", "project of the job")
	f.StringVar(&o.recipe, "recipe", "", "ingestion recipe file (YAML or JSON) to run")
	f.StringVar(&o.noop, "noop", "", "a no-op task sleeping this long (e.g. 1s)")
	f.StringToStringVar(&o.env, "env", nil, "environment variable NAME=value of the command (repeatable)")
	return cmd
}

// submitBody builds the body of POST /api/v1/jobs from the flags.
func (a *app) submitBody(o submitOptions, args []string) (any, error) {
	kinds := 0
	for _, set := range []bool{o.file != "", len(args) > 0, o.recipe != "", o.noop != ""} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		return nil, usageError{errors.New("give exactly one task: a command after --, --recipe, --noop or --file")}
	}
	if o.file != "" {
		raw, err := a.readFile(o.file)
		if err != nil {
			return nil, err
		}
		if !json.Valid(raw) {
			return nil, usageError{fmt.Errorf("%s is not JSON", o.file)}
		}
		return raw, nil
	}
	body := map[string]any{}
	switch {
	case len(args) > 0:
		task := map[string]any{"command": args[0], "args": args[1:]}
		if len(o.env) > 0 {
			task["env"] = o.env
		}
		body["task"] = map[string]any{"command": task}
	case o.recipe != "":
		task, err := a.recipeTask(o.recipe)
		if err != nil {
			return nil, err
		}
		body["task"] = map[string]any{"ingest": task}
	default:
		body["task"] = map[string]any{"noop": map[string]any{"sleep": o.noop}}
	}
	for k, v := range map[string]string{"id": o.id, "pool": o.pool, "timeout": o.timeout, "project": o.project} {
		if v != "" {
			body[k] = v
		}
	}
	if len(o.labels) > 0 {
		body["labels"] = o.labels
	}
	return body, nil
}

// recipeTask reads a recipe file into an ingest task; its format follows
// the file's extension.
func (a *app) recipeTask(path string) (map[string]any, error) {
	raw, err := a.readFile(path)
	if err != nil {
		return nil, err
	}
	format := "yaml"
	if strings.EqualFold(filepath.Ext(path), ".json") {
		format = "json"
	}
	return map[string]any{"recipe": string(raw), "format": format}, nil
}

// readFile reads path, or standard input for "-".
func (a *app) readFile(path string) ([]byte, error) {
	if path == "-" {
		raw, err := io.ReadAll(io.LimitReader(a.stdin, 16<<20))
		if err != nil {
			return nil, fmt.Errorf("read standard input: %w", err)
		}
		return raw, nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return raw, nil
}

func (a *app) jobsList() *cobra.Command {
	var state, pool, since string
	var labels []string
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List jobs, newest first",
		Example: `  outpost jobs list --state SUCCEEDED --pool default
  outpost jobs list --label team=data --since 1h`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.schedulerClient()
			if err != nil {
				return err
			}
			q := url.Values{}
			if state != "" {
				q.Set("state", strings.ToUpper(state))
			}
			if pool != "" {
				q.Set("pool", pool)
			}
			for _, l := range labels {
				q.Add("label", l)
			}
			if since != "" {
				// A duration counts back from now; anything else goes
				// to the API as the RFC 3339 time it must be.
				if d, err := time.ParseDuration(since); err == nil {
					since = time.Now().Add(-d).UTC().Format(time.RFC3339)
				}
				q.Set("since", since)
			}
			if limit > 0 {
				q.Set("limit", strconv.Itoa(limit))
			}
			return a.get(cmd, c, "/api/v1/jobs"+query(q), "jobs", jobColumns)
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "only jobs in these states (comma-separated: QUEUED,RUNNING,SUCCEEDED,FAILED,CANCELLED,TIMED_OUT)")
	cmd.Flags().StringVar(&pool, "pool", "", "only jobs of this pool")
	cmd.Flags().StringArrayVar(&labels, "label", nil, "only jobs with these labels: key=value or key, comma-separated; repeatable")
	cmd.Flags().StringVar(&since, "since", "", "only jobs created since this long ago (1h) or this RFC 3339 time")
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many jobs (default: the scheduler's)")
	return cmd
}

func query(q url.Values) string {
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

func jobPath(id string, rest ...string) string {
	return "/api/v1/jobs/" + url.PathEscape(id) + strings.Join(rest, "")
}

func (a *app) jobsGet() *cobra.Command {
	return &cobra.Command{
		Use:     "get JOB_ID",
		Short:   "Show a job's record",
		Example: `  outpost jobs get <job id> -o yaml`,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.schedulerClient()
			if err != nil {
				return err
			}
			return a.get(cmd, c, jobPath(args[0]), "", jobColumns)
		},
	}
}

func (a *app) jobsLogs() *cobra.Command {
	var follow bool
	var attempt int
	cmd := &cobra.Command{
		Use:   "logs JOB_ID",
		Short: "Print a job's log lines; -f follows them until the job ends",
		Example: `  outpost jobs logs -f <job id>
  outpost jobs logs --attempt 2 <job id>`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.schedulerClient()
			if err != nil {
				return err
			}
			q := url.Values{}
			if follow {
				q.Set("follow", "true")
			}
			if attempt > 0 {
				q.Set("attempt", strconv.Itoa(attempt))
			}
			if a.output != formatTable {
				q.Set("format", "ndjson")
			}
			ctx := cmd.Context()
			if !follow {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, defaultTimeout)
				defer cancel()
			}
			resp, err := c.request(ctx, http.MethodGet, jobPath(args[0], "/logs")+query(q), nil)
			if err != nil {
				return err
			}
			defer func() { _ = resp.Body.Close() }()
			if _, err := io.Copy(a.stdout, resp.Body); err != nil && ctx.Err() == nil {
				return fmt.Errorf("read logs: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines until the job has ended")
	cmd.Flags().IntVar(&attempt, "attempt", 0, "only this attempt's lines")
	return cmd
}

func (a *app) jobsCancel() *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:     "cancel JOB_ID",
		Short:   "Cancel a job",
		Example: `  outpost jobs cancel <job id> --reason "superseded"`,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.schedulerClient()
			if err != nil {
				return err
			}
			var body any
			if reason != "" {
				body = map[string]string{"reason": reason}
			}
			return a.send(cmd, c, http.MethodPost, jobPath(args[0], "/cancel"), body, "", jobColumns)
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why the job is cancelled")
	return cmd
}

func (a *app) jobsExplain() *cobra.Command {
	return &cobra.Command{
		Use:     "explain JOB_ID",
		Short:   "Say why a job is where it is (waiting, held, no runner, …)",
		Example: `  outpost jobs explain <job id>`,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.schedulerClient()
			if err != nil {
				return err
			}
			var out map[string]any
			ctx, cancel := context.WithTimeout(cmd.Context(), defaultTimeout)
			defer cancel()
			if err := c.do(ctx, http.MethodGet, jobPath(args[0], "/explain"), nil, &out); err != nil {
				return err
			}
			if a.output != formatTable {
				return a.printer().print(out, nil, nil)
			}
			return a.printExplain(out)
		},
	}
}

// printExplain writes an explanation for people: the summary, then each
// reason with its code.
func (a *app) printExplain(x map[string]any) error {
	w := a.stdout
	fmt.Fprintf(w, "Job %s in pool %s: %s (attempt %s)\n", lookup(x, "id"), lookup(x, "pool"), lookup(x, "state"), lookup(x, "attempt"))
	fmt.Fprintf(w, "%s\n", lookup(x, "summary"))
	fmt.Fprintf(w, "Runners: %s live, %s busy, %s draining", lookup(x, "runners.live"), lookup(x, "runners.busy"), lookup(x, "runners.draining"))
	if seen := lookup(x, "runners.last_seen"); seen != "" {
		fmt.Fprintf(w, ", last seen %s", seen)
	}
	fmt.Fprintln(w)
	for _, r := range list(x, "reasons") {
		m, _ := r.(map[string]any)
		_, err := fmt.Fprintf(w, "  - [%s] %s\n", lookup(m, "code"), lookup(m, "message"))
		if err != nil {
			return err
		}
	}
	return nil
}

func (a *app) jobsWait() *cobra.Command {
	var timeout, interval time.Duration
	cmd := &cobra.Command{
		Use:   "wait JOB_ID",
		Short: "Wait until a job has ended; exit code 3 if it did not succeed",
		Example: `  outpost jobs wait <job id> --timeout 10m && echo done
  outpost jobs wait <job id> || echo "failed with $?"`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.schedulerClient()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			rec, err := waitJob(ctx, c, args[0], interval)
			if err != nil {
				return err
			}
			if err := a.printer().print(rec, []any{rec}, jobColumns); err != nil {
				return err
			}
			if st := lookup(rec, "state"); st != "SUCCEEDED" {
				return fmt.Errorf("%w: job %s is %s: %s", ErrJobFailed, args[0], st, lookup(rec, "reason"))
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (exit code 1); 0 waits as long as it takes")
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "how often to look at the job")
	return cmd
}

// waitJob polls the job until it is in a terminal state. An API error
// other than a 503 (the scheduler restarting) ends the wait.
func waitJob(ctx context.Context, c *client, id string, interval time.Duration) (map[string]any, error) {
	interval = max(interval, 10*time.Millisecond)
	for {
		var rec map[string]any
		rctx, cancel := context.WithTimeout(ctx, defaultTimeout)
		err := c.do(rctx, http.MethodGet, jobPath(id), nil, &rec)
		cancel()
		var apiErr *APIError
		switch {
		case err == nil && terminalStates[lookup(rec, "state")]:
			return rec, nil
		case err != nil && ctx.Err() != nil:
			return nil, fmt.Errorf("wait for job %s: %w", id, ctx.Err())
		case errors.As(err, &apiErr) && apiErr.Status == http.StatusServiceUnavailable:
		case err != nil:
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for job %s: %w", id, ctx.Err())
		case <-time.After(interval):
		}
	}
}

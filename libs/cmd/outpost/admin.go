package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"

	"github.com/spf13/cobra"
)

var keyColumns = []column{
	col("ID", "id"), col("OWNER", "owner"), col("ROLE", "role"), col("TENANTS", "tenants"),
	col("CREATED", "created"), col("EXPIRES", "expires"), col("LAST USED", "last_used"), col("REVOKED", "revoked"),
}

func (a *app) keysCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "keys",
		Aliases: []string{"key"},
		Short:   "API keys (scheduler; admin)",
		Example: `  outpost keys create --owner ci --role operator --ttl 720h
  outpost keys list
  outpost keys revoke <key id>`,
		Args: noArgs,
	}
	var owner, role, ttl string
	var tenants []string
	create := &cobra.Command{
		Use:   "create --owner NAME --role ROLE",
		Short: "Make an API key; its secret is printed this once",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body := map[string]any{"owner": owner, "role": role}
			if len(tenants) > 0 {
				body["tenants"] = tenants
			}
			if ttl != "" {
				body["ttl"] = ttl
			}
			c, err := a.schedulerClient()
			if err != nil {
				return err
			}
			cols := append([]column{col("SECRET", "secret")}, prefixed("key.", keyColumns[:5])...)
			return a.send(cmd, c, http.MethodPost, "/api/v1/keys", body, "", cols)
		},
	}
	create.Flags().StringVar(&owner, "owner", "", "who the key is for")
	create.Flags().StringVar(&role, "role", "viewer", "viewer, operator or admin")
	create.Flags().StringSliceVar(&tenants, "tenants", nil, "tenants of the key (default: the request's tenant)")
	create.Flags().StringVar(&ttl, "ttl", "", "validity, e.g. 720h (default: no expiry)")
	cmd.AddCommand(create,
		&cobra.Command{
			Use:   "list",
			Short: "List the tenant's keys (never their secrets)",
			Args:  noArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				c, err := a.schedulerClient()
				if err != nil {
					return err
				}
				return a.get(cmd, c, "/api/v1/keys", "keys", keyColumns)
			},
		},
		&cobra.Command{
			Use:   "revoke KEY_ID",
			Short: "Revoke a key: every replica refuses it at once",
			Args:  exactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := a.schedulerClient()
				if err != nil {
					return err
				}
				return a.send(cmd, c, http.MethodDelete, "/api/v1/keys/"+url.PathEscape(args[0]), nil, "", keyColumns)
			},
		},
	)
	return cmd
}

// prefixed returns cols reading under prefix.
func prefixed(prefix string, cols []column) []column {
	out := make([]column, len(cols))
	for i, c := range cols {
		out[i] = col(c.header, prefix+c.path)
	}
	return out
}

var agentColumns = []column{
	col("ID", "id"), col("NAME", "name"), col("ROLE", "role"), col("TENANT", "tenant"), col("POOL", "pool"),
	col("ZONE", "zone"), col("EXPIRES", "expires_at"), col("REVOKED", "revoked"),
}

func (a *app) agentsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "agents",
		Aliases: []string{"agent"},
		Short:   "Broker credentials of runners and watchers (scheduler; admin of the agent's tenant)",
		Example: `  outpost agents issue --role runner --pool remote --expiry 720h --creds-file runner.creds
  outpost agents revoke <agent id>`,
		Args: noArgs,
	}
	var role, tenant, pool, zone, name, expiry, credsFile string
	issue := &cobra.Command{
		Use:   "issue --role runner|watcher",
		Short: "Issue broker credentials for one agent",
		Long: `issue asks the scheduler (served when it holds the broker's authority, agents.auth_dir)
for credentials of a runner (one tenant and pool) or a watcher (one tenant and zone).
With --creds-file the credentials are written there (mode 0600) and left out of the
printed answer.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.schedulerClient()
			if err != nil {
				return err
			}
			if tenant == "" {
				tenant = c.tenant
			}
			if tenant == "" {
				return usageError{errors.New("name the agent's tenant with --agent-tenant (or the context's --tenant)")}
			}
			body := map[string]any{"role": role, "tenant": tenant}
			for k, v := range map[string]string{"pool": pool, "zone": zone, "name": name, "expiry": expiry} {
				if v != "" {
					body[k] = v
				}
			}
			var out map[string]any
			ctx, cancel := context.WithTimeout(cmd.Context(), defaultTimeout)
			defer cancel()
			if err := c.do(ctx, http.MethodPost, "/api/v1/agents", body, &out); err != nil {
				return err
			}
			creds, _ := out["credentials"].(string)
			if credsFile != "" {
				if err := os.WriteFile(credsFile, []byte(creds), 0o600); err != nil {
					return fmt.Errorf("write credentials: %w", err)
				}
				delete(out, "credentials")
			}
			if err := a.printer().print(out, []any{out}, agentColumns); err != nil {
				return err
			}
			if credsFile == "" && a.output == formatTable {
				_, err := fmt.Fprint(a.stdout, "\n"+creds)
				return err
			}
			return nil
		},
	}
	f := issue.Flags()
	f.StringVar(&role, "role", "runner", "runner or watcher")
	f.StringVar(&tenant, "agent-tenant", "", "the agent's tenant (default: the context's tenant)")
	f.StringVar(&pool, "pool", "", "the runner's executor pool")
	f.StringVar(&zone, "zone", "", "the watcher's zone")
	f.StringVar(&name, "name", "", "the agent's name")
	f.StringVar(&expiry, "expiry", "", "validity, e.g. 720h (default 30 days)")
	f.StringVar(&credsFile, "creds-file", "", "write the credentials to this file (mode 0600)")
	cmd.AddCommand(issue, &cobra.Command{
		Use:   "revoke AGENT_ID",
		Short: "Revoke an agent's credentials: its connections are closed within seconds",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.schedulerClient()
			if err != nil {
				return err
			}
			return a.send(cmd, c, http.MethodDelete, "/api/v1/agents/"+url.PathEscape(args[0]), nil, "", agentColumns)
		},
	})
	return cmd
}

var deadLetterColumns = []column{
	col("ID", "id"), col("ROLE", "role"), col("TYPE", "type"), col("REASON CLASS", "reason_class"),
	col("ATTEMPTS", "attempts"), col("LAST", "last_time"), col("REPLAYS", "replays"), col("REASON", "reason"),
}

func deadLetterPath(id, rest string) string {
	return "/api/v1/deadletters/" + url.PathEscape(id) + rest
}

func (a *app) deadLettersCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "deadletters",
		Aliases: []string{"deadletter", "dlq"},
		Short:   "Messages the services gave up on, with their reason (scheduler)",
		Example: `  outpost deadletters list --role submit
  outpost deadletters replay 42`,
		Args: noArgs,
	}
	var role, after string
	var limit int
	list := &cobra.Command{
		Use:   "list",
		Short: "List dead letters, oldest first (a page at a time: --after the previous page's next)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.schedulerClient()
			if err != nil {
				return err
			}
			q := url.Values{}
			if role != "" {
				q.Set("role", role)
			}
			if after != "" {
				q.Set("after", after)
			}
			if limit > 0 {
				q.Set("limit", strconv.Itoa(limit))
			}
			return a.get(cmd, c, "/api/v1/deadletters"+query(q), "deadletters", deadLetterColumns)
		},
	}
	list.Flags().StringVar(&role, "role", "", "only dead letters of this role (jobs, submit, job-events, …)")
	list.Flags().StringVar(&after, "after", "", "the page after this id")
	list.Flags().IntVar(&limit, "limit", 0, "at most this many")
	cmd.AddCommand(list,
		&cobra.Command{
			Use:   "get ID",
			Short: "Show a dead letter with its headers and data",
			Args:  exactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := a.schedulerClient()
				if err != nil {
					return err
				}
				return a.get(cmd, c, deadLetterPath(args[0], ""), "", deadLetterColumns)
			},
		},
		&cobra.Command{
			Use:   "replay ID",
			Short: "Publish a dead letter again on its subject",
			Args:  exactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := a.schedulerClient()
				if err != nil {
					return err
				}
				return a.send(cmd, c, http.MethodPost, deadLetterPath(args[0], "/replay"), nil, "", deadLetterColumns)
			},
		},
	)
	return cmd
}

var runnerColumns = []column{
	col("POOL", "pool"), col("RUNNER", "id"), col("STATE", "state"), col("VERSION", "version"), col("RUNNING", "running"),
	col("CAPACITY", "capacity"), col("DRAINING", "draining"), col("LAST SEEN", "last_seen"),
}

func (a *app) runnersCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "runners",
		Aliases: []string{"runner"},
		Short:   "The fleet of runners: version, load, last heartbeat, live or lost (scheduler)",
		Example: `  outpost runners list --pool remote`,
		Args:    noArgs,
	}
	var pool string
	list := &cobra.Command{
		Use:   "list",
		Short: "List the runners heard from in the last day",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.schedulerClient()
			if err != nil {
				return err
			}
			q := url.Values{}
			if pool != "" {
				q.Set("pool", pool)
			}
			return a.get(cmd, c, "/api/v1/runners"+query(q), "runners", runnerColumns)
		},
	}
	list.Flags().StringVar(&pool, "pool", "", "only the runners of this pool")
	cmd.AddCommand(list)
	return cmd
}

var poolColumns = []column{col("POOL", "pool"), col("PAUSED", "paused"), col("PAUSED AT", "paused_at"), col("DISPATCHED", "dispatched")}

// poolListColumns show the fleet view of GET /api/v1/pools: backlog, the
// oldest queued job's age, dispatch lag (median and last over the lag
// window) and live and lost runners.
var poolListColumns = []column{
	col("POOL", "pool"), col("PAUSED", "paused"), col("BACKLOG", "backlog"), col("OLDEST QUEUED S", "oldest_queued_seconds"),
	col("LAG P50 S", "dispatch_lag.p50_seconds"), col("LAG LAST S", "dispatch_lag.last_seconds"),
	col("LIVE", "runners"), col("LOST", "runners_lost"),
}

func (a *app) poolsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "pools",
		Aliases: []string{"pool"},
		Short:   "Executor pools: backlog, dispatch lag, runners, pause and resume (scheduler)",
		Example: `  outpost pools list
  outpost pools pause remote && outpost pools resume remote`,
		Args: noArgs,
	}
	state := func(verb, short string) *cobra.Command {
		return &cobra.Command{
			Use:   verb + " POOL",
			Short: short,
			Args:  exactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := a.schedulerClient()
				if err != nil {
					return err
				}
				return a.send(cmd, c, http.MethodPost, "/api/v1/pools/"+url.PathEscape(args[0])+"/"+verb, nil, "", poolColumns)
			},
		}
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the pools: backlog, oldest queued job, dispatch lag, live and lost runners, paused",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.schedulerClient()
			if err != nil {
				return err
			}
			return a.get(cmd, c, "/api/v1/pools", "pools", poolListColumns)
		},
	}, state("pause", "Hold the pool's new jobs"), state("resume", "Dispatch the pool's held jobs and new ones"))
	return cmd
}

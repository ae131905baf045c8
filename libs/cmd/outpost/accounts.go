package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/spf13/cobra"
)

var accountColumns = []column{
	col("NAME", "name"), col("STATE", "state"), col("ZONE", "zoneId"), col("AGENT", "agent"),
	col("FAILED", "failedCount"), col("ERROR", "errorMessage"),
}

// batchColumns show the per-account results of a batch call.
var batchColumns = []column{col("NAME", "name"), col("OK", "ok"), col("STATE", "state"), col("ERROR", "error")}

func accountPath(name string) string { return "/api/v1/accounts/" + url.PathEscape(name) }

func (a *app) accountsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "accounts",
		Aliases: []string{"account"},
		Short:   "Kubernetes accounts of the Dynamic Accounts API (account-migrator)",
		Example: `  outpost accounts create account-01
  outpost accounts activate account-01
  outpost accounts get account-01
  outpost accounts create --file accounts.json   # the Armory request body, an array`,
		Args: noArgs,
	}
	var (
		file, zone, kubeconfigFile, kctx string
		serviceAccount                   bool
		namespaces                       []string
	)
	create := &cobra.Command{
		Use:   "create [NAME] [flags]",
		Short: "Add accounts (INACTIVE until activated)",
		Long: `create adds one account from its flags, or the accounts of the request body of
POST /api/v1/accounts (an array of the Armory account shape) read from --file.`,
		Example: `  outpost accounts create account-01 --zone default --service-account
  outpost accounts create account-02 --kubeconfig-file 'encryptedFile:k8s!n:kube!k:config!ns:outpost'
  outpost accounts create --file accounts.json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if (file == "") == (len(args) == 0) || len(args) > 1 {
				return usageError{errors.New("give one account NAME, or --file")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var body any
			if file != "" {
				raw, err := a.readFile(file)
				if err != nil {
					return err
				}
				if !json.Valid(raw) {
					return usageError{fmt.Errorf("%s is not JSON", file)}
				}
				body = raw
			} else {
				acc := map[string]any{"name": args[0]}
				if zone != "" {
					acc["zoneId"] = zone
				}
				if kubeconfigFile != "" {
					acc["kubeconfigFile"] = kubeconfigFile
				}
				if serviceAccount {
					acc["serviceAccount"] = true
				}
				if kctx != "" {
					acc["context"] = kctx
				}
				if len(namespaces) > 0 {
					acc["namespaces"] = namespaces
				}
				body = []any{acc}
			}
			c, err := a.accountsClient()
			if err != nil {
				return err
			}
			return a.send(cmd, c, http.MethodPost, "/api/v1/accounts", body, "", batchColumns)
		},
	}
	f := create.Flags()
	f.StringVarP(&file, "file", "f", "", "request body (JSON array of accounts); - reads standard input")
	f.StringVar(&zone, "zone", "", "zone whose watchers hold the account")
	f.StringVar(&kubeconfigFile, "kubeconfig-file", "", "kubeconfig reference the watcher resolves (file:…, encryptedFile:…)")
	f.BoolVar(&serviceAccount, "service-account", false, "the watcher's own ServiceAccount")
	f.StringVar(&kctx, "kube-context", "", "context of the kubeconfig")
	f.StringSliceVar(&namespaces, "namespace", nil, "namespaces to watch (repeatable; default all)")

	var state string
	list := &cobra.Command{
		Use:     "list",
		Short:   "List the accounts",
		Example: `  outpost accounts list --state FAILED`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.accountsClient()
			if err != nil {
				return err
			}
			q := url.Values{}
			if state != "" {
				q.Set("state", state)
			}
			return a.get(cmd, c, "/api/v1/accounts"+query(q), "", accountColumns)
		},
	}
	list.Flags().StringVar(&state, "state", "", "only accounts in this state (ACTIVE, INACTIVE, FAILED, …)")

	setState := func(use, short, to string) *cobra.Command {
		return &cobra.Command{
			Use:   use + " NAME...",
			Short: short,
			Args:  minArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				body := make([]any, len(args))
				for i, n := range args {
					body[i] = map[string]any{"name": n, "state": to}
				}
				c, err := a.accountsClient()
				if err != nil {
					return err
				}
				return a.send(cmd, c, http.MethodPatch, "/api/v1/accounts", body, "", batchColumns)
			},
		}
	}
	cmd.AddCommand(create, list,
		&cobra.Command{
			Use:   "get NAME",
			Short: "Show an account: state, zone, watcher, cluster",
			Args:  exactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := a.accountsClient()
				if err != nil {
					return err
				}
				return a.get(cmd, c, accountPath(args[0]), "", accountColumns)
			},
		},
		&cobra.Command{
			Use:   "delete NAME",
			Short: "Delete an account (its watcher releases it first)",
			Args:  exactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := a.accountsClient()
				if err != nil {
					return err
				}
				return a.send(cmd, c, http.MethodDelete, accountPath(args[0]), nil, "", batchColumns)
			},
		},
		setState("activate", "Migrate accounts to ACTIVE: a watcher of their zone takes them", "ACTIVE"),
		setState("deactivate", "Make accounts INACTIVE: their watchers release them", "INACTIVE"),
	)
	return cmd
}

func (a *app) zonesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "zones",
		Short: "Zones and their watchers (account-migrator)",
		Args:  noArgs,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the zones with live watchers",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.accountsClient()
			if err != nil {
				return err
			}
			return a.get(cmd, c, "/api/v1/zones", "zones", []column{col("ZONE", "zoneId"), col("LIVE", "live"),
				{header: "WATCHERS", value: func(r map[string]any) string { return fmt.Sprint(len(list(r, "watchers"))) }}})
		},
	})
	return cmd
}

// watcherColumns are the table columns of `watchers list`.
var watcherColumns = []column{
	col("ZONE", "zoneId"), col("WATCHER", "id"), col("STATE", "state"), col("VERSION", "version"),
	{header: "ACCOUNTS", value: func(r map[string]any) string { return fmt.Sprint(len(list(r, "accounts"))) }},
	col("LAST SEEN", "lastSeen"),
}

func (a *app) watchersCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "watchers",
		Aliases: []string{"watcher"},
		Short:   "The k8s-watcher fleet: version, accounts held, last seen, live, stopped or lost (account-migrator)",
		Args:    noArgs,
	}
	var zone, state string
	list := &cobra.Command{
		Use:   "list",
		Short: "List the watchers heard from in the last day, by zone",
		Example: `  outpost watchers list
  outpost watchers list --zone eu-1 --state lost -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.accountsClient()
			if err != nil {
				return err
			}
			q := url.Values{}
			if zone != "" {
				q.Set("zone", zone)
			}
			if state != "" {
				q.Set("state", state)
			}
			return a.get(cmd, c, "/api/v1/watchers"+query(q), "watchers", watcherColumns)
		},
	}
	list.Flags().StringVar(&zone, "zone", "", "only the watchers of this zone")
	list.Flags().StringVar(&state, "state", "", "only watchers in this state (live, stopped, lost)")
	cmd.AddCommand(list)
	return cmd
}

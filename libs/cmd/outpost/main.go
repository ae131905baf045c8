// Command outpost is the command-line client of Outpost's APIs: jobs,
// sources, pools, runners, dead letters, API keys and agent credentials on
// the scheduler, accounts, zones and watchers on the account-migrator. It keeps its
// contexts (a stack, a tenant and a credential each) in the user's config
// directory.
//
// Exit codes: 0 success, 1 error, 2 usage error, 3 a job that `jobs wait`
// waited for did not succeed.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/outposthq/outpost/libs/version"
)

// Exit codes.
const (
	exitOK        = 0
	exitError     = 1
	exitUsage     = 2
	exitJobFailed = 3
)

// usageError is a wrong invocation: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// ErrJobFailed is returned by jobs wait for a job that ended in another
// state than SUCCEEDED: exit code 3.
var ErrJobFailed = errors.New("job did not succeed")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line args and returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "Error:", err)
	var ue usageError
	switch {
	case errors.As(err, &ue) || isCobraUsage(err):
		fmt.Fprintln(stderr, "Run 'outpost --help' for usage.")
		return exitUsage
	case errors.Is(err, ErrJobFailed):
		return exitJobFailed
	default:
		return exitError
	}
}

// isCobraUsage recognises the usage errors cobra makes itself (unknown
// commands); flag and argument errors are wrapped in usageError.
func isCobraUsage(err error) bool {
	return strings.HasPrefix(err.Error(), "unknown command ")
}

// app holds the streams and the global flags of one invocation.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	configFile string
	contextArg string
	scheduler  string
	accounts   string
	tenant     string
	token      string
	output     string
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "outpost",
		Short: "Drive Outpost from the command line",
		Long: `outpost calls the Outpost APIs: jobs, sources, dead letters, API keys and agent
credentials on the scheduler; accounts, zones and watchers on the account-migrator.

Log in once per stack and tenant; each login is a context, and the current one is
used unless --context names another.

Exit codes: 0 success, 1 error (the API's message is printed), 2 usage error,
3 a job that 'jobs wait' waited for did not succeed.`,
		Example: `  outpost login --scheduler http://127.0.0.1:8080 --accounts http://127.0.0.1:8081 --api-key-file .data/admin.key
  outpost jobs submit --pool default --timeout 1m -- sh -c 'echo hello'
  outpost jobs wait <job id> && outpost jobs logs <job id>
  outpost completion bash > /etc/bash_completion.d/outpost`,
		Version:       version.Get(),
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          noArgs,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&a.configFile, "config", "", "config file (default $OUTPOST_CONFIG or <user config dir>/outpost/config.yaml)")
	pf.StringVar(&a.contextArg, "context", "", "context to use instead of the current one")
	pf.StringVar(&a.scheduler, "scheduler", "", "scheduler API URL (overrides the context's)")
	pf.StringVar(&a.accounts, "accounts", "", "account-migrator API URL (overrides the context's)")
	pf.StringVar(&a.tenant, "tenant", "", "tenant to act in (overrides the context's)")
	pf.StringVar(&a.token, "token", "", "bearer token (default $OUTPOST_TOKEN, else the context's)")
	pf.StringVarP(&a.output, "output", "o", formatTable, "output format: table, json or yaml")
	_ = root.RegisterFlagCompletionFunc("output", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return formats, cobra.ShellCompDirectiveNoFileComp
	})
	_ = root.RegisterFlagCompletionFunc("context", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		cfg, _, err := a.loadConfig()
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		return cfg.names(), cobra.ShellCompDirectiveNoFileComp
	})
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		for _, f := range formats {
			if a.output == f {
				return nil
			}
		}
		return usageError{fmt.Errorf("unknown output format %q: use table, json or yaml", a.output)}
	}
	root.AddCommand(a.loginCommand(), a.contextCommand(), a.jobsCommand(), a.sourcesCommand(),
		a.accountsCommand(), a.zonesCommand(), a.watchersCommand(), a.poolsCommand(), a.runnersCommand(), a.keysCommand(), a.agentsCommand(),
		a.deadLettersCommand())
	groups(root)
	return root
}

// groups makes every command that only holds subcommands answer a
// missing or unknown subcommand with its help and a usage error.
func groups(cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		groups(c)
	}
	if cmd.HasSubCommands() && cmd.RunE == nil && cmd.Run == nil {
		cmd.Args = noArgs
		cmd.RunE = func(cmd *cobra.Command, _ []string) error {
			_ = cmd.Help()
			return usageError{fmt.Errorf("%s needs a subcommand", cmd.CommandPath())}
		}
	}
}

// Argument checks that report usage errors (exit code 2).
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())}
	}
	return nil
}

func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

func minArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.MinimumNArgs(n)(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

func (a *app) printer() *printer { return &printer{w: a.stdout, format: a.output} }

// loadConfig reads the config file and returns it with its path.
func (a *app) loadConfig() (*Config, string, error) {
	path, err := configPath(a.configFile)
	if err != nil {
		return nil, "", err
	}
	cfg, err := loadConfig(path)
	return cfg, path, err
}

// current returns the context in use, with the flags' overrides applied.
// Without any context, the flags (and $OUTPOST_TOKEN) alone may do.
func (a *app) current() (*Context, error) {
	cfg, _, err := a.loadConfig()
	if err != nil {
		return nil, err
	}
	name := a.contextArg
	if name == "" {
		name = cfg.Current
	}
	c := &Context{}
	switch {
	case name != "" && cfg.Contexts[name] != nil:
		*c = *cfg.Contexts[name]
	case a.contextArg != "":
		return nil, fmt.Errorf("%w %q (outpost context list)", ErrUnknownContext, a.contextArg)
	}
	if a.scheduler != "" {
		c.Scheduler = a.scheduler
	}
	if a.accounts != "" {
		c.Accounts = a.accounts
	}
	if a.tenant != "" {
		c.Tenant = a.tenant
	}
	if t := os.Getenv("OUTPOST_TOKEN"); t != "" {
		c.Token = t
	}
	if a.token != "" {
		c.Token = a.token
	}
	if c.Scheduler == "" && c.Accounts == "" {
		return nil, ErrNoContext
	}
	return c, nil
}

// schedulerClient returns a client of the scheduler API.
func (a *app) schedulerClient() (*client, error) {
	c, err := a.current()
	if err != nil {
		return nil, err
	}
	if c.Scheduler == "" {
		return nil, errors.New("the context has no scheduler URL: set it with outpost login --scheduler or --scheduler")
	}
	return &client{base: c.Scheduler, token: c.Token, tenant: c.Tenant}, nil
}

// accountsClient returns a client of the account-migrator API.
func (a *app) accountsClient() (*client, error) {
	c, err := a.current()
	if err != nil {
		return nil, err
	}
	if c.Accounts == "" {
		return nil, errors.New("the context has no account-migrator URL: set it with outpost login --accounts or --accounts")
	}
	return &client{base: c.Accounts, token: c.Token, tenant: c.Tenant}, nil
}

// get calls GET path and prints the answer: rows under key as a table.
func (a *app) get(cmd *cobra.Command, c *client, path, key string, cols []column) error {
	var out any
	ctx, cancel := context.WithTimeout(cmd.Context(), defaultTimeout)
	defer cancel()
	if err := c.do(ctx, "GET", path, nil, &out); err != nil {
		return err
	}
	rows := list(out, key)
	if key == "" {
		if _, isList := out.([]any); !isList {
			rows = []any{out}
		}
	}
	return a.printer().print(out, rows, cols)
}

// send calls method path with body and prints the answer as one row (or
// rows under key).
func (a *app) send(cmd *cobra.Command, c *client, method, path string, body any, key string, cols []column) error {
	var out any
	ctx, cancel := context.WithTimeout(cmd.Context(), defaultTimeout)
	defer cancel()
	if err := c.do(ctx, method, path, body, &out); err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	rows := list(out, key)
	if key == "" {
		if _, isList := out.([]any); !isList {
			rows = []any{out}
		}
	}
	return a.printer().print(out, rows, cols)
}

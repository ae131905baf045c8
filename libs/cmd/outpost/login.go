package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/oauth2"

	"github.com/outposthq/outpost/libs/auth"
)

// ErrDeviceFlowUnsupported is returned by login --oidc-issuer for an
// issuer whose discovery document names no device authorization endpoint.
var ErrDeviceFlowUnsupported = errors.New("the issuer does not support the OAuth 2.0 device authorization grant (its discovery document has no device_authorization_endpoint): log in with an API key")

// ErrBadKey is returned for an API key that is not of the form
// opk_<id>_<secret>.
var ErrBadKey = errors.New("an API key looks like " + auth.KeyPrefix + "<id>_<secret>")

type loginOptions struct {
	name       string
	apiKey     string
	keyFile    string
	keyStdin   bool
	issuer     string
	clientID   string
	scopes     []string
	skipVerify bool
}

func (a *app) loginCommand() *cobra.Command {
	var o loginOptions
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Store a credential for a stack and tenant as a context",
		Long: `login stores the APIs' URLs, a tenant and a credential as a context in the config
file (mode 0600) and makes it the current context.

The credential is an API key (opk_<id>_<secret>, made with 'outpost keys create' or
the bootstrap key of 'make run'), checked against the API before it is stored, or
an OIDC token got with the device flow when the issuer supports it.`,
		Example: `  # The local stack of make run, with its bootstrap admin key.
  outpost login --scheduler http://127.0.0.1:8080 --accounts http://127.0.0.1:8081 --api-key-file .data/admin.key

  # A second context for another tenant; switch with outpost context use.
  echo "$KEY" | outpost login --name acme --tenant acme --scheduler https://outpost.example --api-key-stdin

  # OIDC device flow (only if the issuer offers it).
  outpost login --name sso --scheduler https://outpost.example --oidc-issuer https://idp.example --client-id outpost-cli`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.login(cmd, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.name, "name", "default", "name of the context")
	f.StringVar(&o.apiKey, "api-key", "", "API key (prefer --api-key-file or --api-key-stdin: a flag stays in the shell history)")
	f.StringVar(&o.keyFile, "api-key-file", "", "read the API key from this file")
	f.BoolVar(&o.keyStdin, "api-key-stdin", false, "read the API key from standard input")
	f.StringVar(&o.issuer, "oidc-issuer", "", "log in with the OIDC device flow of this issuer")
	f.StringVar(&o.clientID, "client-id", "", "OIDC client id for the device flow")
	f.StringSliceVar(&o.scopes, "scope", []string{"openid", "email", "groups"}, "OIDC scopes for the device flow")
	f.BoolVar(&o.skipVerify, "no-verify", false, "store the credential without checking it against the API")
	return cmd
}

func (a *app) login(cmd *cobra.Command, o loginOptions) error {
	cfg, path, err := a.loadConfig()
	if err != nil {
		return err
	}
	c := &Context{}
	if old := cfg.Contexts[o.name]; old != nil {
		*c = *old
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
	if c.Scheduler == "" && c.Accounts == "" {
		return usageError{errors.New("name the API with --scheduler (and --accounts for the account-migrator)")}
	}
	sources := 0
	for _, set := range []bool{o.apiKey != "", o.keyFile != "", o.keyStdin, o.issuer != ""} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		return usageError{errors.New("give exactly one of --api-key, --api-key-file, --api-key-stdin, --oidc-issuer")}
	}
	switch {
	case o.issuer != "":
		if o.clientID == "" {
			return usageError{errors.New("--oidc-issuer needs --client-id")}
		}
		tok, err := a.deviceFlow(cmd.Context(), o)
		if err != nil {
			return err
		}
		c.Token, c.Issuer = tok, o.issuer
	default:
		key, err := a.readKey(o)
		if err != nil {
			return err
		}
		c.Token, c.Issuer = key, ""
	}
	if !o.skipVerify {
		if err := verifyCredential(cmd.Context(), c); err != nil {
			return err
		}
	}
	cfg.Contexts[o.name] = c
	cfg.Current = o.name
	if err := cfg.save(path); err != nil {
		return err
	}
	_, err = fmt.Fprintf(a.stdout, "Logged in: context %q is current (%s)\n", o.name, path)
	return err
}

// readKey returns the API key of the flags, checked for its form.
func (a *app) readKey(o loginOptions) (string, error) {
	key := o.apiKey
	switch {
	case o.keyFile != "":
		raw, err := os.ReadFile(o.keyFile)
		if err != nil {
			return "", fmt.Errorf("read API key: %w", err)
		}
		key = string(raw)
	case o.keyStdin:
		raw, err := io.ReadAll(io.LimitReader(a.stdin, 4096))
		if err != nil {
			return "", fmt.Errorf("read API key: %w", err)
		}
		key = string(raw)
	}
	key = strings.TrimSpace(key)
	id, secret, ok := strings.Cut(strings.TrimPrefix(key, auth.KeyPrefix), "_")
	if !strings.HasPrefix(key, auth.KeyPrefix) || !ok || id == "" || secret == "" {
		return "", usageError{ErrBadKey}
	}
	return key, nil
}

// verifyCredential makes one read the credential must allow: the tenants
// it holds on the scheduler, or the zones on the account-migrator.
func verifyCredential(ctx context.Context, c *Context) error {
	ctx, cancel := context.WithTimeout(ctx, defaultTimeout)
	defer cancel()
	cl := &client{base: c.Scheduler, token: c.Token, tenant: c.Tenant}
	path := "/api/v1/tenants"
	if c.Scheduler == "" {
		cl.base, path = c.Accounts, "/api/v1/zones"
	}
	if err := cl.do(ctx, http.MethodGet, path, nil, nil); err != nil {
		return fmt.Errorf("the credential was not accepted: %w", err)
	}
	return nil
}

// deviceFlow runs the OAuth 2.0 device authorization grant (RFC 8628)
// with the issuer and returns the ID token (the API verifies it as a
// JWT), or the access token when the issuer returns no ID token.
func (a *app) deviceFlow(ctx context.Context, o loginOptions) (string, error) {
	disc, err := discover(ctx, o.issuer)
	if err != nil {
		return "", err
	}
	if disc.DeviceEndpoint == "" {
		return "", fmt.Errorf("%s: %w", o.issuer, ErrDeviceFlowUnsupported)
	}
	conf := &oauth2.Config{
		ClientID: o.clientID,
		Scopes:   o.scopes,
		Endpoint: oauth2.Endpoint{TokenURL: disc.TokenEndpoint, DeviceAuthURL: disc.DeviceEndpoint},
	}
	da, err := conf.DeviceAuth(ctx)
	if err != nil {
		return "", fmt.Errorf("device authorization: %w", err)
	}
	uri := da.VerificationURIComplete
	if uri == "" {
		uri = da.VerificationURI
	}
	fmt.Fprintf(a.stderr, "Open %s and enter the code %s\n", uri, da.UserCode)
	tok, err := conf.DeviceAccessToken(ctx, da)
	if err != nil {
		return "", fmt.Errorf("device flow: %w", err)
	}
	if id, ok := tok.Extra("id_token").(string); ok && id != "" {
		return id, nil
	}
	return tok.AccessToken, nil
}

type discovery struct {
	TokenEndpoint  string `json:"token_endpoint"`
	DeviceEndpoint string `json:"device_authorization_endpoint"`
}

// discover reads the issuer's OpenID Connect discovery document.
func discover(ctx context.Context, issuer string) (*discovery, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	u := strings.TrimRight(issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("discovery: %s answered %s", u, resp.Status)
	}
	var d discovery
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&d); err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	return &d, nil
}

func (a *app) contextCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "context",
		Aliases: []string{"contexts"},
		Short:   "List the contexts and choose the current one",
		Example: `  outpost context list
  outpost context use acme`,
		Args: noArgs,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the contexts (the current one is marked *)",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, _, err := a.loadConfig()
			if err != nil {
				return err
			}
			rows := []any{}
			data := []any{}
			for _, n := range cfg.names() {
				c := cfg.Contexts[n]
				cur := ""
				if n == cfg.Current {
					cur = "*"
				}
				kind := "api-key"
				if !strings.HasPrefix(c.Token, auth.KeyPrefix) {
					kind = "oidc"
				}
				row := map[string]any{"current": cur, "name": n, "scheduler": c.Scheduler, "accounts": c.Accounts,
					"tenant": c.Tenant, "credential": kind}
				rows = append(rows, row)
				data = append(data, row)
			}
			return a.printer().print(data, rows, []column{col("CURRENT", "current"), col("NAME", "name"),
				col("SCHEDULER", "scheduler"), col("ACCOUNTS", "accounts"), col("TENANT", "tenant"), col("CREDENTIAL", "credential")})
		},
	}, &cobra.Command{
		Use:   "use NAME",
		Short: "Make a context the current one",
		Args:  exactArgs(1),
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			cfg, _, err := a.loadConfig()
			if err != nil {
				return nil, cobra.ShellCompDirectiveError
			}
			return cfg.names(), cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(_ *cobra.Command, args []string) error {
			cfg, path, err := a.loadConfig()
			if err != nil {
				return err
			}
			if cfg.Contexts[args[0]] == nil {
				return fmt.Errorf("%w %q (outpost context list)", ErrUnknownContext, args[0])
			}
			cfg.Current = args[0]
			if err := cfg.save(path); err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.stdout, "Context %q is current\n", args[0])
			return err
		},
	})
	return cmd
}

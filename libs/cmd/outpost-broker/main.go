// Command outpost-broker runs the embedded NATS JetStream server for local
// use (make run, Tilt, end-to-end tests). Production points the services at
// an external NATS server or cluster instead.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/outposthq/outpost/libs/natsauth"
	"github.com/outposthq/outpost/libs/natsembed"
	"github.com/outposthq/outpost/libs/queue/natsjs"
	"github.com/outposthq/outpost/libs/service"
	"github.com/outposthq/outpost/libs/version"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "creds" {
		if err := issue(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "outpost-broker creds:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "outpost-broker:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:4222", "client address (host:port)")
	dataDir := flag.String("data", ".data/jetstream", "JetStream data folder")
	healthAddr := flag.String("health", "127.0.0.1:8222", "address of /healthz and /readyz")
	maxPayload := flag.Int("max-payload", 0, "largest message in bytes (0 = server default, 1 MiB)")
	logLevel := flag.String("log-level", "info", "log level")
	name := flag.String("name", "outpost-broker", "server name (stable across restarts of a cluster node)")
	clusterName := flag.String("cluster-name", "", "name of the JetStream cluster this node joins (empty: one node)")
	clusterAddr := flag.String("cluster", "", "route address of a cluster node (host:port)")
	routes := flag.String("routes", "", "comma-separated route URLs of the cluster's nodes, e.g. nats://127.0.0.1:6222")
	authDir := flag.String("auth-dir", "", "folder of the operator and accounts (made on first start); empty: no authentication (anonymous clients allowed)")
	tlsCert := flag.String("tls-cert", "", "PEM server certificate: serve TLS only")
	tlsKey := flag.String("tls-key", "", "PEM key of -tls-cert")
	tlsClientCA := flag.String("tls-client-ca", "", "PEM CAs of client certificates: require one (mTLS)")
	showVersion := version.Flag(nil)
	flag.Parse()
	if version.PrintIfRequested(showVersion, os.Stdout, "outpost-broker") {
		return nil
	}

	log, err := service.NewLogger(os.Stderr, "outpost-broker", *logLevel)
	if err != nil {
		return err
	}
	// Every message of the job path is stored and routed here: the
	// server trades memory for CPU with a higher GC target.
	service.TuneRuntime(log, service.JobPathGCPercent)
	host, portText, err := net.SplitHostPort(*listen)
	if err != nil {
		return fmt.Errorf("-listen %q: %w", *listen, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return fmt.Errorf("-listen %q: port: %w", *listen, err)
	}
	ln, err := service.Listen(*healthAddr)
	if err != nil {
		return err
	}

	opts := natsembed.Options{
		Host: host, Port: port, DataDir: *dataDir, ServerName: *name,
		MaxPayload: int32(*maxPayload), Logger: log,
	}
	if *authDir != "" {
		a, err := natsauth.Open(*authDir)
		if err != nil {
			_ = ln.Close()
			return err
		}
		opts.Auth = a.ServerAuth()
	} else {
		log.Warn("no -auth-dir: the broker accepts anonymous connections")
	}
	if *tlsCert != "" || *tlsKey != "" || *tlsClientCA != "" {
		opts.TLS = &natsembed.TLS{Cert: *tlsCert, Key: *tlsKey, ClientCA: *tlsClientCA}
	}
	if *clusterName != "" {
		if err := clusterOptions(&opts, *clusterName, *clusterAddr, *routes); err != nil {
			_ = ln.Close()
			return err
		}
	}
	srv, err := natsembed.Start(opts)
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("start embedded NATS: %w", err)
	}
	defer srv.Shutdown()
	log.Info("embedded NATS JetStream ready", "url", srv.ClientURL(), "data_dir", *dataDir, "auth", opts.Auth != nil, "tls", opts.TLS != nil)

	ready := func() error {
		if !srv.Running() || !srv.NATS().JetStreamEnabled() {
			return errors.New("JetStream is not running")
		}
		if opts.ClusterName != "" {
			// A node that lost its cluster's quorum has no meta leader
			// and cannot create or change a stream.
			if info, err := srv.NATS().Jsz(nil); err != nil || info.Meta == nil || info.Meta.Leader == "" {
				return errors.New("the JetStream cluster has no meta leader")
			}
		}
		return nil
	}
	ctx, stop := service.SignalContext(context.Background())
	defer stop()
	mux := http.NewServeMux()
	if os.Getenv(service.EnvPprof) == "true" {
		service.Profiling(mux)
	}
	h := service.OpsHandler(mux, service.NewRegistry(), ready)
	return service.Serve(ctx, log, service.NewHTTPServer(h), ln, 5*time.Second)
}

// clusterOptions makes the node part of a JetStream cluster: its route
// listener on addr and the routes of every node (its own may be listed).
func clusterOptions(opts *natsembed.Options, name, addr, routes string) error {
	if addr == "" || routes == "" {
		return errors.New("-cluster-name needs -cluster and -routes")
	}
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-cluster %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return fmt.Errorf("-cluster %q: port: %w", addr, err)
	}
	opts.ClusterName, opts.ClusterHost, opts.ClusterPort = name, host, port
	for r := range strings.SplitSeq(routes, ",") {
		if r = strings.TrimSpace(r); r != "" {
			opts.Routes = append(opts.Routes, r)
		}
	}
	return nil
}

// issue writes a credentials file for one role:
//
//	outpost-broker creds -auth-dir .data/nats-auth -role runner -tenant default -pool default -out runner.creds
//
// An existing file is kept unless -force: every start of `make run` calls
// it, and the services keep the credentials they were given.
func issue(args []string) error {
	fs := flag.NewFlagSet("creds", flag.ContinueOnError)
	authDir := fs.String("auth-dir", ".data/nats-auth", "folder of the operator and accounts (made if missing)")
	role := fs.String("role", "", "scheduler, account-migrator, runner, watcher or system")
	stack := fs.String("stack", "", "subject prefix (default outpost)")
	layout := fs.String("layout", "", "per-tenant (default) or shared")
	tenant := fs.String("tenant", "", "tenant of a runner or watcher")
	pool := fs.String("pool", "", "pool of a runner")
	zone := fs.String("zone", "", "zone of a watcher")
	name := fs.String("name", "", "user name shown by the server (default the role)")
	ttl := fs.Duration("expiry", 0, "validity, e.g. 720h (0: no expiry)")
	out := fs.String("out", "", "credentials file to write (0600)")
	force := fs.Bool("force", false, "replace an existing file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("-out is required")
	}
	if _, err := os.Stat(*out); err == nil && !*force {
		return nil
	}
	a, err := natsauth.Open(*authDir)
	if err != nil {
		return err
	}
	if *name == "" {
		*name = *role
	}
	scope := natsauth.Scope{Role: natsauth.Role(*role), Stack: *stack, Layout: natsjs.Layout(*layout), Tenant: *tenant, Pool: *pool, Zone: *zone}
	c, err := a.WriteCredentials(*out, *name, scope, *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s (user %s)\n", *out, c.ID)
	return nil
}

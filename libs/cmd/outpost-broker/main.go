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

	"github.com/outposthq/outpost/libs/natsembed"
	"github.com/outposthq/outpost/libs/service"
	"github.com/outposthq/outpost/libs/version"
)

func main() {
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
	showVersion := version.Flag(nil)
	flag.Parse()
	if version.PrintIfRequested(showVersion, os.Stdout, "outpost-broker") {
		return nil
	}

	log, err := service.NewLogger(os.Stderr, "outpost-broker", *logLevel)
	if err != nil {
		return err
	}
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
	log.Info("embedded NATS JetStream ready", "url", srv.ClientURL(), "data_dir", *dataDir)

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
	h := service.OpsHandler(http.NewServeMux(), service.NewRegistry(), ready)
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

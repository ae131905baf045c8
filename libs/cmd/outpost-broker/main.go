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
	"time"

	"github.com/outposthq/outpost/libs/natsembed"
	"github.com/outposthq/outpost/libs/service"
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
	flag.Parse()

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

	srv, err := natsembed.Start(natsembed.Options{
		Host: host, Port: port, DataDir: *dataDir, ServerName: "outpost-broker",
		MaxPayload: int32(*maxPayload), Logger: log,
	})
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
		return nil
	}
	ctx, stop := service.SignalContext(context.Background())
	defer stop()
	h := service.OpsHandler(http.NewServeMux(), service.NewRegistry(), ready)
	return service.Serve(ctx, log, service.NewHTTPServer(h), ln, 5*time.Second)
}

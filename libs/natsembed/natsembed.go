// Package natsembed runs a NATS server with JetStream inside the process.
//
// It is what `make run` uses as the default broker and what every test in the
// project uses through natstest: one node or a small cluster on loopback,
// with a data folder so that a restart keeps the streams.
package natsembed

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
)

// Defaults applied by Start.
const (
	// DefaultHost is the interface the server listens on.
	DefaultHost = "127.0.0.1"
	// DefaultPort is the standard NATS client port.
	DefaultPort = 4222
	// RandomPort asks the operating system for a free port.
	RandomPort = -1
	// DefaultStartTimeout bounds how long Start waits for the server to
	// accept connections and, in a cluster, for a JetStream meta leader.
	DefaultStartTimeout = 30 * time.Second
)

// Options configures an embedded server. The zero value runs one JetStream
// node on 127.0.0.1:4222 with its data in a temporary folder.
type Options struct {
	// Host is the interface to listen on (clients and routes). Default
	// 127.0.0.1: the embedded server is meant for loopback use.
	Host string
	// Port is the client port. 0 means DefaultPort; RandomPort (-1) picks a
	// free port, which Restart keeps.
	Port int
	// DataDir is where JetStream stores its data. Empty means a temporary
	// folder that Shutdown removes; a restart keeps it either way.
	DataDir string
	// ServerName names the node. It must be stable across restarts of a
	// clustered node (JetStream derives the peer id from it). Default
	// "outpost" for one node, "outpost-<cluster port>" in a cluster.
	ServerName string
	// ClusterName, when set, makes the node part of a cluster.
	ClusterName string
	// ClusterHost is the interface for routes; default Host.
	ClusterHost string
	// ClusterPort is the route port. 0 or RandomPort picks a free port,
	// which Restart keeps.
	ClusterPort int
	// Routes are the route URLs of the cluster's nodes, e.g.
	// "nats://127.0.0.1:6222". A node's own URL may be included.
	Routes []string
	// MaxPayload is the largest message the server accepts, in bytes.
	// 0 means the NATS default (1 MiB).
	MaxPayload int32
	// JetStreamMaxMemory and JetStreamMaxStore limit JetStream memory and
	// file storage in bytes; 0 means the server's dynamic defaults.
	JetStreamMaxMemory int64
	JetStreamMaxStore  int64
	// StartTimeout bounds how long Start waits for readiness (and for a
	// meta leader in a cluster). 0 means DefaultStartTimeout.
	StartTimeout time.Duration
	// Logger receives the server's log lines; nil keeps the server silent.
	Logger *slog.Logger
	// Debug also forwards the server's debug lines to Logger.
	Debug bool
	// Auth, when set, runs the server in operator mode: only users whose
	// JWT an account of the operator signed may connect, each with the
	// permissions in its JWT; anonymous connections are refused.
	Auth *Auth
	// TLS, when set, makes the client port serve TLS only.
	TLS *TLS
}

// Auth is the decentralized JWT configuration of a server in operator
// mode (see package natsauth, which makes and keeps these).
type Auth struct {
	// OperatorJWT is the operator's JWT, which every account JWT is
	// checked against.
	OperatorJWT string
	// SystemAccount is the public key of the system account, whose users
	// may push account updates (revocations) to the running server.
	SystemAccount string
	// Accounts maps account public keys to their JWTs, preloaded into a
	// memory resolver. Updates pushed on
	// $SYS.REQ.ACCOUNT.<key>.CLAIMS.UPDATE by a system-account user replace
	// them while the server runs; a restart starts again from this map.
	Accounts map[string]string
}

// TLS is the server side of TLS on the client port.
type TLS struct {
	// Cert and Key are PEM files of the server's certificate and key.
	Cert, Key string
	// ClientCA, when set, is a PEM file of the CAs that sign client
	// certificates, and a client without such a certificate is refused
	// (mutual TLS). Users still authenticate with their JWT.
	ClientCA string
}

// ErrAuthConfig is returned by Start for an unusable Auth or TLS.
var ErrAuthConfig = errors.New("natsembed: invalid auth or tls configuration")

// Server is a running embedded NATS server.
type Server struct {
	mu      sync.Mutex
	opts    Options // resolved: concrete ports, name, data folder
	tempDir bool    // DataDir was created by Start and is removed by Shutdown
	ns      *server.Server
}

// Start runs a server and waits until it accepts connections and, when it is
// part of a cluster, until JetStream has a meta leader. In a cluster that
// needs the other nodes to be starting too: start them concurrently.
func Start(opts Options) (*Server, error) {
	resolved, tempDir, err := resolve(opts)
	if err != nil {
		return nil, err
	}
	s := &Server{opts: resolved, tempDir: tempDir}
	if err := s.start(); err != nil {
		if tempDir {
			_ = os.RemoveAll(resolved.DataDir)
		}
		return nil, err
	}
	return s, nil
}

func resolve(opts Options) (Options, bool, error) {
	if opts.Host == "" {
		opts.Host = DefaultHost
	}
	if opts.Port == 0 {
		opts.Port = DefaultPort
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = DefaultStartTimeout
	}
	clustered := opts.ClusterName != ""
	if clustered {
		if opts.ClusterHost == "" {
			opts.ClusterHost = opts.Host
		}
		if opts.ClusterPort == 0 || opts.ClusterPort == RandomPort {
			// The route port must be known before the server starts so
			// that the node's name, and a restart, can use it.
			p, err := FreePort(opts.ClusterHost)
			if err != nil {
				return opts, false, err
			}
			opts.ClusterPort = p
		}
	}
	if opts.ServerName == "" {
		opts.ServerName = "outpost"
		if clustered {
			opts.ServerName = "outpost-" + strconv.Itoa(opts.ClusterPort)
		}
	}
	tempDir := false
	if opts.DataDir == "" {
		dir, err := os.MkdirTemp("", "natsembed-")
		if err != nil {
			return opts, false, fmt.Errorf("natsembed: create data folder: %w", err)
		}
		opts.DataDir, tempDir = dir, true
	}
	return opts, tempDir, nil
}

// FreePort returns a TCP port that was free on host a moment ago.
func FreePort(host string) (int, error) {
	if host == "" {
		host = DefaultHost
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("natsembed: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) serverOptions() (*server.Options, error) {
	o := s.opts
	so := &server.Options{
		ServerName:         o.ServerName,
		Host:               o.Host,
		Port:               o.Port,
		NoSigs:             true,
		NoLog:              o.Logger == nil,
		MaxPayload:         o.MaxPayload,
		JetStream:          true,
		StoreDir:           o.DataDir,
		JetStreamMaxMemory: o.JetStreamMaxMemory,
		JetStreamMaxStore:  o.JetStreamMaxStore,
		Debug:              o.Debug,
	}
	if o.JetStreamMaxMemory == 0 {
		so.JetStreamMaxMemory = -1
	}
	if o.JetStreamMaxStore == 0 {
		so.JetStreamMaxStore = -1
	}
	if err := authOptions(so, o.Auth); err != nil {
		return nil, err
	}
	if t := o.TLS; t != nil {
		if t.Cert == "" || t.Key == "" {
			return nil, fmt.Errorf("%w: tls needs a certificate and a key", ErrAuthConfig)
		}
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: t.Cert, KeyFile: t.Key, CaFile: t.ClientCA, Verify: t.ClientCA != ""})
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrAuthConfig, err)
		}
		so.TLSConfig, so.TLS, so.TLSVerify = tc, true, t.ClientCA != ""
		so.TLSTimeout = 5
	}
	if o.ClusterName != "" {
		so.Cluster = server.ClusterOpts{
			Name: o.ClusterName,
			Host: o.ClusterHost,
			Port: o.ClusterPort,
		}
		for _, r := range o.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("natsembed: route %q: %w", r, err)
			}
			so.Routes = append(so.Routes, u)
		}
	}
	return so, nil
}

func authOptions(so *server.Options, a *Auth) error {
	if a == nil {
		return nil
	}
	op, err := jwt.DecodeOperatorClaims(a.OperatorJWT)
	if err != nil {
		return fmt.Errorf("%w: operator jwt: %w", ErrAuthConfig, err)
	}
	if a.SystemAccount == "" {
		return fmt.Errorf("%w: no system account", ErrAuthConfig)
	}
	res := &server.MemAccResolver{}
	for pub, token := range a.Accounts {
		if err := res.Store(pub, token); err != nil {
			return fmt.Errorf("%w: account %s: %w", ErrAuthConfig, pub, err)
		}
	}
	if _, ok := a.Accounts[a.SystemAccount]; !ok {
		return fmt.Errorf("%w: the system account's jwt is not among the accounts", ErrAuthConfig)
	}
	so.TrustedOperators = []*jwt.OperatorClaims{op}
	so.SystemAccount = a.SystemAccount
	so.AccountResolver = res
	return nil
}

// start runs a server with s.opts. Callers hold s.mu or own s exclusively.
func (s *Server) start() error {
	so, err := s.serverOptions()
	if err != nil {
		return err
	}
	// A listener that fails to bind only shows as a start timeout, so
	// check the ports first (a restart may find them still held briefly).
	if err := waitBindable(s.opts.Host, s.opts.Port, 5*time.Second); err != nil {
		return err
	}
	if s.opts.ClusterName != "" {
		if err := waitBindable(s.opts.ClusterHost, s.opts.ClusterPort, 5*time.Second); err != nil {
			return err
		}
	}
	ns, err := server.NewServer(so)
	if err != nil {
		return fmt.Errorf("natsembed: new server: %w", err)
	}
	if s.opts.Logger != nil {
		ns.SetLoggerV2(slogAdapter{l: s.opts.Logger.With("component", "nats-server", "server", s.opts.ServerName)}, s.opts.Debug, false, false)
	}
	ns.Start()
	deadline := time.Now().Add(s.opts.StartTimeout)
	if !ns.ReadyForConnections(s.opts.StartTimeout) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return fmt.Errorf("natsembed: server %s not ready for connections within %s", s.opts.ServerName, s.opts.StartTimeout)
	}
	if s.opts.ClusterName != "" {
		if err := waitMetaLeader(ns, deadline); err != nil {
			ns.Shutdown()
			ns.WaitForShutdown()
			return err
		}
	}
	// Keep the ports the OS picked so that a restart listens on them again.
	if a, ok := ns.Addr().(*net.TCPAddr); ok {
		s.opts.Port = a.Port
	}
	s.ns = ns
	return nil
}

func waitMetaLeader(ns *server.Server, deadline time.Time) error {
	for {
		if info, err := ns.Jsz(nil); err == nil && info.Meta != nil && info.Meta.Leader != "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("natsembed: no JetStream meta leader for %s before the start timeout", ns.Name())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// ClientURL is the URL clients connect to, e.g. "nats://127.0.0.1:4222"
// ("tls://…" when the server serves TLS).
func (s *Server) ClientURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	scheme := "nats://"
	if s.opts.TLS != nil {
		scheme = "tls://"
	}
	return scheme + net.JoinHostPort(s.opts.Host, strconv.Itoa(s.opts.Port))
}

// ClusterURL is the route URL of a clustered node, or "" for one node.
func (s *Server) ClusterURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.ClusterName == "" {
		return ""
	}
	return "nats://" + net.JoinHostPort(s.opts.ClusterHost, strconv.Itoa(s.opts.ClusterPort))
}

// Name is the server name.
func (s *Server) Name() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opts.ServerName
}

// DataDir is the JetStream data folder.
func (s *Server) DataDir() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opts.DataDir
}

// Options returns the resolved options: concrete ports, name and data folder.
func (s *Server) Options() Options {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.opts
	o.Routes = append([]string(nil), o.Routes...)
	return o
}

// Running reports whether the server is up.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ns != nil && s.ns.Running()
}

// NATS returns the underlying nats-server, or nil while it is shut down.
// It is meant for tests that need server internals (e.g. Jsz).
func (s *Server) NATS() *server.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ns
}

// Shutdown stops the server, waits until it is down and removes the data
// folder if Start created it. It is safe to call more than once.
func (s *Server) Shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stop()
	if s.tempDir {
		_ = os.RemoveAll(s.opts.DataDir)
		s.tempDir = false
	}
}

// Stop stops the server and waits until it is down but keeps its data, so
// that Restart can bring it back. It is safe to call more than once.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stop()
}

func (s *Server) stop() {
	if s.ns == nil {
		return
	}
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
	s.ns = nil
}

// ErrShutdown is returned by Restart after Shutdown removed the data.
var ErrShutdown = errors.New("natsembed: server was shut down")

// Restart stops the server if it is running and starts it again on the same
// ports, name and data folder, so that streams, consumers and messages
// survive. Clients reconnect on their own.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.DataDir == "" {
		return ErrShutdown
	}
	if _, err := os.Stat(s.opts.DataDir); err != nil {
		return fmt.Errorf("%w: data folder: %w", ErrShutdown, err)
	}
	s.stop()
	return s.start()
}

// waitBindable waits until host:port can be listened on. Port RandomPort
// is always bindable.
func waitBindable(host string, port int, timeout time.Duration) error {
	if port <= 0 {
		return nil
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	deadline := time.Now().Add(timeout)
	for {
		l, err := net.Listen("tcp", addr)
		if err == nil {
			_ = l.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("natsembed: listen on %s: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// JoinURLs returns the client URLs of servers as one comma-separated NATS
// URL, the form nats.Connect and natsjs.Config.URL accept.
func JoinURLs(servers ...*Server) string {
	urls := make([]string, 0, len(servers))
	for _, s := range servers {
		urls = append(urls, s.ClientURL())
	}
	return strings.Join(urls, ",")
}

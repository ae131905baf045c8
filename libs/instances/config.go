// Package instances is how the control plane's replicas (scheduler and
// account-migrator) know of each other without calling each other: every
// replica publishes an InstanceHeartbeat on
// "<stack>.<tenant>.instances.<service>.<replica>" every interval
// (Heartbeater), and a Tracker follows those subjects and lists the
// replicas heard from within LiveIntervals intervals, as Armory's
// GET /armory/clouddrivers does.
package instances

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"time"

	"github.com/outposthq/outpost/libs/queue"
)

// ErrInvalid is returned by Config.Validate for an unusable setting.
var ErrInvalid = errors.New("invalid instance setting")

// DefaultInterval is the heartbeat interval when none is configured.
const DefaultInterval = 10 * time.Second

// Config is a replica's identity as its heartbeats advertise it.
type Config struct {
	// ID names the replica; empty means the host name (a pod's name in
	// Kubernetes).
	ID string `yaml:"id" env:"OUTPOST_INSTANCE_ID"`
	// BaseURL is the API address the replica advertises, e.g. a
	// Service's "http://outpost-account-migrator:8081"; empty means
	// http:// and the listen address (the host name for a wildcard host).
	BaseURL string `yaml:"base_url" env:"OUTPOST_INSTANCE_BASE_URL"`
	// HeartbeatInterval is how often the replica publishes its heartbeat;
	// it is listed for LiveIntervals of them.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval" env:"OUTPOST_INSTANCE_HEARTBEAT_INTERVAL"`
}

// DefaultConfig is the configuration used when nothing is set.
func DefaultConfig() Config { return Config{HeartbeatInterval: DefaultInterval} }

// Validate reports the first unusable value.
func (c Config) Validate() error {
	if c.HeartbeatInterval <= 0 {
		return fmt.Errorf("%w: instance.heartbeat_interval must be positive", ErrInvalid)
	}
	if c.BaseURL != "" {
		u, err := url.Parse(c.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%w: instance.base_url %q: want an absolute http(s) URL", ErrInvalid, c.BaseURL)
		}
	}
	return nil
}

// Resolve fills the ID and the BaseURL left empty: the host name, and
// http:// with listen (its host replaced, when it is a wildcard or empty,
// by the host's first non-loopback address, a pod's IP as Armory lists
// it, or else the host name).
func (c Config) Resolve(listen string) Config {
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	if c.ID == "" {
		c.ID = host
	}
	if c.BaseURL == "" {
		h, port, err := net.SplitHostPort(listen)
		if err != nil {
			h, port = listen, ""
		}
		if ip := net.ParseIP(h); h == "" || ip != nil && ip.IsUnspecified() {
			h = hostAddress(host)
		}
		if port == "" {
			c.BaseURL = "http://" + h
		} else {
			c.BaseURL = "http://" + net.JoinHostPort(h, port)
		}
	}
	return c
}

// Token is the subject token of a replica id: the id itself when it is a
// valid token, else "x" and a hash of it (a host name with dots).
func Token(id string) string {
	if queue.ValidToken(id) {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return "x" + hex.EncodeToString(sum[:12])
}

// hostAddress is the first non-loopback unicast address of the host's
// interfaces (IPv4 first), or name when there is none.
func hostAddress(name string) string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return name
	}
	var v6 string
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok || n.IP.IsLoopback() || !n.IP.IsGlobalUnicast() {
			continue
		}
		if n.IP.To4() != nil {
			return n.IP.String()
		}
		if v6 == "" {
			v6 = n.IP.String()
		}
	}
	if v6 != "" {
		return v6
	}
	return name
}

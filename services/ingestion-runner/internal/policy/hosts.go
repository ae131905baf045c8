package policy

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// ValidHostPattern tells whether pattern is usable in policy.allowed_hosts:
// "*", a host name or IP, or "*." and a domain, each with an optional
// ":port" or ":*".
func ValidHostPattern(pattern string) error {
	if pattern == "*" {
		return nil
	}
	host, port := splitHostPort(pattern)
	if port != "" && port != "*" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("host pattern %q: port %q is not a number from 1 to 65535 or *", pattern, port)
		}
	}
	h := strings.TrimPrefix(host, "*.")
	if h == "" || strings.ContainsAny(h, "*/@?#$ \t") {
		return fmt.Errorf("host pattern %q: want host, host:port, *.domain or *.domain:port", pattern)
	}
	return nil
}

// splitHostPort splits "host:port", "[v6]:port", "host" and "v6" (more
// than one colon, no brackets: no port).
func splitHostPort(s string) (host, port string) {
	if h, p, err := net.SplitHostPort(s); err == nil {
		return strings.ToLower(h), p
	}
	return strings.ToLower(strings.Trim(s, "[]")), ""
}

// hostAllowed matches host and port (port "" when the address names none
// and defaultPort is unknown) against the patterns.
func (p *Policy) hostAllowed(host, port string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, pat := range p.Hosts {
		if pat == "*" {
			return true
		}
		ph, pp := splitHostPort(pat)
		if pp != "" && pp != "*" && pp != port {
			continue
		}
		if d, ok := strings.CutPrefix(ph, "*."); ok {
			if strings.HasSuffix(host, "."+d) {
				return true
			}
			continue
		}
		if ph == host {
			return true
		}
	}
	return false
}

// CheckAddress checks a database source's host_port (what names the
// rule: "source postgres") against Hosts. The address must be written
// literally: a host resolved from a secret would be checked only after
// that secret was read.
func (p *Policy) CheckAddress(what, hostPort, defaultPort string) error {
	if strings.Contains(hostPort, "$") {
		return refused("%s host_port must be written literally, without ${NAME}, when policy.allowed_hosts applies", what)
	}
	host, port := splitHostPort(hostPort)
	if port == "" {
		port = defaultPort
	}
	if host == "" {
		return refused("%s has no host", what)
	}
	if !p.hostAllowed(host, port) {
		return refused("%s host %s is not in policy.allowed_hosts", what, joinHostPort(host, port))
	}
	return nil
}

// CheckURL checks the host of an http or https URL as written in the job:
// its scheme and authority must be literal (a ${NAME} may appear in the
// path or query only, which goes to the host already checked).
func (p *Policy) CheckURL(what, raw string) error {
	rest, defaultPort := "", ""
	switch lower := strings.ToLower(raw); {
	case strings.HasPrefix(lower, "https://"):
		rest, defaultPort = raw[len("https://"):], "443"
	case strings.HasPrefix(lower, "http://"):
		rest, defaultPort = raw[len("http://"):], "80"
	default:
		return refused("%s URL must start with http:// or https:// written literally", what)
	}
	authority := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority = rest[:i]
	}
	if strings.Contains(authority, "$") {
		return refused("%s URL host must be written literally, without ${NAME}", what)
	}
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		authority = authority[i+1:]
	}
	host, port := splitHostPort(authority)
	if port == "" {
		port = defaultPort
	}
	if host == "" {
		return refused("%s URL has no host", what)
	}
	if !p.hostAllowed(host, port) {
		return refused("%s host %s is not in policy.allowed_hosts", what, joinHostPort(host, port))
	}
	return nil
}

func joinHostPort(host, port string) string {
	if port == "" {
		return host
	}
	return net.JoinHostPort(host, port)
}

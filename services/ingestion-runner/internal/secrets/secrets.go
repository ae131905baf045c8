// Package secrets resolves the ${NAME} references of a job on the runner, in
// the customer network, so secret values never travel through the control
// plane. Values come from an ordered list of providers; a job sees the
// first provider that knows the name.
package secrets

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// ErrUnknownSecret is returned when no provider knows a referenced name. The
// job cannot succeed on a retry, so it fails at once; the error names the
// secret, never a value.
var ErrUnknownSecret = errors.New("unknown secret")

// ErrInvalidReference is returned for a malformed reference: an unclosed
// "${" or a name outside [A-Za-z_][A-Za-z0-9_.-]*.
var ErrInvalidReference = errors.New("invalid secret reference")

// Provider looks secret values up by name. Lookup returns ok=false when the
// provider does not know the name and an error only when it could not tell
// (I/O, network), which makes the job retryable. Kubernetes Secrets or AWS
// Secrets Manager providers plug in here.
type Provider interface {
	// Name identifies the provider in logs.
	Name() string
	Lookup(ctx context.Context, name string) (value string, ok bool, err error)
}

// Env reads the runner's environment, but only for names that start with
// one of Prefixes: the runner's own credentials stay out of a job's reach.
type Env struct {
	Prefixes []string
	// LookupEnv is os.LookupEnv when nil.
	LookupEnv func(string) (string, bool)
}

// Name implements Provider.
func (e Env) Name() string { return "env" }

// Lookup implements Provider.
func (e Env) Lookup(_ context.Context, name string) (string, bool, error) {
	allowed := false
	for _, p := range e.Prefixes {
		if p != "" && strings.HasPrefix(name, p) {
			allowed = true
			break
		}
	}
	if !allowed {
		return "", false, nil
	}
	lookup := e.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	v, ok := lookup(name)
	return v, ok, nil
}

// Dir reads one file per secret from a directory, the layout of a mounted
// Kubernetes Secret. Files are read at every lookup, so a rotated value is
// picked up by the next job without a restart.
type Dir struct {
	Path string
}

// Name implements Provider.
func (d Dir) Name() string { return "dir" }

// Lookup implements Provider. A single trailing newline is dropped, because
// files written with echo or an editor carry one the secret never had.
func (d Dir) Lookup(_ context.Context, name string) (string, bool, error) {
	if !validName(name) {
		return "", false, nil
	}
	// os.Root keeps a symlink from leading outside the directory, while the
	// ..data links of a Kubernetes Secret volume (inside it) still work.
	root, err := os.OpenRoot(d.Path)
	if err != nil {
		return "", false, fmt.Errorf("open secrets dir: %w", err)
	}
	defer root.Close()
	raw, err := root.ReadFile(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("read secret %q: %w", name, err)
	}
	v := strings.TrimSuffix(string(raw), "\n")
	v = strings.TrimSuffix(v, "\r")
	return v, true, nil
}

// Resolver expands references against its providers, in order.
type Resolver struct {
	Providers []Provider
	// Allow, when set, is asked before any provider is: a name it refuses
	// is never looked up, and its error ends the expansion. The runner's
	// policy (which secret names its pool may resolve) plugs in here.
	Allow func(name string) error
}

// Session resolves the references of one job. Each name is looked up once,
// so a job sees one value per name even if a file rotates mid-way, and the
// session knows every value it handed out for redaction.
type Session struct {
	providers []Provider
	allow     func(name string) error
	resolved  map[string]string
	// defined are values the runner itself provides (not secrets, not
	// masked), such as OUTPOST_RECIPE_FILE.
	defined map[string]string
}

// Define makes ${name} resolve to value ahead of the providers. The value
// is not a secret: it is not masked.
func (s *Session) Define(name, value string) {
	if s.defined == nil {
		s.defined = map[string]string{}
	}
	s.defined[name] = value
}

// NewSession starts resolving for one job.
func (r *Resolver) NewSession() *Session {
	return &Session{providers: r.Providers, allow: r.Allow, resolved: map[string]string{}}
}

// Values returns every value resolved so far.
func (s *Session) Values() []string {
	out := make([]string, 0, len(s.resolved))
	for _, v := range s.resolved {
		out = append(out, v)
	}
	return out
}

// Expand replaces each ${NAME} in in with its value. "$${" is a literal
// "${"; any other "$" is kept as it is.
func (s *Session) Expand(ctx context.Context, in string) (string, error) {
	return scan(in, func(name string) (string, error) { return s.lookup(ctx, name) })
}

// References returns the names in, in order of appearance, as Expand
// would look them up, without resolving any: the runner's policy checks
// them all before the first is resolved.
func References(in string) ([]string, error) {
	var names []string
	_, err := scan(in, func(name string) (string, error) {
		names = append(names, name)
		return "", nil
	})
	if err != nil {
		return nil, err
	}
	return names, nil
}

// scan is the one parser of references, for Expand and References.
func scan(in string, value func(name string) (string, error)) (string, error) {
	if !strings.Contains(in, "${") {
		return in, nil
	}
	var b strings.Builder
	for i := 0; i < len(in); {
		if strings.HasPrefix(in[i:], "$${") {
			b.WriteString("${")
			i += 3
			continue
		}
		if !strings.HasPrefix(in[i:], "${") {
			b.WriteByte(in[i])
			i++
			continue
		}
		end := strings.IndexByte(in[i+2:], '}')
		if end < 0 {
			return "", fmt.Errorf("%w: unclosed \"${\"", ErrInvalidReference)
		}
		name := in[i+2 : i+2+end]
		if !validName(name) {
			return "", fmt.Errorf("%w: name %q", ErrInvalidReference, name)
		}
		v, err := value(name)
		if err != nil {
			return "", err
		}
		b.WriteString(v)
		i += 2 + end + 1
	}
	return b.String(), nil
}

func (s *Session) lookup(ctx context.Context, name string) (string, error) {
	if v, ok := s.defined[name]; ok {
		return v, nil
	}
	if v, ok := s.resolved[name]; ok {
		return v, nil
	}
	if s.allow != nil {
		if err := s.allow(name); err != nil {
			return "", err
		}
	}
	for _, p := range s.providers {
		v, ok, err := p.Lookup(ctx, name)
		if err != nil {
			return "", fmt.Errorf("secret %q from %s provider: %w", name, p.Name(), err)
		}
		if ok {
			s.resolved[name] = v
			return v, nil
		}
	}
	return "", fmt.Errorf("%w %q", ErrUnknownSecret, name)
}

// validName also keeps names usable as file names: no separators, no "..".
func validName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	for i, c := range name {
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case i > 0 && (c >= '0' && c <= '9' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// Package policy is the runner's own veto on what a job may do, owned by
// the customer and read from the runner's configuration: which task kinds
// run, which sinks records go to, which hosts a sink or a database source
// may reach, which secret names the runner's pool may resolve, which
// environment variables a command may set, and where the file sink writes.
//
// Everything is checked on the job as the control plane sent it, before
// the first ${NAME} is resolved: a job the policy refuses fails at once,
// without retries, and no secret of it is ever looked up. So a control
// plane (or whoever can publish on its subjects) cannot send a resolved
// secret to a host of its choosing.
package policy

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// ErrRefused is wrapped by every refusal; the message names the rule,
// e.g. "policy: sink http host evil.example.com is not in
// policy.allowed_hosts".
var ErrRefused = errors.New("policy")

// Task kinds and sink types a policy can name.
var (
	TaskKinds = []string{"noop", "command", "ingest", "assertion", "kubernetes"}
	SinkTypes = []string{"outpost", "console", "file", "http", "datahub-rest"}
)

// deniedEnv are the variables a job may never set: they change what the
// dynamic loader, a shell or an interpreter loads or runs before the
// allowlisted command does anything, or where it looks for programs.
var deniedEnv = []string{
	"PATH", "IFS", "ENV", "BASH_ENV", "SHELLOPTS", "BASHOPTS", "PS4", "PROMPT_COMMAND", "CDPATH",
	"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "PYTHONINSPECT",
	"NODE_OPTIONS", "NODE_PATH", "PERL5LIB", "PERL5OPT", "PERLLIB", "RUBYLIB", "RUBYOPT",
	"JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "CLASSPATH",
	"GCONV_PATH", "HOSTALIASES", "LOCALDOMAIN", "RES_OPTIONS", "RESOLV_HOST_CONF", "NLSPATH",
	"GIT_SSH_COMMAND", "GIT_EXEC_PATH", "OUTPOST_RECIPE_FILE",
}

// deniedEnvPrefixes cover whole families: the dynamic loaders of Linux and
// macOS, and bash's exported functions.
var deniedEnvPrefixes = []string{"LD_", "DYLD_", "BASH_FUNC_"}

// Policy is the runner's policy for one pool.
type Policy struct {
	// TaskKinds a job may be of.
	TaskKinds []string
	// Sinks an ingest recipe may write to.
	Sinks []string
	// Hosts are "host" or "host:port" patterns ("*.example.com",
	// "db.internal:5432", "*") that http and datahub-rest sinks and
	// database sources may reach. Empty: none.
	Hosts []string
	// Secrets are the name patterns (path.Match: "PG_*") the pool may
	// resolve. Empty: none.
	Secrets []string
	// DeniedEnv are variables refused on top of the built-in list.
	DeniedEnv []string
	// FileSinkDir is the only directory the file sink writes under.
	// Empty: the file sink is refused.
	FileSinkDir string
}

func refused(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrRefused}, args...)...)
}

// CheckKind refuses a task kind outside TaskKinds.
func (p *Policy) CheckKind(kind string) error {
	if !slices.Contains(p.TaskKinds, kind) {
		return refused("task kind %s is not in policy.allowed_task_kinds", kind)
	}
	return nil
}

// CheckSecret refuses a secret name none of Secrets matches.
func (p *Policy) CheckSecret(name string) error {
	for _, pat := range p.Secrets {
		if ok, _ := path.Match(pat, name); ok {
			return nil
		}
	}
	return refused("secret %s is not in policy.secrets for this pool", name)
}

// CheckSecrets checks every name before any is resolved.
func (p *Policy) CheckSecrets(names []string) error {
	for _, n := range names {
		if err := p.CheckSecret(n); err != nil {
			return err
		}
	}
	return nil
}

// CheckEnv refuses an environment variable a job may not set. Names are
// compared in upper case: refusing "Path" too costs nothing.
func (p *Policy) CheckEnv(name string) error {
	up := strings.ToUpper(name)
	for _, pre := range deniedEnvPrefixes {
		if strings.HasPrefix(up, pre) {
			return refused("environment variable %s is refused (prefix %s)", name, pre)
		}
	}
	if slices.Contains(deniedEnv, up) {
		return refused("environment variable %s is refused", name)
	}
	for _, d := range p.DeniedEnv {
		if strings.EqualFold(d, name) {
			return refused("environment variable %s is in policy.denied_env", name)
		}
	}
	return nil
}

// CheckSink refuses a sink type outside Sinks.
func (p *Policy) CheckSink(typ string) error {
	if !slices.Contains(p.Sinks, typ) {
		return refused("sink %s is not in policy.allowed_sinks", typ)
	}
	return nil
}

// FileTarget returns where the file sink may write filename: its path
// relative to FileSinkDir. A relative filename is taken under the
// directory; ".." and symbolic links may not lead out of it. The sink
// opens the result through os.Root, which holds the same line at the
// moment of writing.
func (p *Policy) FileTarget(filename string) (string, error) {
	if p.FileSinkDir == "" {
		return "", refused("sink file is refused: policy.file_sink_dir is not set")
	}
	if strings.Contains(filename, "${") {
		return "", refused("sink file filename must be written literally, without ${NAME}")
	}
	dir := filepath.Clean(p.FileSinkDir)
	target := filename
	if !filepath.IsAbs(target) {
		target = filepath.Join(dir, target)
	}
	target = filepath.Clean(target)
	rel, err := filepath.Rel(dir, target)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", refused("sink file %s is not under policy.file_sink_dir %s", filename, dir)
	}
	// The deepest part of the path that exists must still be inside the
	// directory once its links are followed.
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", refused("policy.file_sink_dir %s: %v", dir, err)
	}
	for probe := target; probe != dir; probe = filepath.Dir(probe) {
		if _, err := os.Lstat(probe); errors.Is(err, os.ErrNotExist) {
			continue
		}
		// A link whose target is missing fails here too: where it would
		// create the file is not known to be inside.
		real, err := filepath.EvalSymlinks(probe)
		if err != nil {
			return "", refused("sink file %s: cannot follow its links inside policy.file_sink_dir %s", filename, dir)
		}
		if r, err := filepath.Rel(realDir, real); err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
			return "", refused("sink file %s leads out of policy.file_sink_dir %s through a symbolic link", filename, dir)
		}
		break
	}
	return rel, nil
}

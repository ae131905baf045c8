package policy

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/outposthq/outpost/libs/ingest/recipe"
	ingestv1 "github.com/outposthq/outpost/proto/outpost/ingest/v1"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/secrets"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/tasks"
)

// Guard runs Task only for a job the policy allows. A refusal is
// permanent: the job fails with the rule's name and is not retried.
type Guard struct {
	Policy *Policy
	Kind   string
	Task   tasks.Task
}

// Run implements tasks.Task.
func (g Guard) Run(ctx context.Context, in tasks.Input, out tasks.Output) tasks.Result {
	if err := g.Policy.CheckJob(g.Kind, in.Spec); err != nil {
		out.Log(err.Error())
		return tasks.Result{Err: tasks.Permanent(err)}
	}
	return g.Task.Run(ctx, in, out)
}

// Default ports of the database sources, for host:port patterns.
var sourcePorts = recipe.DefaultPorts

// postgresRouting are connection options that would pick another server
// than host_port names.
var postgresRouting = []string{"host", "hostaddr", "port", "service", "servicefile"}

// CheckJob checks everything a job of kind asks for against the policy,
// as the control plane sent it: nothing is resolved. A recipe the task
// could not parse is left to the task, which refuses it before resolving.
func (p *Policy) CheckJob(kind string, spec *jobsv1.JobSpec) error {
	if err := p.CheckKind(kind); err != nil {
		return err
	}
	t := spec.GetTask()
	switch kind {
	case "command":
		return p.checkCommand(t.GetCommand())
	case "ingest":
		in := t.GetIngest()
		r, err := recipe.Parse([]byte(in.GetRecipe()), format(in.GetFormat()))
		if err != nil {
			return nil
		}
		if err := p.checkSource(r.Source.Type, r.Source.Config, false); err != nil {
			return err
		}
		if err := p.checkSink(r.Sink.Type, r.Sink.Config, false); err != nil {
			return err
		}
		tree := map[string]any{"source": r.Source.Config, "sink": r.Sink.Config}
		// Transformer configs are resolved too; datahub_api and the other
		// top-level keys are not used, so never resolved.
		for i, tr := range r.Transformers {
			tree[fmt.Sprintf("transformers[%d]", i)] = tr.Config
		}
		return p.checkTreeSecrets(tree)
	case "assertion":
		a := t.GetAssertion()
		src, err := recipe.ParseSource([]byte(a.GetSource()), format(a.GetFormat()))
		if err != nil {
			return nil
		}
		if err := p.checkSource(src.Type, src.Config, false); err != nil {
			return err
		}
		return p.checkTreeSecrets(src.Config)
	case "kubernetes":
		return p.checkKubernetes(t.GetKubernetes())
	}
	return nil
}

// checkKubernetes checks the ${NAME}s of a kubernetes task: its values go
// into a Secret of the job's pod, so the names must be the pool's. The
// container's environment is the pod's, not this runner's process's, so
// the environment denylist does not apply.
func (p *Policy) checkKubernetes(k *jobsv1.KubernetesTask) error {
	values := append(slices.Clone(k.GetCommand()), k.GetArgs()...)
	for _, key := range slices.Sorted(maps.Keys(k.GetEnv())) {
		values = append(values, k.GetEnv()[key])
	}
	for _, v := range values {
		names, err := secrets.References(v)
		if err != nil {
			continue // the task refuses it before resolving anything
		}
		if err := p.CheckSecrets(names); err != nil {
			return err
		}
	}
	return nil
}

func (p *Policy) checkCommand(c *jobsv1.CommandTask) error {
	env := c.GetEnv()
	keys := slices.Sorted(maps.Keys(env))
	for _, k := range keys {
		if err := p.CheckEnv(k); err != nil {
			return err
		}
	}
	if rt := c.GetRecipe(); rt != nil {
		tree, err := recipe.Decode([]byte(rt.GetRecipe()), format(rt.GetFormat()))
		if err == nil {
			if err := p.checkCommandRecipe(tree); err != nil {
				return err
			}
			if err := p.checkTreeSecrets(tree); err != nil {
				return err
			}
		}
	}
	values := slices.Clone(c.GetArgs())
	for _, k := range keys {
		values = append(values, env[k])
	}
	for _, v := range values {
		names, err := secrets.References(v)
		if err != nil {
			continue // the task refuses it before resolving anything
		}
		if err := p.CheckSecrets(names); err != nil {
			return err
		}
	}
	return nil
}

// checkCommandRecipe checks the recipe an external tool will read: its
// source and sink, where it has them.
func (p *Policy) checkCommandRecipe(tree map[string]any) error {
	section := func(key string) (string, map[string]any, bool) {
		s, ok := tree[key].(map[string]any)
		if !ok {
			return "", nil, false
		}
		typ, _ := s["type"].(string)
		cfg, _ := s["config"].(map[string]any)
		return typ, cfg, true
	}
	if typ, cfg, ok := section("source"); ok {
		if err := p.checkSource(typ, cfg, true); err != nil {
			return err
		}
	}
	if typ, cfg, ok := section("sink"); ok {
		if err := p.checkSink(typ, cfg, true); err != nil {
			return err
		}
	}
	return nil
}

func (p *Policy) checkTreeSecrets(tree any) error {
	names, err := secrets.TreeReferences("", tree)
	if err != nil {
		return nil // the task refuses it before resolving anything
	}
	return p.CheckSecrets(names)
}

// checkSource checks a source's database host. An external tool's
// source this runner does not know cannot be checked, so it runs only
// when every host is allowed ("*").
func (p *Policy) checkSource(typ string, cfg map[string]any, external bool) error {
	port, known := sourcePorts[typ]
	if !known {
		if external && !slices.Contains(p.Hosts, "*") {
			return refused("source %s cannot be checked against policy.allowed_hosts (only postgres and mysql can; or allow \"*\")", typ)
		}
		return nil
	}
	what := "source " + typ
	// A source without host_port reaches localhost, as DataHub's.
	hp := recipe.HostPort(typ, cfg)
	if err := p.CheckAddress(what, hp, port); err != nil {
		return err
	}
	if typ == "postgres" {
		keys := slices.Collect(maps.Keys(asMap(cfg["options"])))
		// A sqlalchemy_uri's query becomes options too.
		if uri, _ := cfg["sqlalchemy_uri"].(string); uri != "" {
			if _, query, found := strings.Cut(uri, "?"); found {
				q, _ := url.ParseQuery(query)
				keys = append(keys, slices.Collect(maps.Keys(q))...)
			}
		}
		for _, k := range keys {
			if slices.Contains(postgresRouting, strings.ToLower(k)) {
				return refused("%s option %s is refused: the server is named by host_port only", what, k)
			}
		}
	}
	return nil
}

// checkSink checks the sink type and where it sends records. An
// external tool resolves a relative file name against its own working
// directory, so there it must be absolute.
func (p *Policy) checkSink(typ string, cfg map[string]any, external bool) error {
	if err := p.CheckSink(typ); err != nil {
		return err
	}
	str := func(k string) string { s, _ := cfg[k].(string); return s }
	switch typ {
	case "http":
		return p.CheckURL("sink http", str("url"))
	case "datahub-rest":
		return p.CheckURL("sink datahub-rest", str("server"))
	case "file":
		name := str("filename")
		if external && !strings.HasPrefix(name, "/") {
			return refused("sink file %s must be an absolute path under policy.file_sink_dir", name)
		}
		_, err := p.FileTarget(name)
		return err
	}
	return nil
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func format(f ingestv1.RecipeFormat) recipe.Format {
	switch f {
	case ingestv1.RecipeFormat_RECIPE_FORMAT_JSON:
		return recipe.FormatJSON
	case ingestv1.RecipeFormat_RECIPE_FORMAT_YAML:
		return recipe.FormatYAML
	}
	return recipe.FormatAuto
}

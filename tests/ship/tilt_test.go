package ship

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
	"go.starlark.net/syntax"
	"go.yaml.in/yaml/v3"
)

// tiltRun is what evaluating the Tiltfile declared, through the builtins
// below: Tilt's own, recording their arguments instead of acting.
type tiltRun struct {
	localResources map[string]map[string]starlark.Value // name -> kwargs
	customBuilds   map[string]map[string]starlark.Value // image ref -> kwargs
	k8sResources   map[string]map[string]starlark.Value // workload -> kwargs
	helmCharts     []map[string]starlark.Value          // chart kwargs, "chart" included
	yamls          []string                             // k8s_yaml blobs
	locals         []string                             // local() commands
}

// record makes a builtin that hands into its first positional argument (when
// a string) and its keyword arguments, positional ones also as "_arg<i>".
// A keyword Tilt's builtin does not take is an error, as in Tilt.
func record(name string, into func(first string, kwargs map[string]starlark.Value) (starlark.Value, error)) *starlark.Builtin {
	return starlark.NewBuiltin(name, func(_ *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		kw := map[string]starlark.Value{}
		for _, p := range kwargs {
			k := string(p[0].(starlark.String))
			if !slices.Contains(tiltKeywords[name], k) {
				return nil, fmt.Errorf("%s: unexpected keyword argument %q", name, k)
			}
			kw[k] = p[1]
		}
		first := ""
		if len(args) > 0 {
			if s, ok := args[0].(starlark.String); ok {
				first = string(s)
			} else {
				kw["_arg0"] = args[0]
			}
		}
		for i, a := range args {
			kw[fmt.Sprintf("_arg%d", i)] = a
		}
		return into(first, kw)
	})
}

// tiltKeywords are the keyword arguments of Tilt's builtins
// (docs.tilt.dev/api.html) that the stubs accept.
var tiltKeywords = map[string][]string{
	"config.define_string": {"args", "usage"},
	"local":                {"quiet", "command_bat", "echo_off", "env", "dir", "stdin"},
	"local_resource": {"cmd", "deps", "trigger_mode", "resource_deps", "ignore", "auto_init", "serve_cmd", "cmd_bat",
		"serve_cmd_bat", "allow_parallel", "links", "tags", "env", "serve_env", "readiness_probe", "dir", "serve_dir", "labels"},
	"probe":           {"initial_delay_secs", "timeout_secs", "period_secs", "success_threshold", "failure_threshold", "exec", "http_get", "tcp_socket"},
	"http_get_action": {"port", "host", "scheme", "path"},
	"custom_build": {"ref", "command", "deps", "tag", "disable_push", "skips_local_docker", "live_update", "match_in_env_vars",
		"ignore", "entrypoint", "command_bat", "outputs_image_ref_to", "image_deps", "env", "dir"},
	"k8s_yaml": {"allow_duplicates"},
	"helm":     {"name", "namespace", "values", "set", "kube_version", "skip_crds"},
	"k8s_resource": {"workload", "new_name", "port_forwards", "extra_pod_selectors", "trigger_mode", "resource_deps",
		"objects", "auto_init", "pod_readiness", "links", "labels", "discovery_strategy"},
}

// evalTiltfile runs the Tiltfile at the repository root with the given
// `tilt up -- <args>` (a map of config flags) and fails the test if it
// does not evaluate.
func evalTiltfile(t *testing.T, flags map[string]string) *tiltRun {
	t.Helper()
	r, err := tryEvalTiltfile(t, flags)
	require.NoError(t, err, "the Tiltfile does not evaluate")
	return r
}

// tryEvalTiltfile is evalTiltfile returning the evaluation's error.
func tryEvalTiltfile(t *testing.T, flags map[string]string) (*tiltRun, error) {
	t.Helper()
	root := repoRoot(t)
	r := &tiltRun{
		localResources: map[string]map[string]starlark.Value{},
		customBuilds:   map[string]map[string]starlark.Value{},
		k8sResources:   map[string]map[string]starlark.Value{},
	}
	defined := map[string]bool{}
	configDict := starlark.NewDict(len(flags))
	configModule := &starlarkstruct.Module{Name: "config", Members: starlark.StringDict{
		"define_string": record("config.define_string", func(name string, _ map[string]starlark.Value) (starlark.Value, error) {
			defined[name] = true
			return starlark.None, nil
		}),
		"parse": record("config.parse", func(string, map[string]starlark.Value) (starlark.Value, error) {
			for k, v := range flags {
				if !defined[k] {
					return nil, fmt.Errorf("flag --%s is not defined by the Tiltfile", k)
				}
				if err := configDict.SetKey(starlark.String(k), starlark.String(v)); err != nil {
					return nil, err
				}
			}
			return configDict, nil
		}),
	}}
	osModule := &starlarkstruct.Module{Name: "os", Members: starlark.StringDict{
		"getenv": record("os.getenv", func(name string, kw map[string]starlark.Value) (starlark.Value, error) {
			if v, ok := os.LookupEnv(name); ok {
				return starlark.String(v), nil
			}
			if d, ok := kw["_arg1"]; ok {
				return d, nil
			}
			return starlark.None, nil
		}),
		"path": &starlarkstruct.Module{Name: "os.path", Members: starlark.StringDict{
			"join": starlark.NewBuiltin("os.path.join", func(_ *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
				parts := make([]string, len(args))
				for i, a := range args {
					parts[i] = string(a.(starlark.String))
				}
				return starlark.String(filepath.Join(parts...)), nil
			}),
			"exists": record("os.path.exists", func(p string, _ map[string]starlark.Value) (starlark.Value, error) {
				_, err := os.Stat(p)
				return starlark.Bool(err == nil), nil
			}),
		}},
	}}
	predeclared := starlark.StringDict{
		"config": configModule,
		"os":     osModule,
		"local": record("local", func(cmd string, _ map[string]starlark.Value) (starlark.Value, error) {
			r.locals = append(r.locals, cmd)
			return starlark.String("a2V5\n"), nil
		}),
		"local_resource": record("local_resource", func(name string, kw map[string]starlark.Value) (starlark.Value, error) {
			r.localResources[name] = kw
			return starlark.None, nil
		}),
		"probe": record("probe", func(string, map[string]starlark.Value) (starlark.Value, error) { return starlark.String("probe"), nil }),
		"http_get_action": record("http_get_action", func(string, map[string]starlark.Value) (starlark.Value, error) {
			return starlark.String("http_get"), nil
		}),
		"custom_build": record("custom_build", func(ref string, kw map[string]starlark.Value) (starlark.Value, error) {
			r.customBuilds[ref] = kw
			return starlark.None, nil
		}),
		"k8s_yaml": record("k8s_yaml", func(_ string, kw map[string]starlark.Value) (starlark.Value, error) {
			if s, ok := kw["_arg0"].(starlark.String); ok {
				r.yamls = append(r.yamls, string(s))
			}
			return starlark.None, nil
		}),
		"blob": record("blob", func(s string, _ map[string]starlark.Value) (starlark.Value, error) { return starlark.String(s), nil }),
		"helm": record("helm", func(chart string, kw map[string]starlark.Value) (starlark.Value, error) {
			kw["chart"] = starlark.String(chart)
			r.helmCharts = append(r.helmCharts, kw)
			return starlark.String("# helm " + chart), nil
		}),
		"k8s_resource": record("k8s_resource", func(name string, kw map[string]starlark.Value) (starlark.Value, error) {
			r.k8sResources[name] = kw
			return starlark.None, nil
		}),
		"fail": starlark.NewBuiltin("fail", func(_ *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
			return nil, fmt.Errorf("fail: %v", args)
		}),
	}
	t.Chdir(root) // Tilt evaluates relative to the Tiltfile's folder
	opts := &syntax.FileOptions{Set: true, While: true, TopLevelControl: true, GlobalReassign: true, Recursion: true}
	thread := &starlark.Thread{Name: "Tiltfile"}
	_, err := starlark.ExecFileOptions(opts, thread, "Tiltfile", nil, predeclared)
	return r, err
}

// strs reads a Starlark list of strings.
func strs(t *testing.T, v starlark.Value) []string {
	t.Helper()
	l, ok := v.(*starlark.List)
	require.True(t, ok, "%v is not a list", v)
	var out []string
	for i := range l.Len() {
		out = append(out, string(l.Index(i).(starlark.String)))
	}
	return out
}

func requirePathsExist(t *testing.T, paths []string) {
	t.Helper()
	for _, p := range paths {
		_, err := os.Stat(filepath.Join(repoRoot(t), p))
		require.NoError(t, err, "the Tiltfile names %s", p)
	}
}

func TestTiltfileLocalMode(t *testing.T) {
	for _, flags := range []map[string]string{nil, {"mode": "local"}} {
		t.Run(fmt.Sprint(flags), func(t *testing.T) {
			r := evalTiltfile(t, flags)
			require.Empty(t, r.customBuilds)
			require.Empty(t, r.helmCharts)
			names := make([]string, 0, len(r.localResources))
			for n, kw := range r.localResources {
				names = append(names, n)
				requirePathsExist(t, strs(t, kw["deps"]))
				cmd := string(kw["cmd"].(starlark.String))
				dir := strings.Fields(cmd)[1] // "cd <dir> && go build ..."
				requirePathsExist(t, []string{dir})
			}
			sort.Strings(names)
			require.Equal(t, []string{"account-migrator", "ingestion-runner", "k8s-watcher", "outpost-broker", "scheduler"}, names)
		})
	}
}

func TestTiltfileK8sMode(t *testing.T) {
	helm := helmBinary(t)
	r := evalTiltfile(t, map[string]string{"mode": "k8s"})
	require.Empty(t, r.localResources)

	// One chart: the umbrella, with values files that exist.
	require.Len(t, r.helmCharts, 1)
	h := r.helmCharts[0]
	chart := string(h["chart"].(starlark.String))
	requirePathsExist(t, append([]string{chart, chart + "/Chart.yaml"}, strs(t, h["values"])...))
	release := string(h["name"].(starlark.String))

	// Render it as Tilt would, and match its workloads and images against
	// the Tiltfile's resources and builds.
	args := []string{"template", release, filepath.Join(repoRoot(t), chart), "--namespace", string(h["namespace"].(starlark.String))}
	for _, v := range strs(t, h["values"]) {
		args = append(args, "-f", filepath.Join(repoRoot(t), v))
	}
	out := mustRun(t, nil, helm, args...)
	workloads, images := map[string]bool{}, map[string]bool{}
	dec := yaml.NewDecoder(strings.NewReader(out))
	for {
		var doc struct {
			Kind     string `yaml:"kind"`
			Metadata struct {
				Name        string            `yaml:"name"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"metadata"`
			Spec struct {
				Template struct {
					Spec struct {
						Containers []struct {
							Image string `yaml:"image"`
						} `yaml:"containers"`
					} `yaml:"spec"`
				} `yaml:"template"`
			} `yaml:"spec"`
		}
		if err := dec.Decode(&doc); err != nil {
			break
		}
		if doc.Kind == "Deployment" || doc.Kind == "StatefulSet" {
			workloads[doc.Metadata.Name] = true
			for _, c := range doc.Spec.Template.Spec.Containers {
				images[strings.Split(c.Image, ":")[0]] = true
			}
		}
	}
	require.Len(t, workloads, 5)
	for w := range workloads {
		kw, ok := r.k8sResources[w]
		require.True(t, ok, "no k8s_resource for the workload %s", w)
		require.NotEmpty(t, strs(t, kw["port_forwards"]), w)
	}
	require.Len(t, r.k8sResources, len(workloads), "a k8s_resource names no workload of the chart")
	for img := range images {
		kw, ok := r.customBuilds[img]
		require.True(t, ok, "no custom_build for the image %s", img)
		requirePathsExist(t, strs(t, kw["deps"]))
		cmd := string(kw["_arg1"].(starlark.String))
		require.Contains(t, cmd, "scripts/build-images.sh")
		require.Contains(t, cmd, "$EXPECTED_REF")
	}
	require.Len(t, r.customBuilds, len(images))
	requirePathsExist(t, []string{"scripts/build-images.sh", "deploy/images/Containerfile"})

	// The Secret the dev values reference is declared.
	require.NotEmpty(t, r.yamls)
	require.Contains(t, strings.Join(r.yamls, "\n"), "name: outpost-dev-kubeconfig-key")
}

func TestTiltfileRefusesUnknownMode(t *testing.T) {
	_, err := tryEvalTiltfile(t, map[string]string{"mode": "cluster"})
	require.ErrorContains(t, err, "--mode must be local or k8s")
}

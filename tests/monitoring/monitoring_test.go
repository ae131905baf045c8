// Package monitoring checks deploy/monitoring against the services: the
// alert rules parse with Prometheus's own rule parser, every dashboard
// query and rule expression parses as PromQL, and every metric they name is
// in the /metrics output of the real services after a real run.
package monitoring

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/kubetest"
	"github.com/outposthq/outpost/libs/testenv"
	"github.com/outposthq/outpost/tests/harness"
)

const dir = "../../deploy/monitoring"

// areas are the dashboards there must be, one per area.
var areas = []string{"jobs", "fleet", "accounts", "broker"}

// TestMain stops the shared Kubernetes API server when the tests are done.
func TestMain(m *testing.M) {
	code := m.Run()
	if err := kubetest.StopShared(); err != nil {
		fmt.Fprintf(os.Stderr, "stop shared kube-apiserver: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

var promql = parser.NewParser(parser.Options{})

// grafanaVars are the dashboard variables that stand for a range in a
// query; the others ($tenant) only appear inside label values.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")

// labelValues is Grafana's template query label_values(selector, label).
var labelValues = regexp.MustCompile(`^label_values\((.+),\s*[a-zA-Z_][a-zA-Z0-9_]*\)$`)

// TestMonitoring: the rules file parses and validates, every query parses,
// and every metric named exists in the services' real /metrics output.
func TestMonitoring(t *testing.T) {
	want := map[string][]string{} // metric name -> where it is used
	rules := ruleMetrics(t, filepath.Join(dir, "alerts.yaml"))
	require.NotEmpty(t, rules)
	for name, where := range rules {
		want[name] = append(want[name], where...)
	}
	for _, area := range areas {
		used := dashboardMetrics(t, filepath.Join(dir, "dashboards", area+".json"))
		require.NotEmpty(t, used, "dashboard %s names no metric", area)
		for name, where := range used {
			want[name] = append(want[name], where...)
		}
	}

	have := realRun(t)
	var missing []string
	for name, where := range want {
		if !have[name] {
			missing = append(missing, fmt.Sprintf("%s (%s)", name, strings.Join(where, "; ")))
		}
	}
	slices.Sort(missing)
	require.Empty(t, missing, "metrics used by deploy/monitoring that no service exported")
}

// TestAlertRulesValidate: a rule file with a mistake is refused, so that
// TestMonitoring's parse cannot pass on anything.
func TestAlertRulesValidate(t *testing.T) {
	tests := []struct {
		name, rules string
	}{
		{"bad promql", "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: sum(\n"},
		{"unknown field", "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n    fore: 5m\n"},
		{"no name", "groups:\n- name: g\n  rules:\n  - expr: up\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := rulefmt.Parse([]byte(tt.rules), false, model.UTF8Validation, promql, slog.Default())
			require.NotEmpty(t, errs)
		})
	}
}

// ruleMetrics parses the rules file as Prometheus loads it and returns the
// metrics of every rule's expression.
func ruleMetrics(t *testing.T, path string) map[string][]string {
	t.Helper()
	groups, errs := rulefmt.ParseFile(path, false, model.UTF8Validation, promql, slog.Default())
	require.Empty(t, errs, "%s does not load", path)
	out := map[string][]string{}
	for _, g := range groups.Groups {
		require.NotEmpty(t, g.Rules, "group %s", g.Name)
		for _, r := range g.Rules {
			require.NotEmpty(t, r.Alert, "group %s: only alerting rules", g.Name)
			require.NotEmpty(t, r.Annotations["summary"], "alert %s has no summary", r.Alert)
			for _, name := range metricNames(t, r.Expr) {
				out[name] = append(out[name], "alert "+r.Alert)
			}
		}
	}
	return out
}

// dashboardMetrics reads a Grafana dashboard and returns the metrics of
// every panel query and template variable query.
func dashboardMetrics(t *testing.T, path string) map[string][]string {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	var d struct {
		UID    string `json:"uid"`
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	require.NoError(t, json.Unmarshal(raw, &d), path)
	require.NotEmpty(t, d.UID, path)
	require.NotEmpty(t, d.Panels, path)
	out := map[string][]string{}
	for _, p := range d.Panels {
		require.NotEmpty(t, p.Targets, "%s: panel %q has no query", path, p.Title)
		for _, q := range p.Targets {
			for _, name := range metricNames(t, grafanaVars.Replace(q.Expr)) {
				out[name] = append(out[name], fmt.Sprintf("%s panel %q", d.Title, p.Title))
			}
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		require.NoError(t, json.Unmarshal(v.Query, &q), "%s: variable %s", path, v.Name)
		m := labelValues.FindStringSubmatch(q.Query)
		require.NotNil(t, m, "%s: variable %s: only label_values(metric, label) queries are checked: %q", path, v.Name, q.Query)
		for _, name := range metricNames(t, m[1]) {
			out[name] = append(out[name], fmt.Sprintf("%s variable %s", d.Title, v.Name))
		}
	}
	return out
}

// metricNames parses expr as PromQL and returns the metric names of its
// selectors; a selector without a name fails: nothing could check it.
func metricNames(t *testing.T, expr string) []string {
	t.Helper()
	e, err := promql.ParseExpr(expr)
	require.NoError(t, err, "%q", expr)
	var out []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
				name = m.Value
			}
		}
		require.NotEmpty(t, name, "%q: a selector without a metric name", expr)
		out = append(out, name)
		return nil
	})
	require.NotEmpty(t, out, "%q names no metric", expr)
	return out
}

// realRun starts the scheduler, a runner, the account-migrator and a
// k8s-watcher as `make run` does, runs a job and activates an account, and
// returns the names of every sample their /metrics listeners export once
// the fleet, account and watcher series are there.
func realRun(t *testing.T) map[string]bool {
	t.Helper()
	kc := kubetest.Shared(t)
	ns := kc.CreateNamespace(t)

	s := harness.StartStack(t, harness.StackOptions{})
	runner := s.StartRunner("runner-1", nil)
	c := s.TenantClient(s.Tenant)
	j := c.Submit(map[string]any{"task": map[string]any{"noop": map[string]any{"sleep": "10ms"}}})
	require.Equal(t, "SUCCEEDED", c.WaitTerminal(j.ID, time.Minute).State)

	migOps := fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t))
	p := harness.StartPlane(t, harness.PlaneOptions{MigratorEnv: map[string]string{
		"OUTPOST_OPS_LISTEN": strings.TrimPrefix(migOps, "http://"),
	}})
	watcher := p.StartWatcher("watcher-1", "zone-a", kc.Kubeconfig, nil)
	ac := p.Client()
	code, body := ac.Do(http.MethodPost, "/api/v1/accounts", []map[string]any{
		{"name": "monitored", "state": "ACTIVE", "zoneId": "zone-a", "serviceAccount": true, "namespaces": []string{ns}},
	})
	require.Equal(t, http.StatusOK, code, "%s", body)
	ac.WaitAccountState("monitored", "ACTIVE", time.Minute)

	targets := []string{s.Ops, runner.Ops, migOps, watcher.Ops}
	have := map[string]bool{}
	require.Eventually(t, func() bool {
		clear(have)
		for _, base := range targets {
			if err := scrape(base, have); err != nil {
				t.Logf("scrape: %v", err)
				return false
			}
		}
		// The series that appear with their subjects: a pool's, a
		// runner's and a watcher's heartbeat, the account's activation.
		return have["outpost_pool_backlog"] && have["outpost_runner_last_seen_timestamp_seconds"] &&
			have["outpost_watchers"] && have["outpost_watcher_activations_total"]
	}, time.Minute, 200*time.Millisecond)
	return have
}

// scrape adds the sample names of base/metrics to names.
func scrape(base string, names map[string]bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return fmt.Errorf("scrape %s: %w", base, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("scrape %s: %w", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("scrape %s: status %d", base, resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, " ")
		name, _, _ = strings.Cut(name, "{")
		names[name] = true
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("scrape %s: %w", base, err)
	}
	return nil
}

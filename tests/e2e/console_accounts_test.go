package e2e

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outposthq/outpost/libs/kubetest"
	"github.com/outposthq/outpost/tests/harness"
)

// TestConsoleAccounts opens an account's inventory in Chromium against the
// real binaries: a scheduler whose console calls a live account-migrator
// (one broker, so one API keys bucket: the key the user signs in with is
// the migrator's too), a k8s-watcher and the test kube-apiserver. The
// accounts list shows the account with its state and zone, its page the
// cluster, the inventory its kinds, namespaces and objects, a Secret's
// page its keys and never its values; deactivating and migrating it from
// its page changes its state, and a viewer has neither action.
func TestConsoleAccounts(t *testing.T) {
	shots := screenshots(t)
	b := newBrowser(t, shots)
	kc := kubetest.Shared(t)
	ctx := context.Background()
	ns := kc.CreateNamespace(t)
	const secretValue = "s3cr3t-console-inventory"
	_, err := kc.Client().CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "db-credentials"},
		Data:       map[string][]byte{"password": []byte(secretValue)},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = kc.Client().CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "app-config"},
		Data:       map[string]string{"mode": "console"},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	// An Event is served both as v1 and as events.k8s.io/v1: two kinds
	// named Event.
	_, err = kc.Client().CoreV1().Events(ns).Create(ctx, &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "app-config.console"},
		InvolvedObject: corev1.ObjectReference{Kind: "ConfigMap", Namespace: ns, Name: "app-config", APIVersion: "v1"},
		Reason:         "Console", Message: "seen by the console", Type: corev1.EventTypeNormal,
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	// No automatic retry: a FAILED account waits for the Retry button.
	p := harness.StartPlane(t, harness.PlaneOptions{MigratorEnv: map[string]string{"OUTPOST_MAX_RETRIES": "0"}})
	p.StartWatcher("console-watcher", "zone-console", kc.Kubeconfig, nil)
	s := harness.StartStack(t, harness.StackOptions{NATS: p.NATS, SchedulerEnv: map[string]string{
		"OUTPOST_CONSOLE_ACCOUNTS_URL": p.API,
	}})
	c := p.Client()
	code, body := c.Do(http.MethodPost, "/api/v1/accounts", []map[string]any{{
		"name": "console-acct", "state": "ACTIVE", "zoneId": "zone-console", "serviceAccount": true,
		"kinds": []string{"ConfigMap", "Secret", "Event"}, "namespaces": []string{ns},
	}})
	require.Equal(t, http.StatusOK, code, "%s", body)
	c.WaitAccountState("console-acct", "ACTIVE", 60*time.Second)
	waitObjects(t, c, "console-acct", "namespace="+ns, func(objs []harness.InventoryObject) bool { return len(objs) >= 2 })

	// The scheduler's own admin key: the migrator finds it in the shared
	// keys bucket.
	b.signIn(s.API, s.Token)
	b.run(30*time.Second, chromedp.Click(chromedp.CSS(`nav a[href="/accounts"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#accounts tr[data-account="console-acct"]`)))
	row := value(b, 5*time.Second, chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll('#accounts tr[data-account="console-acct"] td')).map(td => td.innerText.trim())`))
	require.GreaterOrEqual(t, len(row), 4, "%v", row)
	require.Equal(t, []string{"console-acct", "ACTIVE", "zone-console", "console-watcher"}, row[:4])
	b.screenshot("console-accounts")

	// Its page: the cluster the watcher reached.
	b.run(30*time.Second, chromedp.Click(chromedp.CSS(`#accounts a[href="/accounts/console-acct"]`)),
		chromedp.WaitVisible(chromedp.ID("inventory")))
	page := value(b, 5*time.Second, chromedp.Evaluate[string](`document.querySelector("main").innerText`))
	require.Contains(t, page, kc.Server, "the cluster's host")
	require.Contains(t, page, "zone-console")
	kinds := value(b, 5*time.Second, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll(".kinds li a")).map(a => a.innerText)`))
	require.ElementsMatch(t, []string{"ConfigMap", "Secret", "Event", "Event"}, kinds, "Event of the core group and of events.k8s.io")
	b.screenshot("console-account")

	// The inventory: all objects, then one kind in one namespace.
	b.run(30*time.Second, chromedp.Click(chromedp.ID("inventory")), chromedp.WaitVisible(chromedp.ID("objects")))
	names := value(b, 5*time.Second, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#objects tbody td:nth-child(3)")).map(td => td.innerText)`))
	require.Subset(t, names, []string{"app-config", "db-credentials"})
	namespaces := value(b, 5*time.Second, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#o-namespaces option")).map(o => o.value)`))
	require.Contains(t, namespaces, ns)
	b.screenshot("console-inventory")
	b.run(30*time.Second,
		chromedp.SetValue(chromedp.ID("o-kind"), kindToken(t, c, "console-acct", "", "ConfigMap")),
		chromedp.SetValue(chromedp.ID("o-ns"), ns),
		chromedp.Submit(chromedp.ID("o-ns")),
		chromedp.WaitVisible(chromedp.CSS(`#objects a[href$="/app-config"]`)),
	)
	rows := value(b, 5*time.Second, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#objects tbody tr")).map(tr => tr.innerText)`))
	require.Len(t, rows, 1, "only the ConfigMap of %s: %v", ns, rows)
	b.run(30*time.Second, chromedp.Click(chromedp.CSS(`#objects a[href$="/app-config"]`)), chromedp.WaitVisible(chromedp.ID("object")))
	require.Contains(t, value(b, 5*time.Second, chromedp.TextContent(chromedp.ID("object"))), `"mode": "console"`)

	// The Event of events.k8s.io opens as that kind, not as the core
	// group's Event of the same name.
	events := url.Values{"kind": {kindToken(t, c, "console-acct", "events.k8s.io", "Event")}, "namespace": {ns}}.Encode()
	waitObjects(t, c, "console-acct", events, func(objs []harness.InventoryObject) bool { return len(objs) == 1 })
	b.run(30*time.Second,
		chromedp.Navigate(s.API+"/accounts/console-acct/objects?"+events),
		chromedp.WaitVisible(chromedp.CSS(`#objects a[href$="/app-config.console"]`)),
		chromedp.Click(chromedp.CSS(`#objects a[href$="/app-config.console"]`)),
		chromedp.WaitVisible(chromedp.ID("object")),
	)
	require.Contains(t, value(b, 5*time.Second, chromedp.TextContent(chromedp.ID("object"))), `"apiVersion": "events.k8s.io/v1"`)

	// The Secret: its key is listed, its value never reaches the page.
	b.run(30*time.Second,
		chromedp.Navigate(s.API+"/accounts/console-acct/objects?"+url.Values{"namespace": {ns}}.Encode()),
		chromedp.WaitVisible(chromedp.CSS(`#objects a[href$="/db-credentials"]`)),
		chromedp.Click(chromedp.CSS(`#objects a[href$="/db-credentials"]`)),
		chromedp.WaitVisible(chromedp.ID("object")),
	)
	shown := value(b, 5*time.Second, chromedp.TextContent(chromedp.ID("object")))
	require.Contains(t, shown, "password")
	html := value(b, 5*time.Second, chromedp.Evaluate[string](`document.documentElement.outerHTML`))
	for _, v := range []string{secretValue, base64.StdEncoding.EncodeToString([]byte(secretValue))} {
		require.NotContains(t, html, v, "a Secret's values are never shown")
	}
	b.screenshot("console-secret")

	// Deactivate it from its page: the state changes.
	b.run(30*time.Second,
		chromedp.Navigate(s.API+"/accounts/console-acct"),
		chromedp.WaitVisible(chromedp.ID("deactivate")),
		chromedp.Click(chromedp.ID("deactivate")),
		chromedp.WaitVisible(chromedp.ID("migrate")),
	)
	c.WaitAccountState("console-acct", "INACTIVE", 30*time.Second)
	b.run(30*time.Second, chromedp.Navigate(s.API+"/accounts"),
		chromedp.WaitVisible(chromedp.CSS(`#accounts tr[data-account="console-acct"] .state-inactive`)))
	b.screenshot("console-accounts-inactive")

	// Migrate it again from its page: a watcher holds it, ACTIVE.
	b.run(30*time.Second,
		chromedp.Click(chromedp.CSS(`#accounts a[href="/accounts/console-acct"]`)),
		chromedp.WaitVisible(chromedp.ID("migrate")),
		chromedp.Click(chromedp.ID("migrate")),
		chromedp.WaitVisible(chromedp.ID("deactivate")),
	)
	c.WaitAccountState("console-acct", "ACTIVE", 60*time.Second)
	b.run(30*time.Second, chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`.facts .state-active`)))

	// An account whose kubeconfig the watcher cannot read fails; Retry on
	// its page migrates it again, and it fails again with its reason.
	code, body = c.Do(http.MethodPost, "/api/v1/accounts", []map[string]any{{
		"name": "broken-acct", "state": "ACTIVE", "zoneId": "zone-console", "kubeconfigFile": "/nonexistent/kubeconfig",
	}})
	require.Equal(t, http.StatusOK, code, "%s", body)
	failed := c.WaitAccountState("broken-acct", "FAILED", 60*time.Second)
	require.NotEmpty(t, failed.ErrorMessage)
	b.run(30*time.Second, chromedp.Navigate(s.API+"/accounts/broken-acct"), chromedp.WaitVisible(chromedp.ID("migrate")))
	require.Equal(t, "Retry", value(b, 5*time.Second, chromedp.TextContent(chromedp.ID("migrate"))))
	b.screenshot("console-account-failed")
	b.run(30*time.Second, chromedp.Click(chromedp.ID("migrate")), chromedp.WaitVisible(chromedp.ID("deactivate")))
	retry := func(a harness.Account) int {
		for i := len(a.History) - 1; i >= 0; i-- {
			if h := a.History[i]; h.From == "FAILED" && h.To == "TO_MIGRATE" {
				return i
			}
		}
		return -1
	}
	retried := c.WaitAccount("broken-acct", 60*time.Second, func(a harness.Account) bool {
		i := retry(a)
		return i >= 0 && a.State == "FAILED" && i < len(a.History)-1
	})
	require.Equal(t, "migration requested", retried.History[retry(retried)].Reason, "the button's retry, not an automatic one")

	// A viewer (a key of the scheduler, known to the migrator too) sees the
	// account but no action, and a forged one is refused.
	viewer := createKey(t, s, "viewer")
	b.run(30*time.Second, chromedp.Submit(chromedp.CSS(`form[action="/logout"] button`)), chromedp.WaitVisible(chromedp.ID("api_key")))
	b.signIn(s.API, viewer)
	b.run(30*time.Second, chromedp.Navigate(s.API+"/accounts/console-acct"), chromedp.WaitVisible(chromedp.ID("inventory")))
	actions := value(b, 5*time.Second, chromedp.Evaluate[int](`document.querySelectorAll("#deactivate, #migrate").length`))
	require.Zero(t, actions, "a viewer sees no account action")
	status := value(b, 30*time.Second, chromedp.Evaluate[int](`fetch("/accounts/console-acct/state", {method: "POST", redirect: "manual",
		headers: {"Content-Type": "application/x-www-form-urlencoded"},
		body: new URLSearchParams({csrf: document.body.dataset.csrf, state: "INACTIVE"})}).then(r => r.status)`, chromedp.EvalAwaitPromise))
	require.Equal(t, http.StatusForbidden, status, "a viewer's forged deactivation is refused")
	require.Equal(t, "ACTIVE", c.Account("console-acct").State)
}

// kindToken is the inventory token of an account's kind of group, as the
// kind filter's options carry it.
func kindToken(t *testing.T, c *harness.Client, account, group, kind string) string {
	t.Helper()
	for _, k := range c.Account(account).Kinds {
		if k.Kind == kind && k.Group == group {
			return k.Token
		}
	}
	t.Fatalf("account %s has no kind %s", account, kind)
	return ""
}

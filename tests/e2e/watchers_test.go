package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/kubetest"
	"github.com/outposthq/outpost/tests/harness"
)

// fleetWatcher is one entry of GET /api/v1/watchers.
type fleetWatcher struct {
	ID         string    `json:"id"`
	Zone       string    `json:"zoneId"`
	Version    string    `json:"version"`
	State      string    `json:"state"`
	Live       bool      `json:"live"`
	IntervalMS int64     `json:"intervalMs"`
	LastSeen   time.Time `json:"lastSeen"`
	Accounts   []struct {
		Account string `json:"account"`
	} `json:"accounts"`
}

// TestCLIWatchersFleet: `outpost watchers list` shows a real watcher
// process live with its version and the account it holds; once the
// process is killed it is shown lost within 3 of its heartbeat intervals
// after its last heartbeat and never live after that, while the watcher of
// another zone stays live. Every request and answer is checked against
// the account-migrator's OpenAPI document.
func TestCLIWatchersFleet(t *testing.T) {
	kc := kubetest.Shared(t)
	p := harness.StartPlane(t, harness.PlaneOptions{})
	w1 := p.StartWatcher("w1", "zone-a", kc.Kubeconfig, nil)
	c := p.Client()
	code, body := c.Do(http.MethodPost, "/api/v1/accounts", []map[string]any{
		{"name": "fleet-1", "state": "ACTIVE", "zoneId": "zone-a", "serviceAccount": true, "kinds": []string{"Namespace"}},
	})
	require.Equal(t, http.StatusOK, code, "%s", body)
	require.Equal(t, "w1", c.WaitAccountState("fleet-1", "ACTIVE", 60*time.Second).Agent)
	p.StartWatcher("w2", "zone-b", kc.Kubeconfig, nil)

	api := specProxyOf(t, p.API, p.Token)
	dir := t.TempDir()
	u := &cliUser{t: t, bin: outpostCLI(t), config: filepath.Join(dir, "outpost", "config.yaml")}
	keyFile := filepath.Join(dir, "admin.key")
	require.NoError(t, os.WriteFile(keyFile, []byte(p.Token+"\n"), 0o600))
	u.ok("login", "--accounts", api, "--api-key-file", keyFile)

	out, err := exec.Command(harness.Bin(t, "k8s-watcher"), "-version").Output()
	require.NoError(t, err)
	fields := strings.Fields(string(out))
	require.GreaterOrEqual(t, len(fields), 2, "k8s-watcher -version: %s", out)
	wantVersion := fields[1]

	list := func(args ...string) map[string]fleetWatcher {
		var got struct {
			Watchers []fleetWatcher `json:"watchers"`
			Count    int            `json:"count"`
		}
		require.NoError(t, json.Unmarshal([]byte(u.ok(append([]string{"watchers", "list", "-o", "json"}, args...)...)), &got))
		require.Len(t, got.Watchers, got.Count)
		m := map[string]fleetWatcher{}
		for _, w := range got.Watchers {
			m[w.ID] = w
		}
		return m
	}

	// w1 is live, holds fleet-1 and says its version.
	require.Eventually(t, func() bool {
		w, ok := list()["w1"]
		return ok && w.State == "live" && len(w.Accounts) == 1
	}, 30*time.Second, 200*time.Millisecond, "w1 never listed live with its account")
	w := list("--zone", "zone-a")["w1"]
	require.True(t, w.Live)
	require.Equal(t, "zone-a", w.Zone)
	require.Equal(t, wantVersion, w.Version, "the version comes from the watcher's heartbeats")
	require.Equal(t, "fleet-1", w.Accounts[0].Account)
	require.Equal(t, int64(300), w.IntervalMS)
	table := u.ok("watchers", "list")
	require.True(t, strings.HasPrefix(table, "ZONE "), "a table with headers: %s", table)
	require.Contains(t, table, "w1")

	// Killed: lost within 3 intervals of its last heartbeat (the poll's own
	// time aside), never shown live after that.
	w1.Kill()
	killed := time.Now()
	bound := 3 * time.Duration(w.IntervalMS) * time.Millisecond
	var lost fleetWatcher
	var shownLiveLate []string
	require.Eventually(t, func() bool {
		asked := time.Now() // the API judges at or after this instant
		cur := list()["w1"]
		if cur.State == "live" {
			// Live is allowed only while its last heartbeat is recent.
			if late := asked.Sub(cur.LastSeen); late > bound+50*time.Millisecond {
				shownLiveLate = append(shownLiveLate, late.String())
			}
			return false
		}
		lost = cur
		return true
	}, 30*time.Second, 100*time.Millisecond, "w1 never shown lost")
	require.Empty(t, shownLiveLate, "w1 shown live this long after its last heartbeat")
	require.Equal(t, "lost", lost.State)
	require.False(t, lost.Live)
	require.WithinDuration(t, killed, lost.LastSeen, bound+2*time.Second, "the last heartbeat was sent shortly before the kill")
	for range 5 {
		require.Equal(t, "lost", list()["w1"].State, "a killed watcher stays lost")
	}
	require.Contains(t, list("--state", "lost"), "w1")
	require.Eventually(t, func() bool {
		live := list("--state", "live")
		_, w1Live := live["w1"]
		_, w2Live := live["w2"]
		return w2Live && !w1Live
	}, 30*time.Second, 200*time.Millisecond, "the other zone's watcher is listed live, the killed one is not")

	// A state the API does not know is refused with its field.
	bad := u.run(time.Minute, "", "watchers", "list", "--state", "dead")
	require.Equal(t, 1, bad.code)
	require.Contains(t, bad.stderr, "state must be one of live, stopped, lost")
}

package app

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/inventory"
	"github.com/outposthq/outpost/libs/queue"
	accountsv1 "github.com/outposthq/outpost/proto/outpost/accounts/v1"
	watchv1 "github.com/outposthq/outpost/proto/outpost/watch/v1"
)

func TestConfigMapDeltas(t *testing.T) {
	e := newEnv(t)
	e.start(t, e.config(t))
	ns := e.kc.CreateNamespace(t)
	e.activated(t, e.spec("deltas", ns), 1)
	cms := e.kc.Client().CoreV1().ConfigMaps(ns)
	ctx := context.Background()

	var rv string
	steps := []struct {
		name   string
		change func(t *testing.T)
		want   watchv1.ObjectDelta_Type
		data   string
	}{
		{name: "created", change: func(t *testing.T) {
			cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "app.config"}, Data: map[string]string{"k": "one"}}, metav1.CreateOptions{})
			require.NoError(t, err)
			rv = cm.ResourceVersion
		}, want: watchv1.ObjectDelta_TYPE_ADDED, data: "one"},
		{name: "updated", change: func(t *testing.T) {
			cm, err := cms.Get(ctx, "app.config", metav1.GetOptions{})
			require.NoError(t, err)
			cm.Data["k"] = "two"
			cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
			require.NoError(t, err)
			rv = cm.ResourceVersion
		}, want: watchv1.ObjectDelta_TYPE_UPDATED, data: "two"},
		{name: "deleted with kubectl", change: func(*testing.T) {
			e.kc.Kubectl(t, "-n", ns, "delete", "configmap", "app.config")
		}, want: watchv1.ObjectDelta_TYPE_DELETED, data: "two"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			s.change(t)
			d := e.waitDelta(t, "deltas", "configmaps", ns, "app.config", func(d *watchv1.ObjectDelta, h map[string]string) bool {
				return d.GetType() == s.want && h[inventory.HeaderResourceVersion] == d.GetResourceVersion()
			})
			m, _, _ := e.last("deltas", "configmaps", ns, "app.config")
			require.Equal(t, events.TypeName(d), m.Header[queue.HeaderType])
			if s.want == watchv1.ObjectDelta_TYPE_DELETED {
				require.Equal(t, "true", m.Header[inventory.HeaderDeleted])
			} else {
				require.Equal(t, rv, d.GetResourceVersion())
				require.Empty(t, m.Header[inventory.HeaderDeleted])
			}
			require.Equal(t, uint64(1), d.GetGeneration())
			require.Equal(t, "ConfigMap", d.GetKind())
			require.Equal(t, ns, d.GetNamespace())
			var obj corev1.ConfigMap
			require.NoError(t, json.Unmarshal(d.GetObject(), &obj))
			require.Equal(t, s.data, obj.Data["k"], "the tombstone keeps the last known state")
			require.Empty(t, obj.ManagedFields)
		})
	}
}

// TestSecretsNeverLeaveTheCluster applies a Secret with kubectl (which
// copies it, values included, into the last-applied annotation) and
// checks that its keys are visible and no byte of its value is in any
// message of any stream.
func TestSecretsNeverLeaveTheCluster(t *testing.T) {
	e := newEnv(t)
	e.start(t, e.config(t))
	ns := e.kc.CreateNamespace(t)
	e.activated(t, &accountsv1.AccountSpec{Name: "secrets", KubeconfigFile: e.kc.Kubeconfig, Kinds: []string{"secrets"}, Namespaces: []string{ns}}, 1)

	const value = "hunter2-d0-not-leak-7f3a9c"
	manifest := `apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: ` + ns + `
stringData:
  password: ` + value + `
data:
  token: ` + base64.StdEncoding.EncodeToString([]byte(value+"-token")) + `
`
	cmd := e.kc.KubectlCommand(context.Background(), "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(manifest)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	got, err := e.kc.Client().CoreV1().Secrets(ns).Get(context.Background(), "db", metav1.GetOptions{})
	require.NoError(t, err)
	require.Contains(t, got.Annotations, "kubectl.kubernetes.io/last-applied-configuration")

	d := e.waitDelta(t, "secrets", "secrets", ns, "db", func(*watchv1.ObjectDelta, map[string]string) bool { return true })
	var obj map[string]any
	require.NoError(t, json.Unmarshal(d.GetObject(), &obj))
	require.Equal(t, map[string]any{"password": "", "token": ""}, obj["data"])
	require.NotContains(t, obj, "stringData")
	require.NotContains(t, string(d.GetObject()), "last-applied-configuration")

	needles := [][]byte{[]byte(value), []byte(base64.StdEncoding.EncodeToString([]byte(value))), []byte(base64.StdEncoding.EncodeToString([]byte(value + "-token")))}
	seen := 0
	e.allMessages(t, func(subject string, header map[string][]string, data []byte) {
		seen++
		for _, n := range needles {
			require.False(t, bytes.Contains(data, n), "a secret value in a message on %s", subject)
			for k, vs := range header {
				for _, v := range vs {
					require.NotContains(t, v, string(n), "a secret value in header %s on %s", k, subject)
				}
			}
		}
	})
	require.Positive(t, seen)
}

func TestChecksumsMatchTheStream(t *testing.T) {
	e := newEnv(t)
	e.start(t, e.config(t))
	ns := e.kc.CreateNamespace(t)
	ctx := context.Background()
	for _, name := range []string{"a", "b", "c"} {
		_, err := e.kc.Client().CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	e.activated(t, e.spec("sums", ns), 1)
	e.kc.Kubectl(t, "-n", ns, "delete", "configmap", "b")

	streamSum := func() (uint64, string) {
		var lines []inventory.Line
		err := e.conn.Read(ctx, inventory.Filter(e.subj, tenant, "sums", "configmaps", "", false), queue.ReadOptions{}, func(m queue.StreamMessage) bool {
			if m.Header[inventory.HeaderDeleted] != "true" {
				k, err := inventory.ParseSubject(m.Subject)
				if err == nil {
					lines = append(lines, inventory.Line{Namespace: k.Namespace, Name: k.Name, ResourceVersion: m.Header[inventory.HeaderResourceVersion]})
				}
			}
			return true
		})
		if err != nil {
			return 0, ""
		}
		return uint64(len(lines)), inventory.Checksum(lines)
	}
	require.Eventually(t, func() bool {
		sums := read[*accountsv1.InventoryChecksum](e, e.subj.InventoryChecksums(tenant, "sums"))
		if len(sums) == 0 {
			return false
		}
		last := sums[len(sums)-1]
		count, sum := streamSum()
		// The namespace holds the three ConfigMaps minus b (kube-root-ca.crt
		// needs a controller-manager, which the test cluster does not run).
		return last.GetKindToken() == "configmaps" && last.GetGeneration() == 1 &&
			last.GetCount() == 2 && count == 2 && last.GetChecksum() == sum
	}, waitFor, poll)
}

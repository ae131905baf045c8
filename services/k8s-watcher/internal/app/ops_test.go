package app

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outposthq/outpost/libs/events"
	watchv1 "github.com/outposthq/outpost/proto/outpost/watch/v1"
)

const deployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx
---
{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-config"}, "data": {"k": "v"}}
`

func TestOperations(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(t)
	e.start(t, cfg)
	ns := e.kc.CreateNamespace(t)
	e.activated(t, e.spec("ops", ns), 1)
	ctx := context.Background()
	deployments := e.kc.Client().AppsV1().Deployments(ns)
	web := &watchv1.ObjectRef{ApiVersion: "apps/v1", Kind: "Deployment", Name: "web", Namespace: ns}

	tests := []struct {
		name    string
		op      *watchv1.Operation
		ok      bool
		actions []string
		code    int32
		reason  string
		errHas  string
		check   func(t *testing.T)
	}{
		{
			name:    "apply creates",
			op:      &watchv1.Operation{Kind: &watchv1.Operation_Apply{Apply: &watchv1.Apply{Manifests: []byte(deployment), Namespace: ns}}},
			ok:      true,
			actions: []string{"created", "created"},
			check: func(t *testing.T) {
				d, err := deployments.Get(ctx, "web", metav1.GetOptions{})
				require.NoError(t, err)
				require.Equal(t, int32(1), *d.Spec.Replicas)
				require.Equal(t, "outpost", d.ManagedFields[0].Manager)
			},
		},
		{
			name:    "apply again is unchanged",
			op:      &watchv1.Operation{Kind: &watchv1.Operation_Apply{Apply: &watchv1.Apply{Manifests: []byte(deployment), Namespace: ns}}},
			ok:      true,
			actions: []string{"unchanged", "unchanged"},
		},
		{
			name:   "bad manifest",
			op:     &watchv1.Operation{Kind: &watchv1.Operation_Apply{Apply: &watchv1.Apply{Manifests: []byte("kind: [oops"), Namespace: ns}}},
			errHas: "manifest document 1",
		},
		{
			name:   "unknown kind",
			op:     &watchv1.Operation{Kind: &watchv1.Operation_Apply{Apply: &watchv1.Apply{Manifests: []byte("apiVersion: example.com/v1\nkind: Nothing\nmetadata: {name: x}\n")}}},
			errHas: "Nothing",
		},
		{
			name:   "invalid object",
			op:     &watchv1.Operation{Kind: &watchv1.Operation_Apply{Apply: &watchv1.Apply{Manifests: []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: broken}\nspec: {replicas: 1}\n"), Namespace: ns}}},
			code:   422,
			reason: "Invalid",
			errHas: "selector",
		},
		{
			name:    "scale",
			op:      &watchv1.Operation{Kind: &watchv1.Operation_Scale{Scale: &watchv1.Scale{Object: web, Replicas: 3}}},
			ok:      true,
			actions: []string{"scaled"},
			check: func(t *testing.T) {
				d, err := deployments.Get(ctx, "web", metav1.GetOptions{})
				require.NoError(t, err)
				require.Equal(t, int32(3), *d.Spec.Replicas)
			},
		},
		{
			name:    "delete",
			op:      &watchv1.Operation{Kind: &watchv1.Operation_Delete{Delete: &watchv1.Delete{Object: web}}},
			ok:      true,
			actions: []string{"deleted"},
			check: func(t *testing.T) {
				_, err := deployments.Get(ctx, "web", metav1.GetOptions{})
				require.True(t, apierrors.IsNotFound(err))
			},
		},
		{
			name:   "delete what is gone",
			op:     &watchv1.Operation{Kind: &watchv1.Operation_Delete{Delete: &watchv1.Delete{Object: web}}},
			code:   404,
			reason: "NotFound",
			errHas: `"web" not found`,
		},
		{
			name:   "no command",
			op:     &watchv1.Operation{},
			errHas: "no command",
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.op.Id, tt.op.Account = "op-"+itoa(i), "ops"
			tt.op.Envelope = events.NewEnvelope(tenant, 0, "", "")
			e.publish(t, e.subj.Ops(tenant, "ops"), signOp(t, e.signer, tt.op))
			var res *watchv1.OperationResult
			require.Eventually(t, func() bool {
				for _, r := range read[*watchv1.OperationResult](e, e.subj.OperationResults(tenant)) {
					if r.GetId() == tt.op.GetId() {
						res = r
						return true
					}
				}
				return false
			}, waitFor, poll)
			require.Equal(t, tt.ok, res.GetOk(), res.GetError())
			require.Equal(t, "ops", res.GetAccount())
			require.Equal(t, cfg.WatcherID, res.GetWatcherId())
			require.Equal(t, tt.code, res.GetCode())
			require.Equal(t, tt.reason, res.GetReason())
			if tt.errHas != "" {
				require.Contains(t, res.GetError(), tt.errHas)
			}
			var actions []string
			for _, o := range res.GetObjects() {
				actions = append(actions, o.GetAction())
				require.Equal(t, ns, o.GetObject().GetNamespace())
				if o.GetAction() != "deleted" {
					require.NotEmpty(t, o.GetResourceVersion())
				}
			}
			require.Equal(t, tt.actions, actions)
			if tt.check != nil {
				tt.check(t)
			}
		})
	}
}

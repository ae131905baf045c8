package app

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/signing"
	watchv1 "github.com/outposthq/outpost/proto/outpost/watch/v1"
)

type operation struct {
	ID      string `json:"id"`
	Account string `json:"account"`
	Type    string `json:"type"`
	State   string `json:"state"`
	OK      *bool  `json:"ok"`
	Error   string `json:"error"`
	Code    int32  `json:"code"`
	Reason  string `json:"reason"`
	Objects []struct {
		Name            string `json:"name"`
		ResourceVersion string `json:"resourceVersion"`
		Action          string `json:"action"`
	} `json:"objects"`
}

// serveOps plays the holder of account: it answers every operation with
// answer's result.
func (e *env) serveOps(account string, answer func(*watchv1.Operation) *watchv1.OperationResult) chan *watchv1.Operation {
	e.t.Helper()
	got := make(chan *watchv1.Operation, 16)
	// The holder trusts the key the migrator generated at its first start.
	v, err := signing.VerifierConfig{TrustedKeysFile: e.cfg.Signing.KeyFile + ".pub"}.Verifier()
	require.NoError(e.t, err)
	cons, err := e.conn.Consume(e.ctx, queue.ConsumerConfig{Name: "k8s-watcher", Subject: e.subj.Ops(tenant, account)}, func(ctx context.Context, d queue.Delivery) {
		op, err := events.DecodeAs[*watchv1.Operation](d.Header(), d.Data())
		if err == nil {
			err = v.Verify(op, d.Data(), op.GetEnvelope().GetTenant(), signing.Binding{
				Tenant: tenant, Scope: signing.AccountScope(account), Subject: op.GetId(), Attempt: 1,
			})
		}
		if err != nil {
			_ = d.Term(ctx, err.Error())
			return
		}
		got <- op
		if res := answer(op); res != nil {
			res.Id, res.Account, res.WatcherId = op.GetId(), account, "w1"
			e.publish(e.subj.OperationResults(tenant), res)
		}
		_ = d.Ack(ctx)
	})
	require.NoError(e.t, err)
	e.t.Cleanup(func() { _ = cons.Stop(context.Background()) })
	return got
}

func TestOperations(t *testing.T) {
	e := newEnv(t, 1)
	l := e.leases("z1")
	w := e.startWatcher("z1", "w1")
	e.activate(w, l, "ops")
	hold := make(chan struct{})
	sent := e.serveOps("ops", func(op *watchv1.Operation) *watchv1.OperationResult {
		switch k := op.GetKind().(type) {
		case *watchv1.Operation_Apply:
			return &watchv1.OperationResult{Ok: true, Objects: []*watchv1.ObjectResult{{Object: &watchv1.ObjectRef{ApiVersion: "v1", Kind: "ConfigMap", Namespace: k.Apply.GetNamespace(), Name: "cm"}, ResourceVersion: "7", Action: "created"}}}
		case *watchv1.Operation_Delete:
			<-hold // answered once the test has seen it PENDING
			return &watchv1.OperationResult{Ok: false, Error: `configmaps "missing" not found`, Code: 404, Reason: "NotFound"}
		}
		return &watchv1.OperationResult{Ok: true}
	})

	// Applied and waited for.
	code, b := e.do(http.MethodPost, "/api/v1/accounts/ops/operations?wait=5s", `{"type":"apply","manifests":"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n","namespace":"ns1","force":true}`)
	require.Equal(t, http.StatusOK, code, string(b))
	op := decode[operation](t, b)
	require.Equal(t, "SUCCEEDED", op.State)
	require.True(t, *op.OK)
	require.Equal(t, "created", op.Objects[0].Action)
	applied := <-sent
	require.True(t, applied.GetApply().GetForce())
	require.Equal(t, "ns1", applied.GetApply().GetNamespace())
	require.Contains(t, string(applied.GetApply().GetManifests()), "kind: ConfigMap")

	// Without wait: 202, then polled.
	code, b = e.do(http.MethodPost, "/armory/accounts/ops/operations", `{"type":"delete","apiVersion":"v1","kind":"ConfigMap","namespace":"ns1","name":"missing"}`)
	require.Equal(t, http.StatusAccepted, code, string(b))
	op = decode[operation](t, b)
	require.Equal(t, "PENDING", op.State)
	require.Nil(t, op.OK, "ok is only set once the result arrived")
	code, b = e.do(http.MethodGet, "/api/v1/accounts/ops/operations/"+op.ID, nil)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "PENDING", decode[operation](t, b).State)
	close(hold)
	var done operation
	require.Eventually(t, func() bool {
		_, b, err := e.tryDo(0, http.MethodGet, "/api/v1/accounts/ops/operations/"+op.ID, nil, nil)
		return err == nil && json.Unmarshal(b, &done) == nil && done.State != "PENDING"
	}, wait, tick)
	notOK := false
	require.Equal(t, operation{ID: op.ID, Account: "ops", Type: "delete", State: "FAILED", OK: &notOK, Error: `configmaps "missing" not found`, Code: 404, Reason: "NotFound"}, done)

	for _, tt := range []struct {
		name, path, body string
		code             int
	}{
		{"scale without replicas", "/api/v1/accounts/ops/operations", `{"type":"scale","apiVersion":"apps/v1","kind":"Deployment","namespace":"ns1","name":"web"}`, http.StatusBadRequest},
		{"unknown type", "/api/v1/accounts/ops/operations", `{"type":"restart"}`, http.StatusBadRequest},
		{"unknown field", "/api/v1/accounts/ops/operations", `{"type":"apply","manifest":"x"}`, http.StatusBadRequest},
		{"bad wait", "/api/v1/accounts/ops/operations?wait=soon", `{"type":"apply","manifests":"x"}`, http.StatusBadRequest},
		{"unknown account", "/api/v1/accounts/nobody/operations", `{"type":"apply","manifests":"x"}`, http.StatusNotFound},
		{"scale", "/api/v1/accounts/ops/operations?wait=5s", `{"type":"scale","apiVersion":"apps/v1","kind":"Deployment","namespace":"ns1","name":"web","replicas":3}`, http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, b := e.do(http.MethodPost, tt.path, tt.body)
			require.Equal(t, tt.code, code, string(b))
		})
	}
	require.Equal(t, 1.0, e.metric("outpost_account_operations_total", map[string]string{"type": "delete", "outcome": "failed"}))
	code, _ = e.do(http.MethodGet, "/api/v1/accounts/ops/operations/no-such-op", nil)
	require.Equal(t, http.StatusNotFound, code)

	code, b = e.do(http.MethodPost, "/api/v1/accounts", `[{"name":"idle"}]`)
	require.Equal(t, http.StatusOK, code, string(b))
	code, b = e.do(http.MethodPost, "/api/v1/accounts/idle/operations", `{"type":"apply","manifests":"x"}`)
	require.Equal(t, http.StatusConflict, code, string(b))
}

package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/signing"
	accountsv1 "github.com/outposthq/outpost/proto/outpost/accounts/v1"
	watchv1 "github.com/outposthq/outpost/proto/outpost/watch/v1"
)

// deadLetters returns the dead letters of role, by the id of the message
// (operation id, or account of a lease), with their reasons.
func (e *env) deadLetters(t *testing.T, role queue.Role) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := e.conn.Read(context.Background(), e.subj.DeadLetter(tenant, role), queue.ReadOptions{}, func(m queue.StreamMessage) bool {
		if op, err := events.DecodeAs[*watchv1.Operation](m.Header, m.Data); err == nil {
			out[op.GetId()] = m.Header[queue.HeaderDeadLetterReason]
		} else if l, err := events.DecodeAs[*accountsv1.AccountLease](m.Header, m.Data); err == nil {
			out[l.GetSpec().GetName()] = m.Header[queue.HeaderDeadLetterReason]
		}
		return true
	})
	require.NoError(t, err)
	return out
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// Operations and leases the control plane did not sign, as sent, for this
// tenant and account or zone are dead-lettered with the reason and never
// used: the ConfigMap each operation would create does not exist, and no
// account is activated from a refused lease.
func TestUnverifiedOperationsAndLeasesAreRefused(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(t)
	e.start(t, cfg)
	ns := e.kc.CreateNamespace(t)
	e.activated(t, e.spec("signed", ns), 1)
	stranger := newSigner(t, "stranger-1")

	op := func(id string) *watchv1.Operation {
		cm := fmt.Sprintf(`{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": %q}, "data": {"k": "v"}}`, id)
		return &watchv1.Operation{
			Envelope: events.NewEnvelope(tenant, 1, id, ""), Id: id, Account: "signed",
			Kind: &watchv1.Operation_Apply{Apply: &watchv1.Apply{Manifests: []byte(cm), Namespace: ns}},
		}
	}
	ops := []struct {
		id, reason, label string
		op                *watchv1.Operation
	}{
		{id: "unsigned", reason: "not signed", label: signing.ReasonUnsigned, op: op("unsigned")},
		{id: "tampered", reason: "bad signature", label: signing.ReasonBadSignature, op: func() *watchv1.Operation {
			o := signOp(t, e.signer, op("tampered"))
			o.GetApply().Namespace = "kube-system"
			return o
		}()},
		{id: "expired", reason: "expired", label: signing.ReasonExpired, op: signOp(t, e.signer.WithClock(func() time.Time { return time.Now().Add(-2 * time.Hour) }), op("expired"))},
		{id: "stranger", reason: "unknown signing key", label: signing.ReasonUnknownKey, op: signOp(t, stranger, op("stranger"))},
		{id: "other-account", reason: "another pool or zone", label: signing.ReasonWrongScope, op: func() *watchv1.Operation {
			o := op("other-account")
			require.NoError(t, e.signer.Sign(o, signing.Binding{Tenant: tenant, Scope: signing.AccountScope("other"), Subject: o.GetId(), Attempt: 1}))
			return o
		}()},
	}
	for _, tc := range ops {
		e.publish(t, e.subj.Ops(tenant, "signed"), tc.op)
	}
	leases := []struct {
		name, reason, label string
		lease               *accountsv1.AccountLease
	}{
		{name: "rogue-unsigned", reason: "not signed", label: signing.ReasonUnsigned,
			lease: &accountsv1.AccountLease{Envelope: events.NewEnvelope(tenant, 1, "", ""), Spec: e.spec("rogue-unsigned", ns), Generation: 1, Zone: zone}},
		{name: "rogue-zone", reason: "another pool or zone", label: signing.ReasonWrongScope,
			lease: signLease(t, e.signer, &accountsv1.AccountLease{Envelope: events.NewEnvelope(tenant, 1, "", ""), Spec: e.spec("rogue-zone", ns), Generation: 1, Zone: "elsewhere"})},
	}
	for _, tc := range leases {
		e.publish(t, e.subj.Leases(tenant, zone), tc.lease)
	}

	var dead map[string]string
	require.Eventually(t, func() bool {
		opsDead, leasesDead := e.deadLetters(t, queue.RoleOps), e.deadLetters(t, queue.RoleLeases)
		dead = map[string]string{}
		for k, v := range opsDead {
			dead[k] = v
		}
		for k, v := range leasesDead {
			dead[k] = v
		}
		return len(dead) == len(ops)+len(leases)
	}, waitFor, poll)
	metrics := scrape(t, cfg.OpsAddr)
	for _, tc := range ops {
		t.Run("operation "+tc.id, func(t *testing.T) {
			require.True(t, strings.HasPrefix(dead[tc.id], "refused: "), dead[tc.id])
			require.Contains(t, dead[tc.id], tc.reason)
			require.Contains(t, metrics, fmt.Sprintf(`outpost_watcher_refused_messages_total{reason=%q,type="operation"} 1`, tc.label))
			_, err := e.kc.Client().CoreV1().ConfigMaps(ns).Get(context.Background(), tc.id, metav1.GetOptions{})
			require.True(t, apierrors.IsNotFound(err), "operation %s ran: %v", tc.id, err)
			_, err = e.kc.Client().CoreV1().ConfigMaps("kube-system").Get(context.Background(), tc.id, metav1.GetOptions{})
			require.True(t, apierrors.IsNotFound(err), "operation %s ran: %v", tc.id, err)
			for _, r := range read[*watchv1.OperationResult](e, e.subj.OperationResults(tenant)) {
				require.NotEqual(t, tc.id, r.GetId(), "a refused operation reports nothing")
			}
		})
	}
	for _, tc := range leases {
		t.Run("lease "+tc.name, func(t *testing.T) {
			require.Contains(t, dead[tc.name], tc.reason)
			require.Contains(t, metrics, fmt.Sprintf(`outpost_watcher_refused_messages_total{reason=%q,type="lease"} 1`, tc.label))
			for _, st := range read[*accountsv1.AccountStatus](e, e.subj.AccountStatus(tenant)) {
				require.NotEqual(t, tc.name, st.GetAccount(), "a refused lease reports nothing")
			}
		})
	}

	// A signed operation still runs.
	e.publish(t, e.subj.Ops(tenant, "signed"), signOp(t, e.signer, op("genuine")))
	require.Eventually(t, func() bool {
		_, err := e.kc.Client().CoreV1().ConfigMaps(ns).Get(context.Background(), "genuine", metav1.GetOptions{})
		return err == nil
	}, waitFor, poll)
}

package events

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outposthq/outpost/libs/queue"
	accountsv1 "github.com/outposthq/outpost/proto/outpost/accounts/v1"
	auditv1 "github.com/outposthq/outpost/proto/outpost/audit/v1"
	commonv1 "github.com/outposthq/outpost/proto/outpost/common/v1"
	ingestv1 "github.com/outposthq/outpost/proto/outpost/ingest/v1"
	instancesv1 "github.com/outposthq/outpost/proto/outpost/instances/v1"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	watchv1 "github.com/outposthq/outpost/proto/outpost/watch/v1"
)

// The golden files under testdata/golden are messages encoded by the
// version that wrote them, one per event type that travels on a subject.
// They are written once (go test -run TestGoldenDecode -update) and then kept:
// every later version must still read them, because agents and the
// control plane are upgraded on their own schedules. Regenerate one only
// for a new type; never to make a failing check pass.
var update = flag.Bool("update", false, "write the golden files of the event types that have none")

const goldenDir = "testdata/golden"

var goldenTime = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func goldenEnvelope() *commonv1.Envelope {
	return &commonv1.Envelope{
		Tenant:         "acme",
		EventId:        "00000000-0000-4000-8000-000000000001",
		IdempotencyKey: "key-1",
		Attempt:        2,
		TraceId:        "4bf92f3577b34da6a3ce929d0e0e4736",
		OccurredAt:     timestamppb.New(goldenTime),
		SentAt:         timestamppb.New(goldenTime.Add(time.Second)),
	}
}

func goldenSpec() *jobsv1.JobSpec {
	return &jobsv1.JobSpec{
		Pool: "gpu",
		Task: &jobsv1.Task{Kind: &jobsv1.Task_Command{Command: &jobsv1.CommandTask{
			Command: "echo", Args: []string{"hello", "${NAME}"}, Env: map[string]string{"A": "1"},
			Recipe: &ingestv1.IngestTask{Recipe: "source: {type: postgres}", Format: ingestv1.RecipeFormat_RECIPE_FORMAT_YAML},
		}}},
		Retry:   &jobsv1.RetryPolicy{MaxAttempts: 3, InitialBackoff: durationpb.New(time.Second), MaxBackoff: durationpb.New(time.Minute), Multiplier: 2},
		Timeout: durationpb.New(10 * time.Minute),
		Labels:  map[string]string{"team": "data"},
	}
}

// goldenMessages are the messages the golden files were written from.
func goldenMessages() []proto.Message {
	env := goldenEnvelope
	aspect, err := structpb.NewStruct(map[string]any{"name": "orders", "rows": 42})
	if err != nil {
		panic(err)
	}
	minRows := int64(1)
	return []proto.Message{
		&jobsv1.SubmitJob{Envelope: env(), JobId: "job-1", Spec: goldenSpec()},
		&auditv1.AuditEvent{Envelope: env(), Principal: "apikey:0123456789abcdef", Name: "ci", Action: "POST /api/v1/jobs",
			Target: "/api/v1/jobs", Result: "ok", Status: 201, RequestId: "r-1", Service: "scheduler"},
		&instancesv1.InstanceHeartbeat{Envelope: env(), Id: "outpost-account-migrator-0", Service: "account-migrator",
			BaseUrl: "http://10.0.15.246:8081", Ready: true, Version: "v1.2.3", IntervalMs: 10000, StartedAt: timestamppb.New(goldenTime)},
		&jobsv1.JobDispatched{Envelope: env(), JobId: "job-1", Spec: goldenSpec(), SubmittedAt: timestamppb.New(goldenTime)},
		&jobsv1.JobStatus{
			Envelope: env(), JobId: "job-1", State: jobsv1.JobState_JOB_STATE_QUEUED, Reason: "exit status 1",
			RunnerId: "runner-a", RetryAt: timestamppb.New(goldenTime.Add(time.Minute)),
			Result: &jobsv1.JobResult{ExitCode: 1, Duration: durationpb.New(3 * time.Second), Outputs: map[string]string{"rows": "42"}},
		},
		&jobsv1.JobStatusBatch{Envelope: env(), Statuses: []*jobsv1.JobStatus{
			{Envelope: env(), JobId: "job-1", State: jobsv1.JobState_JOB_STATE_SUCCEEDED, RunnerId: "runner-a", AttemptToken: "tok-1",
				StartedAt: timestamppb.New(goldenTime), Result: &jobsv1.JobResult{Duration: durationpb.New(time.Millisecond)},
				Logs: &jobsv1.LogChunk{FirstSeq: 1, AttemptToken: "tok-1", Lines: []*jobsv1.LogLine{{Time: timestamppb.New(goldenTime), Stream: "stdout", Text: "done"}}}},
			{Envelope: env(), JobId: "job-2", State: jobsv1.JobState_JOB_STATE_FAILED, Reason: "exit status 2", RunnerId: "runner-a", AttemptToken: "tok-2",
				StartedAt: timestamppb.New(goldenTime), Result: &jobsv1.JobResult{ExitCode: 2}},
		}},
		&jobsv1.LogChunk{Envelope: env(), JobId: "job-1", FirstSeq: 7, Lines: []*jobsv1.LogLine{
			{Time: timestamppb.New(goldenTime), Stream: "stdout", Text: "hello"},
			{Time: timestamppb.New(goldenTime), Stream: "stderr", Text: "warning"},
		}},
		&jobsv1.CancelJob{Envelope: env(), JobId: "job-1", Reason: "user asked"},
		&jobsv1.RunnerHeartbeat{Envelope: env(), RunnerId: "runner-a", Pool: "gpu", Version: "1.2.3", Running: 1, Capacity: 4, Draining: true},
		&ingestv1.JobRecords{
			Envelope: env(), JobId: "job-1", FirstSeq: 3, ProducedAt: timestamppb.New(goldenTime),
			Records: []*ingestv1.MetadataRecord{{
				Urn: "urn:li:dataset:(urn:li:dataPlatform:postgres,shop.public.orders,PROD)", EntityType: "dataset",
				Platform: "postgres", Name: "shop.public.orders", Aspects: map[string]*structpb.Struct{"datasetProperties": aspect},
			}},
			Checks: []*ingestv1.CheckResult{{Name: "rows", Outcome: ingestv1.CheckOutcome_CHECK_OUTCOME_PASS, Observed: "42", Message: "ok"}},
		},
		&accountsv1.AccountLease{
			Envelope: env(), Generation: 5, Zone: "eu-1", Offer: true,
			Spec: &accountsv1.AccountSpec{
				Name: "account-01", KubeconfigFile: "/etc/kube/a", KubeconfigSealed: []byte{1, 2, 3}, ServiceAccount: true,
				Context: "prod", Namespaces: []string{"default"}, Kinds: []string{"Deployment"}, OmitKinds: []string{"Event"},
			},
		},
		&accountsv1.AccountStatus{
			Envelope: env(), Account: "account-01", Generation: 5, Type: accountsv1.AccountStatus_TYPE_ACTIVATED,
			Zone: "eu-1", WatcherId: "watcher-a", ErrorMessage: "none",
			Cluster: &accountsv1.ClusterInfo{Host: "https://10.0.0.1:6443", CaFingerprintSha256: "ab:cd", ServerVersion: "v1.31.0"},
			Kinds: []*accountsv1.WatchedKind{{
				Group: "apps", Version: "v1", Kind: "Deployment", Resource: "deployments", Namespaced: true, Token: "apps_v1_Deployment",
			}},
			Skipped: []*accountsv1.SkippedKind{{Kind: "Secret", Reason: "forbidden"}},
		},
		&accountsv1.WatcherHeartbeat{
			Envelope: env(), Zone: "eu-1", WatcherId: "watcher-a", IntervalMs: 5000, StartedAt: timestamppb.New(goldenTime), Stopping: true,
			Accounts: []*accountsv1.HeldAccount{{Account: "account-01", Generation: 5}},
		},
		&accountsv1.AccountControl{
			Envelope: env(), Account: "account-01", Generation: 5,
			Command: &accountsv1.AccountControl_Resync{Resync: &accountsv1.Resync{KindToken: "apps_v1_Deployment", Reason: "drift"}},
		},
		&accountsv1.InventoryChecksum{Envelope: env(), Account: "account-01", Generation: 5, KindToken: "apps_v1_Deployment", Count: 12, Checksum: "sha256:00ff"},
		&watchv1.ObjectDelta{
			Envelope: env(), Account: "account-01", Type: watchv1.ObjectDelta_TYPE_UPDATED, Group: "apps", Version: "v1",
			Kind: "Deployment", Resource: "deployments", Namespace: "default", Name: "web", Uid: "uid-1",
			ResourceVersion: "100", Object: []byte(`{"kind":"Deployment"}`), Generation: 5,
		},
		&watchv1.Operation{
			Envelope: env(), Id: "op-1", Account: "account-01",
			Kind: &watchv1.Operation_Scale{Scale: &watchv1.Scale{
				Object: &watchv1.ObjectRef{ApiVersion: "apps/v1", Kind: "Deployment", Namespace: "default", Name: "web"}, Replicas: 3,
			}},
		},
		&watchv1.OperationResult{
			Envelope: env(), Id: "op-1", Account: "account-01", Ok: true, Error: "", Code: 200, Reason: "scaled", WatcherId: "watcher-a",
			Objects: []*watchv1.ObjectResult{{
				Object: &watchv1.ObjectRef{ApiVersion: "apps/v1", Kind: "Deployment", Namespace: "default", Name: "web"}, ResourceVersion: "101", Action: "scaled",
			}},
		},
		// Signed work and attempt tokens.
		&jobsv1.JobDispatched{Envelope: env(), JobId: "job-1", Spec: goldenSpec(), SubmittedAt: timestamppb.New(goldenTime),
			Signature: goldenSignature("pool/gpu"), AttemptToken: "tok-1"},
		&jobsv1.JobStatus{Envelope: env(), JobId: "job-1", State: jobsv1.JobState_JOB_STATE_SUCCEEDED, RunnerId: "runner-a", AttemptToken: "tok-1"},
		&jobsv1.LogChunk{Envelope: env(), JobId: "job-1", FirstSeq: 1, Lines: []*jobsv1.LogLine{{Time: timestamppb.New(goldenTime), Stream: "stdout", Text: "hi"}}, AttemptToken: "tok-1"},
		&ingestv1.JobRecords{Envelope: env(), JobId: "job-1", FirstSeq: 1, ProducedAt: timestamppb.New(goldenTime), AttemptToken: "tok-1"},
		&accountsv1.AccountLease{Envelope: env(), Generation: 5, Zone: "eu-1", Spec: &accountsv1.AccountSpec{Name: "account-01"}, Signature: goldenSignature("zone/eu-1")},
		&watchv1.Operation{Envelope: env(), Id: "op-1", Account: "account-01", Kind: &watchv1.Operation_Delete{Delete: &watchv1.Delete{
			Object: &watchv1.ObjectRef{ApiVersion: "v1", Kind: "ConfigMap", Namespace: "default", Name: "web"},
		}}, Signature: goldenSignature("account/account-01")},
		// An assertion task travels inside JobDispatched: keep one too.
		&jobsv1.JobDispatched{Envelope: env(), JobId: "job-2", Spec: &jobsv1.JobSpec{Pool: "default", Task: &jobsv1.Task{Kind: &jobsv1.Task_Assertion{Assertion: &ingestv1.AssertionTask{
			Source: "type: postgres", Format: ingestv1.RecipeFormat_RECIPE_FORMAT_YAML,
			Checks: []*ingestv1.Check{{Name: "rows", Kind: &ingestv1.Check_RowCount{RowCount: &ingestv1.RowCountCheck{Table: "orders", Min: &minRows}}}},
		}}}}},
	}
}

// goldenName is the file name of m's golden message; a type with two
// golden messages tells the second by its job id, or by ".signed" when it
// carries a signature or an attempt token.
func goldenName(m proto.Message) string {
	r := m.ProtoReflect()
	for _, f := range []protoreflect.Name{"signature", "attempt_token"} {
		if fd := r.Descriptor().Fields().ByName(f); fd != nil && r.Has(fd) {
			return TypeName(m) + ".signed.binpb"
		}
	}
	if d, ok := m.(*jobsv1.JobDispatched); ok && d.GetJobId() != "job-1" {
		return TypeName(m) + "." + d.GetJobId() + ".binpb"
	}
	return TypeName(m) + ".binpb"
}

func goldenSignature(scope string) *commonv1.Signature {
	sig := make([]byte, 64)
	for i := range sig {
		sig[i] = byte(i)
	}
	return &commonv1.Signature{KeyId: "key-1", ExpiresAt: timestamppb.New(goldenTime.Add(24 * time.Hour)), Signature: sig, Scope: scope}
}

func requireGoldenSignature(t *testing.T, sig *commonv1.Signature, scope string) {
	t.Helper()
	require.Equal(t, "key-1", sig.GetKeyId())
	require.Equal(t, goldenTime.Add(24*time.Hour), sig.GetExpiresAt().AsTime())
	require.Len(t, sig.GetSignature(), 64)
	require.EqualValues(t, 63, sig.GetSignature()[63])
	require.Equal(t, scope, sig.GetScope())
}

// goldenChecks hold, per file, what this version must read from it. They
// are written out by hand, not compared with goldenMessages, so that a
// change to the samples cannot make them agree with a broken reader.
var goldenChecks = map[string]func(t *testing.T, m proto.Message){
	"outpost.jobs.v1.JobDispatched.signed.binpb": func(t *testing.T, m proto.Message) {
		d := m.(*jobsv1.JobDispatched)
		require.Equal(t, "job-1", d.GetJobId())
		requireGoldenSpec(t, d.GetSpec())
		requireGoldenSignature(t, d.GetSignature(), "pool/gpu")
		require.Equal(t, "tok-1", d.GetAttemptToken())
	},
	"outpost.jobs.v1.JobStatus.signed.binpb": func(t *testing.T, m proto.Message) {
		s := m.(*jobsv1.JobStatus)
		require.Equal(t, jobsv1.JobState_JOB_STATE_SUCCEEDED, s.GetState())
		require.Equal(t, "tok-1", s.GetAttemptToken())
	},
	"outpost.jobs.v1.LogChunk.signed.binpb": func(t *testing.T, m proto.Message) {
		c := m.(*jobsv1.LogChunk)
		require.Equal(t, "hi", c.GetLines()[0].GetText())
		require.Equal(t, "tok-1", c.GetAttemptToken())
	},
	"outpost.ingest.v1.JobRecords.signed.binpb": func(t *testing.T, m proto.Message) {
		r := m.(*ingestv1.JobRecords)
		require.Equal(t, "job-1", r.GetJobId())
		require.Equal(t, "tok-1", r.GetAttemptToken())
	},
	"outpost.accounts.v1.AccountLease.signed.binpb": func(t *testing.T, m proto.Message) {
		l := m.(*accountsv1.AccountLease)
		require.Equal(t, "account-01", l.GetSpec().GetName())
		requireGoldenSignature(t, l.GetSignature(), "zone/eu-1")
	},
	"outpost.watch.v1.Operation.signed.binpb": func(t *testing.T, m proto.Message) {
		o := m.(*watchv1.Operation)
		require.Equal(t, "web", o.GetDelete().GetObject().GetName())
		requireGoldenSignature(t, o.GetSignature(), "account/account-01")
	},
	"outpost.audit.v1.AuditEvent.binpb": func(t *testing.T, m proto.Message) {
		a := m.(*auditv1.AuditEvent)
		require.Equal(t, "apikey:0123456789abcdef", a.GetPrincipal())
		require.Equal(t, "ci", a.GetName())
		require.Equal(t, "POST /api/v1/jobs", a.GetAction())
		require.Equal(t, "/api/v1/jobs", a.GetTarget())
		require.Equal(t, "ok", a.GetResult())
		require.EqualValues(t, 201, a.GetStatus())
		require.Equal(t, "r-1", a.GetRequestId())
		require.Equal(t, "scheduler", a.GetService())
	},
	"outpost.instances.v1.InstanceHeartbeat.binpb": func(t *testing.T, m proto.Message) {
		h := m.(*instancesv1.InstanceHeartbeat)
		requireGoldenEnvelope(t, h.GetEnvelope())
		require.Equal(t, "outpost-account-migrator-0", h.GetId())
		require.Equal(t, "account-migrator", h.GetService())
		require.Equal(t, "http://10.0.15.246:8081", h.GetBaseUrl())
		require.True(t, h.GetReady())
		require.Equal(t, "v1.2.3", h.GetVersion())
		require.EqualValues(t, 10000, h.GetIntervalMs())
		require.Equal(t, goldenTime, h.GetStartedAt().AsTime())
	},
	"outpost.jobs.v1.SubmitJob.binpb": func(t *testing.T, m proto.Message) {
		s := m.(*jobsv1.SubmitJob)
		require.Equal(t, "job-1", s.GetJobId())
		requireGoldenSpec(t, s.GetSpec())
	},
	"outpost.jobs.v1.JobDispatched.binpb": func(t *testing.T, m proto.Message) {
		d := m.(*jobsv1.JobDispatched)
		require.Equal(t, "job-1", d.GetJobId())
		require.Equal(t, goldenTime, d.GetSubmittedAt().AsTime())
		requireGoldenSpec(t, d.GetSpec())
	},
	"outpost.jobs.v1.JobDispatched.job-2.binpb": func(t *testing.T, m proto.Message) {
		a := m.(*jobsv1.JobDispatched).GetSpec().GetTask().GetAssertion()
		require.Equal(t, "type: postgres", a.GetSource())
		require.Len(t, a.GetChecks(), 1)
		require.Equal(t, "orders", a.GetChecks()[0].GetRowCount().GetTable())
		require.NotNil(t, a.GetChecks()[0].GetRowCount().Min)
		require.EqualValues(t, 1, a.GetChecks()[0].GetRowCount().GetMin())
		require.Nil(t, a.GetChecks()[0].GetRowCount().Max)
	},
	"outpost.jobs.v1.JobStatus.binpb": func(t *testing.T, m proto.Message) {
		s := m.(*jobsv1.JobStatus)
		require.Equal(t, "job-1", s.GetJobId())
		require.Equal(t, jobsv1.JobState_JOB_STATE_QUEUED, s.GetState())
		require.Equal(t, "exit status 1", s.GetReason())
		require.Equal(t, "runner-a", s.GetRunnerId())
		require.Equal(t, goldenTime.Add(time.Minute), s.GetRetryAt().AsTime())
		require.EqualValues(t, 1, s.GetResult().GetExitCode())
		require.Equal(t, 3*time.Second, s.GetResult().GetDuration().AsDuration())
		require.Equal(t, map[string]string{"rows": "42"}, s.GetResult().GetOutputs())
	},
	"outpost.jobs.v1.JobStatusBatch.binpb": func(t *testing.T, m proto.Message) {
		b := m.(*jobsv1.JobStatusBatch)
		require.Len(t, b.GetStatuses(), 2)
		first, second := b.GetStatuses()[0], b.GetStatuses()[1]
		require.Equal(t, "job-1", first.GetJobId())
		require.Equal(t, jobsv1.JobState_JOB_STATE_SUCCEEDED, first.GetState())
		require.Equal(t, "tok-1", first.GetAttemptToken())
		require.Equal(t, goldenTime, first.GetStartedAt().AsTime())
		require.Equal(t, "done", first.GetLogs().GetLines()[0].GetText())
		require.Equal(t, "job-2", second.GetJobId())
		require.Equal(t, jobsv1.JobState_JOB_STATE_FAILED, second.GetState())
		require.EqualValues(t, 2, second.GetResult().GetExitCode())
	},
	"outpost.jobs.v1.LogChunk.binpb": func(t *testing.T, m proto.Message) {
		c := m.(*jobsv1.LogChunk)
		require.Equal(t, "job-1", c.GetJobId())
		require.EqualValues(t, 7, c.GetFirstSeq())
		require.Len(t, c.GetLines(), 2)
		require.Equal(t, "stderr", c.GetLines()[1].GetStream())
		require.Equal(t, "warning", c.GetLines()[1].GetText())
		require.Equal(t, goldenTime, c.GetLines()[0].GetTime().AsTime())
	},
	"outpost.jobs.v1.CancelJob.binpb": func(t *testing.T, m proto.Message) {
		c := m.(*jobsv1.CancelJob)
		require.Equal(t, "job-1", c.GetJobId())
		require.Equal(t, "user asked", c.GetReason())
	},
	"outpost.jobs.v1.RunnerHeartbeat.binpb": func(t *testing.T, m proto.Message) {
		h := m.(*jobsv1.RunnerHeartbeat)
		require.Equal(t, "runner-a", h.GetRunnerId())
		require.Equal(t, "gpu", h.GetPool())
		require.Equal(t, "1.2.3", h.GetVersion())
		require.EqualValues(t, 1, h.GetRunning())
		require.EqualValues(t, 4, h.GetCapacity())
		require.True(t, h.GetDraining())
	},
	"outpost.ingest.v1.JobRecords.binpb": func(t *testing.T, m proto.Message) {
		r := m.(*ingestv1.JobRecords)
		require.Equal(t, "job-1", r.GetJobId())
		require.EqualValues(t, 3, r.GetFirstSeq())
		require.Equal(t, goldenTime, r.GetProducedAt().AsTime())
		require.Len(t, r.GetRecords(), 1)
		rec := r.GetRecords()[0]
		require.Equal(t, "urn:li:dataset:(urn:li:dataPlatform:postgres,shop.public.orders,PROD)", rec.GetUrn())
		require.Equal(t, "dataset", rec.GetEntityType())
		require.Equal(t, "postgres", rec.GetPlatform())
		require.Equal(t, "shop.public.orders", rec.GetName())
		require.Equal(t, map[string]any{"name": "orders", "rows": float64(42)}, rec.GetAspects()["datasetProperties"].AsMap())
		require.Len(t, r.GetChecks(), 1)
		require.Equal(t, ingestv1.CheckOutcome_CHECK_OUTCOME_PASS, r.GetChecks()[0].GetOutcome())
		require.Equal(t, "42", r.GetChecks()[0].GetObserved())
	},
	"outpost.accounts.v1.AccountLease.binpb": func(t *testing.T, m proto.Message) {
		l := m.(*accountsv1.AccountLease)
		require.EqualValues(t, 5, l.GetGeneration())
		require.Equal(t, "eu-1", l.GetZone())
		require.True(t, l.GetOffer())
		s := l.GetSpec()
		require.Equal(t, "account-01", s.GetName())
		require.Equal(t, "/etc/kube/a", s.GetKubeconfigFile())
		require.Equal(t, []byte{1, 2, 3}, s.GetKubeconfigSealed())
		require.True(t, s.GetServiceAccount())
		require.Equal(t, "prod", s.GetContext())
		require.Equal(t, []string{"default"}, s.GetNamespaces())
		require.Equal(t, []string{"Deployment"}, s.GetKinds())
		require.Equal(t, []string{"Event"}, s.GetOmitKinds())
	},
	"outpost.accounts.v1.AccountStatus.binpb": func(t *testing.T, m proto.Message) {
		s := m.(*accountsv1.AccountStatus)
		require.Equal(t, "account-01", s.GetAccount())
		require.EqualValues(t, 5, s.GetGeneration())
		require.Equal(t, accountsv1.AccountStatus_TYPE_ACTIVATED, s.GetType())
		require.Equal(t, "eu-1", s.GetZone())
		require.Equal(t, "watcher-a", s.GetWatcherId())
		require.Equal(t, "none", s.GetErrorMessage())
		require.Equal(t, "https://10.0.0.1:6443", s.GetCluster().GetHost())
		require.Equal(t, "ab:cd", s.GetCluster().GetCaFingerprintSha256())
		require.Equal(t, "v1.31.0", s.GetCluster().GetServerVersion())
		require.Len(t, s.GetKinds(), 1)
		require.Equal(t, "apps_v1_Deployment", s.GetKinds()[0].GetToken())
		require.Equal(t, "deployments", s.GetKinds()[0].GetResource())
		require.True(t, s.GetKinds()[0].GetNamespaced())
		require.Len(t, s.GetSkipped(), 1)
		require.Equal(t, "forbidden", s.GetSkipped()[0].GetReason())
	},
	"outpost.accounts.v1.WatcherHeartbeat.binpb": func(t *testing.T, m proto.Message) {
		h := m.(*accountsv1.WatcherHeartbeat)
		require.Equal(t, "eu-1", h.GetZone())
		require.Equal(t, "watcher-a", h.GetWatcherId())
		require.EqualValues(t, 5000, h.GetIntervalMs())
		require.Equal(t, goldenTime, h.GetStartedAt().AsTime())
		require.True(t, h.GetStopping())
		require.Len(t, h.GetAccounts(), 1)
		require.Equal(t, "account-01", h.GetAccounts()[0].GetAccount())
		require.EqualValues(t, 5, h.GetAccounts()[0].GetGeneration())
	},
	"outpost.accounts.v1.AccountControl.binpb": func(t *testing.T, m proto.Message) {
		c := m.(*accountsv1.AccountControl)
		require.Equal(t, "account-01", c.GetAccount())
		require.EqualValues(t, 5, c.GetGeneration())
		require.Equal(t, "apps_v1_Deployment", c.GetResync().GetKindToken())
		require.Equal(t, "drift", c.GetResync().GetReason())
	},
	"outpost.accounts.v1.InventoryChecksum.binpb": func(t *testing.T, m proto.Message) {
		c := m.(*accountsv1.InventoryChecksum)
		require.Equal(t, "account-01", c.GetAccount())
		require.EqualValues(t, 5, c.GetGeneration())
		require.Equal(t, "apps_v1_Deployment", c.GetKindToken())
		require.EqualValues(t, 12, c.GetCount())
		require.Equal(t, "sha256:00ff", c.GetChecksum())
	},
	"outpost.watch.v1.ObjectDelta.binpb": func(t *testing.T, m proto.Message) {
		d := m.(*watchv1.ObjectDelta)
		require.Equal(t, "account-01", d.GetAccount())
		require.Equal(t, watchv1.ObjectDelta_TYPE_UPDATED, d.GetType())
		require.Equal(t, []string{"apps", "v1", "Deployment", "deployments", "default", "web", "uid-1", "100"},
			[]string{d.GetGroup(), d.GetVersion(), d.GetKind(), d.GetResource(), d.GetNamespace(), d.GetName(), d.GetUid(), d.GetResourceVersion()})
		require.JSONEq(t, `{"kind":"Deployment"}`, string(d.GetObject()))
		require.EqualValues(t, 5, d.GetGeneration())
	},
	"outpost.watch.v1.Operation.binpb": func(t *testing.T, m proto.Message) {
		o := m.(*watchv1.Operation)
		require.Equal(t, "op-1", o.GetId())
		require.Equal(t, "account-01", o.GetAccount())
		require.EqualValues(t, 3, o.GetScale().GetReplicas())
		require.Equal(t, "web", o.GetScale().GetObject().GetName())
		require.Equal(t, "apps/v1", o.GetScale().GetObject().GetApiVersion())
	},
	"outpost.watch.v1.OperationResult.binpb": func(t *testing.T, m proto.Message) {
		r := m.(*watchv1.OperationResult)
		require.Equal(t, "op-1", r.GetId())
		require.Equal(t, "account-01", r.GetAccount())
		require.True(t, r.GetOk())
		require.EqualValues(t, 200, r.GetCode())
		require.Equal(t, "scaled", r.GetReason())
		require.Equal(t, "watcher-a", r.GetWatcherId())
		require.Len(t, r.GetObjects(), 1)
		require.Equal(t, "101", r.GetObjects()[0].GetResourceVersion())
	},
}

func requireGoldenSpec(t *testing.T, s *jobsv1.JobSpec) {
	t.Helper()
	require.Equal(t, "gpu", s.GetPool())
	c := s.GetTask().GetCommand()
	require.Equal(t, "echo", c.GetCommand())
	require.Equal(t, []string{"hello", "${NAME}"}, c.GetArgs())
	require.Equal(t, map[string]string{"A": "1"}, c.GetEnv())
	require.Equal(t, "source: {type: postgres}", c.GetRecipe().GetRecipe())
	require.Equal(t, ingestv1.RecipeFormat_RECIPE_FORMAT_YAML, c.GetRecipe().GetFormat())
	require.EqualValues(t, 3, s.GetRetry().GetMaxAttempts())
	require.Equal(t, time.Second, s.GetRetry().GetInitialBackoff().AsDuration())
	require.Equal(t, time.Minute, s.GetRetry().GetMaxBackoff().AsDuration())
	require.InDelta(t, 2.0, s.GetRetry().GetMultiplier(), 0)
	require.Equal(t, 10*time.Minute, s.GetTimeout().AsDuration())
	require.Equal(t, map[string]string{"team": "data"}, s.GetLabels())
}

func requireGoldenEnvelope(t *testing.T, env *commonv1.Envelope) {
	t.Helper()
	require.Equal(t, "acme", env.GetTenant())
	require.Equal(t, "00000000-0000-4000-8000-000000000001", env.GetEventId())
	require.Equal(t, "key-1", env.GetIdempotencyKey())
	require.EqualValues(t, 2, env.GetAttempt())
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", env.GetTraceId())
	require.Equal(t, goldenTime, env.GetOccurredAt().AsTime())
	require.Equal(t, goldenTime.Add(time.Second), env.GetSentAt().AsTime())
}

// eventTypes lists the event types of this version: every message of the
// outpost packages that carries an Envelope travels on a subject.
func eventTypes() []string {
	var out []string
	protoregistry.GlobalTypes.RangeMessages(func(mt protoreflect.MessageType) bool {
		d := mt.Descriptor()
		if !strings.HasPrefix(string(d.FullName()), "outpost.") {
			return true
		}
		if f := d.Fields().ByName("envelope"); f != nil && f.Message() != nil && f.Message().FullName() == "outpost.common.v1.Envelope" {
			out = append(out, string(d.FullName()))
		}
		return true
	})
	slices.Sort(out)
	return out
}

// writeMissingGolden writes the golden file of every sample that has none.
func writeMissingGolden(t *testing.T) {
	require.NoError(t, os.MkdirAll(goldenDir, 0o755))
	for _, m := range goldenMessages() {
		path := filepath.Join(goldenDir, goldenName(m))
		if _, err := os.Stat(path); err == nil {
			continue // a golden file is never rewritten
		}
		data, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(path, data, 0o644))
		t.Logf("wrote %s", path)
	}
}

// TestGoldenDecode reads every golden file with this version's Decode.
// With -update it first writes the files of new event types.
func TestGoldenDecode(t *testing.T) {
	if *update {
		writeMissingGolden(t)
	}
	files, err := filepath.Glob(filepath.Join(goldenDir, "*.binpb"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	seen := map[string]bool{}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			// outpost.<package>.v1.<Type>[.<variant>].binpb
			parts := strings.SplitN(strings.TrimSuffix(name, ".binpb"), ".", 5)
			require.GreaterOrEqual(t, len(parts), 4, "golden file name %s", name)
			typ := strings.Join(parts[:4], ".")
			seen[typ] = true
			data, err := os.ReadFile(path)
			require.NoError(t, err)
			m, err := Decode(map[string]string{queue.HeaderType: typ}, data)
			require.NoError(t, err)
			requireNoUnknown(t, m.ProtoReflect())
			requireGoldenEnvelope(t, m.ProtoReflect().Get(m.ProtoReflect().Descriptor().Fields().ByName("envelope")).Message().Interface().(*commonv1.Envelope))
			check, ok := goldenChecks[name]
			require.True(t, ok, "no checks for %s", name)
			check(t, m)
		})
	}
	for _, typ := range eventTypes() {
		require.True(t, seen[typ], "event type %s has no golden file: add it to goldenMessages and goldenChecks, then run go test -run TestGoldenDecode -update", typ)
	}
}

// requireNoUnknown fails if any field of m, at any depth, was not known:
// a field of a golden file that this version no longer reads.
func requireNoUnknown(t *testing.T, m protoreflect.Message) {
	t.Helper()
	require.Empty(t, m.GetUnknown(), "%s has fields this version does not know", m.Descriptor().FullName())
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := range v.List().Len() {
				requireNoUnknown(t, v.List().Get(i).Message())
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				requireNoUnknown(t, mv.Message())
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			requireNoUnknown(t, v.Message())
		}
		return true
	})
}

// withUnknownField returns data with a field this version does not know
// appended, as a newer producer would send it.
func withUnknownField(data []byte) []byte {
	const unusedField = 1 << 20
	b := protowire.AppendTag(append([]byte(nil), data...), unusedField, protowire.BytesType)
	return protowire.AppendString(b, "from a newer version")
}

// TestDecodeUnknownFields decodes every event type with a field added by
// a newer version: it is read, and the field is kept when re-encoded.
func TestDecodeUnknownFields(t *testing.T) {
	for _, m := range goldenMessages() {
		t.Run(goldenName(m), func(t *testing.T) {
			msg, err := Encode("outpost.acme.x", m, "")
			require.NoError(t, err)
			got, err := Decode(msg.Header, withUnknownField(msg.Data))
			require.NoError(t, err)
			require.Equal(t, withUnknownField(nil), []byte(got.ProtoReflect().GetUnknown()), "the unknown field is kept")
			known := proto.Clone(got)
			known.ProtoReflect().SetUnknown(nil)
			require.True(t, proto.Equal(m, known), "the known fields read as sent")
		})
	}
	// Every event type is exercised.
	var names []string
	for _, m := range goldenMessages() {
		names = append(names, TypeName(m))
	}
	for _, typ := range eventTypes() {
		require.Contains(t, names, typ)
	}
}

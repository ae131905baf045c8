package secrets

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeSecretsManager speaks the Secrets Manager JSON protocol
// (application/x-amz-json-1.1, X-Amz-Target: secretsmanager.GetSecretValue)
// over HTTP: the SDK's own boundary.
type fakeSecretsManager struct {
	mu      sync.Mutex
	secrets map[string]string
	denied  map[string]bool
	calls   int
}

func (f *fakeSecretsManager) set(id, v string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.secrets[id] = v
}

func (f *fakeSecretsManager) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	fail := func(code int, typ, msg string) {
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]string{"__type": typ, "message": msg})
	}
	if r.Method != http.MethodPost || r.Header.Get("X-Amz-Target") != "secretsmanager.GetSecretValue" ||
		!strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") {
		fail(http.StatusBadRequest, "InvalidRequestException", "unexpected request")
		return
	}
	var in struct{ SecretId string }
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		fail(http.StatusBadRequest, "InvalidRequestException", "bad body")
		return
	}
	if f.denied[in.SecretId] {
		fail(http.StatusBadRequest, "AccessDeniedException", "User is not authorized to perform secretsmanager:GetSecretValue")
		return
	}
	v, ok := f.secrets[in.SecretId]
	if !ok {
		fail(http.StatusBadRequest, "ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{
		"ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:" + in.SecretId, "Name": in.SecretId,
		"SecretString": v, "VersionId": "v1", "VersionStages": []string{"AWSCURRENT"}, "CreatedDate": 1.7e9,
	})
}

func TestAWSProvider(t *testing.T) {
	fake := &fakeSecretsManager{
		secrets: map[string]string{
			"outpost/DB_PASSWORD": "aws-s3cret",
			"prod/pg":             `{"username": "app", "password": "json-s3cret", "port": 5432}`,
			"plain":               "not json s3cret",
		},
		denied: map[string]bool{"outpost/FORBIDDEN": true},
	}
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, err := NewSecretsManager(ctx, "eu-west-1", srv.URL)
	require.NoError(t, err)
	mapping, err := ParseAWSMapping([]string{"PG_PASSWORD=prod/pg#password", "PG_PORT=prod/pg#port", "PG_NONE=prod/pg#none", "PLAIN_KEY=plain#k", "WHOLE=prod/pg"})
	require.NoError(t, err)
	p := &AWS{Client: client, Prefix: "outpost/", Mapping: mapping}

	tests := []struct {
		name, ref string
		want      string
		found     bool
		errMsg    string
	}{
		{name: "prefixed name", ref: "DB_PASSWORD", want: "aws-s3cret", found: true},
		{name: "mapped JSON key", ref: "PG_PASSWORD", want: "json-s3cret", found: true},
		{name: "mapped JSON number", ref: "PG_PORT", want: "5432", found: true},
		{name: "mapped whole secret", ref: "WHOLE", want: `{"username": "app", "password": "json-s3cret", "port": 5432}`, found: true},
		{name: "missing JSON key", ref: "PG_NONE"},
		{name: "missing secret", ref: "NOPE"},
		{name: "denied is an error", ref: "FORBIDDEN", errMsg: "AccessDeniedException"},
		{name: "not JSON, value not quoted", ref: "PLAIN_KEY", errMsg: "secret is not a JSON object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, ok, err := p.Lookup(ctx, tc.ref)
			if tc.errMsg != "" {
				require.ErrorContains(t, err, tc.errMsg)
				require.NotContains(t, err.Error(), "s3cret")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.found, ok)
			require.Equal(t, tc.want, v)
		})
	}

	t.Run("no prefix and not mapped asks nothing", func(t *testing.T) {
		fake.mu.Lock()
		before := fake.calls
		fake.mu.Unlock()
		_, ok, err := (&AWS{Client: client, Mapping: mapping}).Lookup(ctx, "DB_PASSWORD")
		require.NoError(t, err)
		require.False(t, ok)
		fake.mu.Lock()
		defer fake.mu.Unlock()
		require.Equal(t, before, fake.calls)
	})

	t.Run("rotation is picked up after the TTL", func(t *testing.T) {
		now := time.Unix(1_700_000_000, 0)
		res := &Resolver{Providers: []Provider{&Cached{Provider: p, TTL: 10 * time.Second, Now: func() time.Time { return now }}}}
		expand := func() string {
			got, err := res.NewSession().Expand(ctx, "${DB_PASSWORD}|${NOPE}x")
			if err != nil {
				return err.Error()
			}
			return got
		}
		fake.set("outpost/NOPE", "created")
		require.Equal(t, "aws-s3cret|createdx", expand())
		fake.set("outpost/DB_PASSWORD", "rotated")
		now = now.Add(9 * time.Second)
		require.Equal(t, "aws-s3cret|createdx", expand())
		now = now.Add(time.Second)
		require.Equal(t, "rotated|createdx", expand())
	})
}

func TestParseAWSMapping(t *testing.T) {
	got, err := ParseAWSMapping([]string{"A=prod/db#password", "B=arn:aws:secretsmanager:eu-west-1:1:secret:x"})
	require.NoError(t, err)
	require.Equal(t, map[string]AWSRef{"A": {"prod/db", "password"}, "B": {"arn:aws:secretsmanager:eu-west-1:1:secret:x", ""}}, got)
	for _, bad := range []string{"A", "A=", "A=id#", "=id", "bad name=id"} {
		_, err := ParseAWSMapping([]string{bad})
		require.ErrorIs(t, err, ErrMapping, bad)
	}
}

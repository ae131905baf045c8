package automigrate

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/metadata"

	"github.com/outposthq/outpost/libs/kubetest"
	"github.com/outposthq/outpost/services/account-migrator/internal/accounts"
	"github.com/outposthq/outpost/services/account-migrator/internal/engine"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

// creator records the accounts created, refusing names it already has.
type creator struct {
	mu  sync.Mutex
	got map[string]accounts.Input
}

func (c *creator) Create(_ context.Context, tenant string, in accounts.Input, source string) (*accounts.Record, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.got == nil {
		c.got = map[string]accounts.Input{}
	}
	if _, ok := c.got[in.Name]; ok {
		return nil, engine.ErrExists
	}
	if tenant != "acme" || source != SourceAuto {
		return nil, os.ErrInvalid
	}
	c.got[in.Name] = in
	return &accounts.Record{Name: in.Name}, nil
}

func TestDirectory(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{"prod-east.yaml": "kubeconfig east", "prod-west.kubeconfig": "kubeconfig west", "dev-1.yaml": "dev", ".hidden-prod": "x", "prod.bad.yaml": "bad name"}
	for name, content := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600))
	}
	require.NoError(t, os.Mkdir(filepath.Join(dir, "prod-dir"), 0o700))
	c := &creator{}
	m := New(Dir{Path: dir}, c, Options{Tenant: "acme", Pattern: regexp.MustCompile("^prod"), ZoneID: "z1"})

	created, err := m.ScanOnce(context.Background())
	require.NoError(t, err)
	slices.Sort(created)
	require.Equal(t, []string{"prod-east", "prod-west"}, created)
	in := c.got["prod-east"]
	require.Equal(t, "kubeconfig east", *in.KubeconfigContents)
	require.Equal(t, "ACTIVE", *in.State)
	require.Equal(t, "z1", *in.ZoneID)

	created, err = m.ScanOnce(context.Background())
	require.NoError(t, err)
	require.Empty(t, created, "existing accounts are left alone")
	for name, content := range files {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		require.Equal(t, content, string(raw), "the source is never modified")
	}
}

// recorder remembers every request the metadata client sends.
type recorder struct {
	mu   sync.Mutex
	reqs []string
	rt   http.RoundTripper
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req.Method+" "+req.URL.Path+"?"+req.URL.RawQuery+" accept="+req.Header.Get("Accept"))
	r.mu.Unlock()
	return r.rt.RoundTrip(req)
}

func TestSecretsMetadataOnly(t *testing.T) {
	cluster := kubetest.Shared(t)
	ns := cluster.CreateNamespace(t)
	client := cluster.Client()
	ctx := context.Background()
	secrets := []struct {
		name   string
		labels map[string]string
	}{
		{"prod-a", map[string]string{"outpost.dev/account": "true"}},
		{"prod-b", map[string]string{"outpost.dev/account": "true"}},
		{"dev-c", map[string]string{"outpost.dev/account": "true"}},
		{"prod-unlabelled", nil},
	}
	before := map[string]*corev1.Secret{}
	for _, s := range secrets {
		sec, err := client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: s.name, Labels: s.labels},
			Data:       map[string][]byte{"config": []byte("apiVersion: v1\nkind: Config\n# SECRET-" + s.name)},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		before[s.name] = sec
	}

	rec := &recorder{}
	cfg := cluster.RESTConfig()
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { rec.rt = rt; return rec })
	mc, err := metadata.NewForConfig(cfg)
	require.NoError(t, err)
	c := &creator{}
	m := New(&Secrets{Client: mc, Namespace: ns, LabelSelector: "outpost.dev/account=true", Key: "config"}, c, Options{Tenant: "acme", Pattern: regexp.MustCompile("^prod-")})
	created, err := m.ScanOnce(ctx)
	require.NoError(t, err)
	slices.Sort(created)
	require.Equal(t, []string{"prod-a", "prod-b"}, created)
	require.Equal(t, "encryptedFile:k8s!n:prod-a!k:config!ns:"+ns, *c.got["prod-a"].KubeconfigFile)
	require.Nil(t, c.got["prod-a"].KubeconfigContents)
	require.Nil(t, c.got["prod-a"].ZoneID, "no zone configured: offered to every zone")

	require.NotEmpty(t, rec.reqs)
	for _, r := range rec.reqs {
		require.True(t, strings.HasPrefix(r, "GET /api/v1/namespaces/"+ns+"/secrets?"), "only lists secrets: %s", r)
		require.Contains(t, r, "as=PartialObjectMetadataList", "asks for metadata only: %s", r)
	}
	for name, sec := range before {
		now, err := client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		require.NoError(t, err)
		require.Equal(t, sec.ResourceVersion, now.ResourceVersion, "secret %s unchanged", name)
		require.Equal(t, sec.Data, now.Data)
	}
}

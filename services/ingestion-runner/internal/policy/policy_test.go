package policy_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/policy"
)

func TestHosts(t *testing.T) {
	p := &policy.Policy{Hosts: []string{"*.example.com", "db.internal:5432", "10.0.0.7", "[::1]:8080"}}
	tests := []struct {
		name, url, addr string
		ok              bool
	}{
		{name: "subdomain", url: "https://gms.example.com/api", ok: true},
		{name: "deeper subdomain with port", url: "http://a.b.example.com:8080", ok: true},
		{name: "the domain itself is not a subdomain", url: "https://example.com", ok: false},
		{name: "suffix trick", url: "https://evilexample.com", ok: false},
		{name: "user info does not hide the host", url: "https://gms.example.com@evil.test/", ok: false},
		{name: "host name case", url: "https://GMS.Example.COM/", ok: true},
		{name: "reference in the path is fine", url: "https://gms.example.com/${PATH_PART}", ok: true},
		{name: "reference in the host", url: "https://${HOST}/", ok: false},
		{name: "reference as the whole url", url: "${URL}", ok: false},
		{name: "ipv6 with port", url: "http://[::1]:8080/x", ok: true},
		{name: "ipv6 other port", url: "http://[::1]:9090/x", ok: false},
		{name: "database with its port", addr: "db.internal:5432", ok: true},
		{name: "database default port", addr: "db.internal", ok: true},
		{name: "database other port", addr: "db.internal:6543", ok: false},
		{name: "ip any port", addr: "10.0.0.7:1234", ok: true},
		{name: "address as a reference", addr: "${PG_HOST}", ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.url != "" {
				err = p.CheckURL("sink http", tt.url)
			} else {
				err = p.CheckAddress("source postgres", tt.addr, "5432")
			}
			if tt.ok {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, policy.ErrRefused)
		})
	}
	require.NoError(t, (&policy.Policy{Hosts: []string{"*"}}).CheckURL("sink http", "https://anything.test"))
	require.ErrorIs(t, (&policy.Policy{}).CheckAddress("source mysql", "127.0.0.1", "3306"), policy.ErrRefused)
}

func TestHostPatterns(t *testing.T) {
	for _, tt := range []struct {
		pattern string
		ok      bool
	}{
		{"*", true}, {"*.example.com", true}, {"db:5432", true}, {"db:*", true}, {"[::1]:80", true},
		{"", false}, {"db:99999", false}, {"https://db", false}, {"a*b", false}, {"*.", false},
	} {
		t.Run(tt.pattern, func(t *testing.T) {
			err := policy.ValidHostPattern(tt.pattern)
			if tt.ok {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
			}
		})
	}
}

func TestEnv(t *testing.T) {
	p := &policy.Policy{DeniedEnv: []string{"AWS_PROFILE"}}
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"LD_PRELOAD", false}, {"LD_LIBRARY_PATH", false}, {"LD_AUDIT", false}, {"ld_preload", false},
		{"DYLD_INSERT_LIBRARIES", false}, {"BASH_ENV", false}, {"ENV", false}, {"PATH", false},
		{"PYTHONPATH", false}, {"NODE_OPTIONS", false}, {"IFS", false}, {"BASH_FUNC_ls%%", false},
		{"AWS_PROFILE", false}, {"OUTPOST_RECIPE_FILE", false},
		{"PGPASSWORD", true}, {"LOAD_PATH", true}, {"ENVIRONMENT", true}, {"DB_PASSWORD", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := p.CheckEnv(tt.name)
			if tt.ok {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, policy.ErrRefused)
				require.Contains(t, err.Error(), tt.name)
			}
		})
	}
}

func TestSecrets(t *testing.T) {
	p := &policy.Policy{Secrets: []string{"PG_*", "API_TOKEN"}}
	require.NoError(t, p.CheckSecrets([]string{"PG_PASSWORD", "API_TOKEN"}))
	err := p.CheckSecrets([]string{"PG_PASSWORD", "AWS_SECRET"})
	require.ErrorIs(t, err, policy.ErrRefused)
	require.EqualError(t, err, "policy: secret AWS_SECRET is not in policy.secrets for this pool")
	require.ErrorIs(t, (&policy.Policy{}).CheckSecret("PG_PASSWORD"), policy.ErrRefused)
}

func TestFileTarget(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	require.NoError(t, os.Symlink(outside, filepath.Join(dir, "out")))
	require.NoError(t, os.Symlink(filepath.Join(outside, "f.json"), filepath.Join(dir, "link.json")))
	require.NoError(t, os.Symlink(filepath.Join(dir, "sub"), filepath.Join(dir, "in")))
	p := &policy.Policy{FileSinkDir: dir}
	tests := []struct {
		name, filename, rel string
	}{
		{"relative", "records.json", "records.json"},
		{"absolute inside", filepath.Join(dir, "sub", "r.json"), filepath.Join("sub", "r.json")},
		{"dot dot staying inside", "sub/../r.json", "r.json"},
		{"link inside the directory", "in/r.json", filepath.Join("in", "r.json")},
		{"dot dot out", "../r.json", ""},
		{"absolute outside", "/etc/passwd", ""},
		{"the directory itself", dir, ""},
		{"through a linked directory", "out/r.json", ""},
		{"a linked file", "link.json", ""},
		{"a reference", "${NAME}.json", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rel, err := p.FileTarget(tt.filename)
			if tt.rel == "" {
				require.ErrorIs(t, err, policy.ErrRefused)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.rel, rel)
		})
	}
	_, err := (&policy.Policy{}).FileTarget("r.json")
	require.EqualError(t, err, "policy: sink file is refused: policy.file_sink_dir is not set")
}

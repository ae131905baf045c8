package ship

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/outposthq/outpost/libs/testenv"
	"github.com/stretchr/testify/require"
)

// images are the archives make images writes, one per binary.
var images = []string{"scheduler", "account-migrator", "k8s-watcher", "ingestion-runner", "outpost-broker"}

// imageConfig is the part of an OCI image configuration the tests check.
type imageConfig struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Config       struct {
		User       string            `json:"User"`
		Entrypoint []string          `json:"Entrypoint"`
		Cmd        []string          `json:"Cmd"`
		Labels     map[string]string `json:"Labels"`
	} `json:"config"`
}

// podmanEnv runs podman with runc (its default runtime fails on some hosts'
// cgroups), bounded ulimits, and a storage of its own in a temporary folder.
func podmanEnv(t *testing.T) (env []string, storage []string) {
	t.Helper()
	// Not t.TempDir: podman's cleanup processes of --rm containers may
	// still write into the folder as a test ends, and a folder that cannot
	// be removed at once says nothing about the images.
	dir, err := os.MkdirTemp("", "outpost-podman-")
	require.NoError(t, err)
	conf := filepath.Join(dir, "containers.conf")
	require.NoError(t, os.WriteFile(conf, []byte(`[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
`), 0o600))
	env = []string{"CONTAINERS_CONF=" + conf}
	// Every path podman writes is in the folder (--tmpdir too: its
	// default, /run/libpod, is the host's).
	storage = []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"),
		"--tmpdir", filepath.Join(dir, "tmp"), "--storage-driver", "vfs"}
	t.Cleanup(func() {
		// podman removes the containers and images of this storage and
		// waits for the cleanup processes of --rm containers; then the
		// folder goes.
		if out, err := run(t, env, "podman", append(append([]string{}, storage...), "system", "reset", "--force")...); err != nil {
			t.Logf("podman system reset: %v\n%s", err, out)
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("remove the podman folder: %v", err)
		}
	})
	return env, storage
}

func TestImages(t *testing.T) {
	skopeo := requireTool(t, "skopeo", "scripts/install-image-tools.sh (make test-deps)")
	podman := requireTool(t, "podman", "scripts/install-image-tools.sh (make test-deps)")
	requireTool(t, "runc", "scripts/install-image-tools.sh (make test-deps)")
	dir := filepath.Join(repoRoot(t), "bin", "images")
	env, storage := podmanEnv(t)

	for _, name := range images {
		t.Run(name, func(t *testing.T) {
			archive := filepath.Join(dir, name+".tar")
			_, err := os.Stat(archive)
			if err != nil {
				err = fmt.Errorf("image archive %w: run make images: %w", errMissing, err)
			}
			testenv.Require(t, name+" image", err)
			ref := "oci-archive:" + archive

			var cfg imageConfig
			require.NoError(t, json.Unmarshal([]byte(mustRun(t, nil, skopeo, "inspect", "--config", ref)), &cfg))
			require.Equal(t, "linux", cfg.OS)
			require.Equal(t, runtime.GOARCH, cfg.Architecture)
			require.Equal(t, "65532:65532", cfg.Config.User)
			require.Equal(t, []string{"/usr/local/bin/" + name}, cfg.Config.Entrypoint)
			require.Empty(t, cfg.Config.Cmd)
			labels := cfg.Config.Labels
			require.Equal(t, "https://github.com/outposthq/outpost", labels["org.opencontainers.image.source"])
			require.Equal(t, name, labels["org.opencontainers.image.title"])
			version, revision := labels["org.opencontainers.image.version"], labels["org.opencontainers.image.revision"]
			require.NotEmpty(t, version)
			require.Regexp(t, `^[0-9a-f]{40}$`, revision)

			// The binary says the version the labels say, run as the image's
			// user on a read-only root filesystem with no capabilities.
			args := append(append([]string{}, storage...), "run", "--quiet", "--rm", "--network=none", "--read-only", "--cap-drop=ALL", ref, "-version")
			out := mustRun(t, env, podman, args...)
			require.Equal(t, fmt.Sprintf("%s %s (revision %s)", name, version, revision), lastLine(out))

			// No shell in the image: nothing to exec into but the binary.
			args = append(append([]string{}, storage...), "run", "--quiet", "--rm", "--network=none", "--entrypoint=/bin/sh", ref, "-c", "true")
			out, err = run(t, env, podman, args...)
			require.Error(t, err, "a shell ran in the %s image:\n%s", name, out)
			require.Contains(t, out, "/bin/sh")
		})
	}
}

// lastLine is the last non-empty line of out: podman writes its pull
// progress before the container's output.
func lastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

package e2e

import (
	"fmt"
	"os"
	"testing"

	"github.com/outposthq/outpost/libs/dbtest"
	"github.com/outposthq/outpost/libs/kubetest"
)

// TestMain stops the shared PostgreSQL and MariaDB servers of the ingest
// tests and the shared Kubernetes API server of the account tests when the
// package's tests are done.
func TestMain(m *testing.M) {
	code := m.Run()
	dbtest.StopShared()
	if err := kubetest.StopShared(); err != nil {
		fmt.Fprintf(os.Stderr, "stop shared kube-apiserver: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

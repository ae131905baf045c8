package e2e

import (
	"testing"

	"github.com/outposthq/outpost/libs/dbtest"
)

// TestMain stops the shared PostgreSQL and MariaDB servers of the ingest
// tests when the package's tests are done.
func TestMain(m *testing.M) { dbtest.Main(m) }

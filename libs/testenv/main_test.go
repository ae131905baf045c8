package testenv_test

import (
	"os"
	"testing"

	"github.com/outposthq/outpost/libs/testenv"
)

// TestMain runs the test binary as a child process when envChild names a
// role (see child), and otherwise runs the tests and checks that none of
// them left a goroutine behind.
func TestMain(m *testing.M) {
	if role := os.Getenv(envChild); role != "" {
		os.Exit(child(role))
	}
	testenv.VerifyNoLeaks(m)
}

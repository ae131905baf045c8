package service

import (
	"os"
	"testing"

	"github.com/outposthq/outpost/libs/testenv"
)

// TestMain runs the test binary as a service (see childMain) when envChild
// is set, and otherwise runs the tests and fails the run when they leave
// goroutines behind.
func TestMain(m *testing.M) {
	if os.Getenv(envChild) != "" {
		childMain()
		return
	}
	testenv.VerifyNoLeaks(m)
}

package console_test

import (
	"testing"

	"github.com/outposthq/outpost/libs/testenv"
)

// TestMain fails the run when the tests leave goroutines behind.
func TestMain(m *testing.M) { testenv.VerifyNoLeaks(m) }

package instances_test

import (
	"testing"

	"github.com/outposthq/outpost/libs/testenv"
)

func TestMain(m *testing.M) { testenv.VerifyNoLeaks(m) }

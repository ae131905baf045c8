package ship

import (
	"testing"

	"github.com/outposthq/outpost/libs/kubetest"
)

// TestMain stops the shared kube-apiserver of the chart installs.
func TestMain(m *testing.M) { kubetest.Main(m) }

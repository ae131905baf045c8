package kv_test

import (
	"testing"

	"github.com/outposthq/outpost/libs/kv"
	"github.com/outposthq/outpost/libs/kv/kvtest"
)

func TestMemoryConformance(t *testing.T) {
	kvtest.Run(t, func(*testing.T) kv.Store { return kv.NewMemory() })
}

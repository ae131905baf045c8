package service

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/testenv"
)

// TestOpsPprof: the profiler is on the ops listener only when EnvPprof says
// "true", and never on the API listener.
func TestOpsPprof(t *testing.T) {
	tests := []struct {
		name     string
		env      string
		wantOps  int
		wantMain int
	}{
		{name: "off by default", env: "", wantOps: http.StatusNotFound, wantMain: http.StatusNotFound},
		{name: "anything but true is off", env: "1", wantOps: http.StatusNotFound, wantMain: http.StatusNotFound},
		{name: "on", env: "true", wantOps: http.StatusOK, wantMain: http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvPprof, tt.env)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			opsAddr, apiAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
			rt, err := Start(ctx, Options{Name: "svc", OpsAddr: opsAddr, APIAddr: apiAddr, APIPaths: []string{"/api/"}, Grace: time.Second})
			require.NoError(t, err)
			require.Eventually(t, func() bool { code, _ := get("http://" + opsAddr + "/healthz"); return code == http.StatusOK }, waitFor, tick)
			code, _ := get("http://" + opsAddr + "/debug/pprof/cmdline")
			require.Equal(t, tt.wantOps, code, "ops listener")
			code, _ = get("http://" + apiAddr + "/debug/pprof/cmdline")
			require.Equal(t, tt.wantMain, code, "API listener")
			cancel()
			require.NoError(t, rt.Wait())
		})
	}
}

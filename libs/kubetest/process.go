package kubetest

import (
	"fmt"
	"strings"
	"time"

	"github.com/outposthq/outpost/libs/testenv"
)

// stopGrace is how long etcd and kube-apiserver may take to stop after
// SIGTERM before they are killed.
const stopGrace = 10 * time.Second

// startProc starts bin under the test supervisor: its own process group, a
// parent-death signal, its output kept for error messages.
func startProc(name, bin string, args []string, probeEvery time.Duration) (*testenv.Process, error) {
	p, err := testenv.Launch(testenv.Spec{Name: name, Path: bin, Args: args, ProbeInterval: probeEvery})
	if err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	return p, nil
}

// stopProc stops p (SIGTERM, then SIGKILL after grace); a process killed
// after the grace is still stopped.
func stopProc(p *testenv.Process, grace time.Duration) {
	_ = p.StopWithin(grace)
}

// addressInUse reports whether the process's output says a port was taken,
// in which case starting again on other ports may succeed.
func addressInUse(p *testenv.Process) bool {
	return strings.Contains(p.RunLogs(), "address already in use")
}

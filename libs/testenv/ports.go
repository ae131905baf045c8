package testenv

import (
	"fmt"
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// handedOut holds every port FreePorts returned in this process: the
// system may offer a port again once its probe is closed, and two servers
// of one test given the same port would fail to bind.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// FreePorts returns n distinct TCP ports on 127.0.0.1 that were free a
// moment ago and that it never returned before in this process. Another
// process may take one before it is used: a caller that binds later
// retries on "address already in use".
func FreePorts(n int) ([]int, error) {
	handedOut.Lock()
	defer handedOut.Unlock()
	ports := make([]int, 0, n)
	// Every probe stays open until all are found, so the system offers a
	// new port each time.
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	for len(ports) < n {
		if len(listeners) > n+1000 {
			return nil, fmt.Errorf("find a free port on 127.0.0.1: %d probes offered only ports handed out before", len(listeners))
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port on 127.0.0.1: %w", err)
		}
		listeners = append(listeners, l)
		if p := l.Addr().(*net.TCPAddr).Port; !handedOut.ports[p] {
			handedOut.ports[p] = true
			ports = append(ports, p)
		}
	}
	return ports, nil
}

// FreePort is one port of FreePorts; failing to find one fails the test.
func FreePort(t testing.TB) int {
	t.Helper()
	ports, err := FreePorts(1)
	require.NoError(t, err)
	return ports[0]
}

// FreeAddr is "127.0.0.1:<FreePort>".
func FreeAddr(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", FreePort(t))
}

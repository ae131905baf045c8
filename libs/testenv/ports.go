package testenv

import (
	"fmt"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

// FreePorts returns n distinct TCP ports on 127.0.0.1 that were free a
// moment ago. Another process may take one before it is used: a caller that
// binds later retries on "address already in use".
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	listeners := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port on 127.0.0.1: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
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

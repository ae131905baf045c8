package testenv

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// handedOut holds every port FreePorts returned in this process: the
// system may offer a port again once its probe is closed, and two servers
// of one test given the same port would fail to bind. locks are the
// files that reserve them from the machine's other test processes.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
	locks []*os.File
}{ports: map[int]bool{}}

// portLocks is the folder of the machine's test processes' port
// reservations: a file per port, locked by the process that took it.
var portLocks = filepath.Join(os.TempDir(), "outpost-test-ports")

// FreePorts returns n distinct TCP ports on 127.0.0.1 that were free a
// moment ago and that it never returned before in this process, nor did
// it in another test process still running: test packages run side by
// side, and two of them given one port would each probe the other's
// server (a readiness check answered by the wrong process). Each port is
// reserved by a lock on its file in portLocks, which lasts as long as the
// process. A process that uses no testenv may still take one before it
// is used: a caller that binds later retries on "address already in use".
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
		if p := l.Addr().(*net.TCPAddr).Port; !handedOut.ports[p] && reserve(p) {
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

// reserve takes port from the machine's other test processes: an
// exclusive lock on its file in portLocks, held (the file left open) until
// the process ends, when the system releases it. It reports false when
// another process holds it; where the lock cannot be taken at all (no
// such folder can be made), the port is the system's word alone.
func reserve(port int) bool {
	if err := os.MkdirAll(portLocks, 0o777); err != nil {
		return true
	}
	f, err := os.OpenFile(filepath.Join(portLocks, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return true
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		return false
	}
	handedOut.locks = append(handedOut.locks, f)
	return true
}

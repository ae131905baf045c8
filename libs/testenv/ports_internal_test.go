package testenv

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// A port whose file another test process holds locked is not taken; once
// that process lets it go (it ended), it is.
func TestReserveSkipsPortsOfOtherProcesses(t *testing.T) {
	const port = 1 // never offered by the system as a free port
	require.NoError(t, os.MkdirAll(portLocks, 0o777))
	other, err := os.OpenFile(filepath.Join(portLocks, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o666)
	require.NoError(t, err)
	// A lock of another open file stands for another process's.
	require.NoError(t, syscall.Flock(int(other.Fd()), syscall.LOCK_EX|syscall.LOCK_NB))
	require.False(t, reserve(port), "held by another process")
	require.NoError(t, other.Close())
	require.True(t, reserve(port), "released when its process ended")
}

package testsupport

import (
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFreePorts(t *testing.T) {
	ports, err := FreePorts(3)
	require.NoError(t, err)
	require.Len(t, ports, 3)
	require.NotEqual(t, ports[0], ports[1])
	require.NotEqual(t, ports[1], ports[2])
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(ports[0]))
	require.NoError(t, err, "a returned port can be bound")
	require.NoError(t, l.Close())
	require.True(t, strings.HasPrefix(FreeAddr(t), "127.0.0.1:"))
}

func TestSyncBuffer(t *testing.T) {
	tests := []struct {
		name  string
		limit int
		want  int
	}{
		{"unlimited keeps everything", 0, 100},
		{"limit drops what comes after it", 10, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &SyncBuffer{Limit: tt.limit}
			var wg sync.WaitGroup
			var bad atomic.Int32
			for range 100 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if n, err := b.Write([]byte("x")); err != nil || n != 1 {
						bad.Add(1)
					}
				}()
			}
			wg.Wait()
			require.Zero(t, bad.Load(), "every write reports its whole length")
			require.Len(t, b.String(), tt.want)
		})
	}
}

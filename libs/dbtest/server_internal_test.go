package dbtest

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPortTakenRetries: when another process takes the chosen port before
// the server binds it, the server starts again on another port.
func TestPortTakenRetries(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	go func() { // hang up on the harness's pings: they must not wait for a greeting
		for {
			c, err := l.Accept()
			if err != nil {
				return // closed
			}
			_ = c.Close()
		}
	}()
	taken := l.Addr().(*net.TCPAddr).Port
	for _, kind := range []Kind{KindPostgres, KindMariaDB} {
		t.Run(string(kind), func(t *testing.T) {
			calls := 0
			pickPort = func() (int, error) {
				calls++
				if calls == 1 {
					return taken, nil
				}
				return freePort()
			}
			t.Cleanup(func() { pickPort = freePort })
			db := private(t, kind)
			require.NotEqual(t, taken, db.Port)
			require.Equal(t, 2, calls, "one start on the taken port, one on a free one")
			db.Exec(t, `CREATE TABLE t (n int)`)
		})
	}
}

func TestCompareVersions(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"15", "9.6", 1}, {"9.6", "15", -1}, {"16", "16", 0}, {"17", "16", 1}, {"9.6", "9.5", 1}, {"16", "16.1", -1},
	} {
		got := compareVersions(c.a, c.b)
		require.Equal(t, c.want, max(-1, min(1, got)), "%s vs %s", c.a, c.b)
	}
}

func TestNames(t *testing.T) {
	db, user := names(t)
	require.Regexp(t, `^t[0-9]+_testnames$`, db)
	require.Regexp(t, `^u[0-9]+_testnames$`, user)
	t.Run("A very long name, with Punctuation & more words than fit", func(t *testing.T) {
		db, user := names(t)
		require.LessOrEqual(t, len(db), 32)
		require.Regexp(t, `^t[0-9]+_[a-z0-9_]+[a-z0-9]$`, db)
		require.Regexp(t, `^u[0-9]+_[a-z0-9_]+[a-z0-9]$`, user)
	})
}

package workpool_test

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/outposthq/outpost/libs/testenv"
	"github.com/outposthq/outpost/libs/workpool"
)

func TestMain(m *testing.M) { testenv.VerifyNoLeaks(m) }

// goid is the calling goroutine's id, read from its stack header.
func goid() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	var id []byte
	for _, c := range buf[len("goroutine "):] {
		if c < '0' || c > '9' {
			break
		}
		id = append(id, c)
	}
	return string(id)
}

func TestPool(t *testing.T) {
	t.Run("calls one after another share their workers", func(t *testing.T) {
		p := workpool.New(time.Minute)
		defer p.Close()
		// One call at a time: a new worker starts only when none is back
		// to waiting yet, so a few workers run them all (two, unless the
		// machine holds one up between its call and its wait), where a
		// goroutine per call would be 50.
		ids := map[string]bool{}
		for range 50 {
			done := make(chan string)
			p.Go(func() { done <- goid() })
			ids[<-done] = true
		}
		require.Less(t, len(ids), 25)
	})

	t.Run("a nil pool runs each call on a goroutine of its own", func(t *testing.T) {
		var p *workpool.Pool
		me := goid()
		done := make(chan string)
		p.Go(func() { done <- goid() })
		require.NotEqual(t, me, <-done)
	})

	t.Run("concurrent calls never wait for each other", func(t *testing.T) {
		p := workpool.New(time.Minute)
		defer p.Close()
		const n = 16
		var running atomic.Int32
		release := make(chan struct{})
		defer close(release)
		for range n {
			// Each call holds its worker until all n run at once: a pool
			// that made a call wait for a worker would never get there.
			p.Go(func() {
				running.Add(1)
				<-release
			})
		}
		require.Eventually(t, func() bool { return running.Load() == n }, 5*time.Second, time.Millisecond)
	})

	t.Run("a group waits for its calls", func(t *testing.T) {
		for _, p := range []*workpool.Pool{workpool.New(time.Minute), nil} {
			var done atomic.Int32
			g := workpool.Group{Pool: p}
			for range 8 {
				g.Go(func() { done.Add(1) })
			}
			g.Wait()
			require.Equal(t, int32(8), done.Load())
			p.Close()
		}
	})

	t.Run("idle workers exit on their own", func(t *testing.T) {
		p := workpool.New(20 * time.Millisecond)
		others := goleak.IgnoreCurrent()
		var wg sync.WaitGroup
		wg.Add(4)
		for range 4 {
			p.Go(func() {
				wg.Done()
				wg.Wait()
			})
		}
		wg.Wait()
		// Find retries until the goroutines it reports are gone.
		require.NoError(t, goleak.Find(others))
		// The pool still works after its workers exited.
		done := make(chan struct{})
		p.Go(func() { close(done) })
		<-done
		p.Close()
	})

	t.Run("close waits for busy workers", func(t *testing.T) {
		p := workpool.New(time.Minute)
		release := make(chan struct{})
		var finished atomic.Bool
		running := make(chan struct{})
		p.Go(func() {
			close(running)
			<-release
			finished.Store(true)
		})
		<-running
		closed := make(chan struct{})
		go func() {
			p.Close()
			close(closed)
		}()
		require.Never(t, func() bool {
			select {
			case <-closed:
				return true
			default:
				return false
			}
		}, 50*time.Millisecond, 5*time.Millisecond, "Close returned while a call was running")
		close(release)
		<-closed
		require.True(t, finished.Load())
		p.Close() // a second Close is harmless
	})
}

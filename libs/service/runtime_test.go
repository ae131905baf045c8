package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/testenv"
)

const (
	waitFor = 10 * time.Second
	tick    = 10 * time.Millisecond
)

// get returns the status and body of url, or 0 and the error when nothing
// answers.
func get(url string) (int, string) {
	resp, err := http.Get(url) //nolint:noctx // short-lived test probe
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// api is a Frontend whose readiness the test sets.
type api struct {
	ready   atomic.Pointer[error]
	stopped atomic.Bool
}

func (a *api) ServeHTTP(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("api\n")) }
func (a *api) Ready() error {
	if err := a.ready.Load(); err != nil {
		return *err
	}
	return nil
}
func (a *api) StopStreams() { a.stopped.Store(true) }

// conn records its Close.
type conn struct {
	name   string
	closed *[]string
}

func (c conn) Close() error {
	*c.closed = append(*c.closed, c.name)
	return nil
}

// TestRuntimeLifecycle follows a service through its life: not ready while
// it dials, its API and readiness once set, and a drain during which the
// API listener is closed while the ops listener still answers (not ready:
// stopping), then everything stops and the connections close in reverse
// order.
func TestRuntimeLifecycle(t *testing.T) {
	apiAddr, opsAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rt, err := Start(ctx, Options{Name: "svc", APIAddr: apiAddr, APIPaths: []string{"/api/"}, OpsAddr: opsAddr, Grace: time.Second})
	require.NoError(t, err)

	dial := make(chan struct{})
	drain := make(chan struct{})
	var closed []string
	front := &api{}
	rt.Go(func(ctx context.Context) error {
		<-dial
		for _, name := range []string{"first", "second"} {
			if _, err := Dial(ctx, rt, "broker", func(context.Context) (conn, error) {
				return conn{name: name, closed: &closed}, nil
			}); err != nil {
				return err
			}
		}
		rt.Set(front)
		<-ctx.Done()
		<-drain
		return nil
	})
	done := make(chan error, 1)
	go func() { done <- rt.Wait() }()

	// Alive before the broker, not ready, and the API says it starts.
	for _, base := range []string{"http://" + apiAddr, "http://" + opsAddr} {
		code, _ := get(base + "/healthz")
		require.Equal(t, http.StatusOK, code, base)
		code, body := get(base + "/readyz")
		require.Equal(t, http.StatusServiceUnavailable, code, base)
		require.Contains(t, body, ErrStarting.Error())
	}
	code, body := get("http://" + apiAddr + "/api/v1/things")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.JSONEq(t, `{"error":"the svc is starting: not connected to the broker yet"}`, body)
	code, body = get("http://" + opsAddr + "/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `outpost_ready{service="svc"} 0`, "not ready: the metric says so")
	code, _ = get("http://" + apiAddr + "/metrics")
	require.Equal(t, http.StatusNotFound, code, "/metrics is only on the ops listener")

	close(dial)
	require.Eventually(t, func() bool { code, _ := get("http://" + opsAddr + "/readyz"); return code == http.StatusOK }, waitFor, tick)
	code, body = get("http://" + apiAddr + "/api/v1/things")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "api\n", body)
	_, body = get("http://" + opsAddr + "/metrics")
	require.Contains(t, body, `outpost_ready{service="svc"} 1`)
	down := errors.New("broker down")
	front.ready.Store(&down)
	code, body = get("http://" + apiAddr + "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "broker down")
	_, body = get("http://" + opsAddr + "/metrics")
	require.Contains(t, body, `outpost_ready{service="svc"} 0`, "a broker that is down shows in the metric")
	front.ready.Store(nil)

	cancel()
	require.Eventually(t, func() bool { code, _ := get("http://" + apiAddr + "/healthz"); return code == 0 }, waitFor, tick,
		"the API listener closes when the stop begins")
	require.Eventually(t, front.stopped.Load, waitFor, tick, "the API's streams are stopped with its server")
	code, body = get("http://" + opsAddr + "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code, "the ops listener answers during the drain")
	require.Contains(t, body, ErrStopping.Error())
	require.Empty(t, closed, "connections stay open during the drain")

	close(drain)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(waitFor):
		t.Fatal("Wait did not return")
	}
	require.Equal(t, []string{"second", "first"}, closed)
	code, _ = get("http://" + opsAddr + "/healthz")
	require.Equal(t, 0, code, "the ops listener is closed at the end")
}

// TestRuntimeStops: how each kind of end shows in Wait's error.
func TestRuntimeStops(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name string
		// parts run in the runtime; cancel ends the parent context.
		parts   func(cancel context.CancelFunc) []func(context.Context) error
		wantErr error
		wantMsg string
	}{
		{
			name: "context ends",
			parts: func(cancel context.CancelFunc) []func(context.Context) error {
				return []func(context.Context) error{func(ctx context.Context) error {
					cancel()
					<-ctx.Done()
					return ctx.Err()
				}}
			},
		},
		{
			name: "a part fails: the others stop and its error is Wait's",
			parts: func(context.CancelFunc) []func(context.Context) error {
				return []func(context.Context) error{
					func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() },
					func(context.Context) error { return boom },
				}
			},
			wantErr: boom,
		},
		{
			name: "a part returns: the service stops cleanly",
			parts: func(context.CancelFunc) []func(context.Context) error {
				return []func(context.Context) error{
					func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() },
					func(context.Context) error { return nil },
				}
			},
		},
		{
			name: "a part's own timeout is an error",
			parts: func(context.CancelFunc) []func(context.Context) error {
				return []func(context.Context) error{func(context.Context) error {
					return fmt.Errorf("open bucket: %w", context.DeadlineExceeded)
				}}
			},
			wantErr: context.DeadlineExceeded,
			wantMsg: "open bucket: context deadline exceeded",
		},
		{
			name: "dialling fails",
			parts: func(context.CancelFunc) []func(context.Context) error {
				return []func(context.Context) error{func(ctx context.Context) error {
					_, err := Dial(ctx, nil, "broker", func(context.Context) (conn, error) { return conn{}, boom })
					return err
				}}
			},
			wantErr: boom,
			wantMsg: "connect to broker: boom",
		},
		{
			name: "stopped while dialling",
			parts: func(cancel context.CancelFunc) []func(context.Context) error {
				return []func(context.Context) error{func(ctx context.Context) error {
					_, err := Dial(ctx, nil, "broker", func(ctx context.Context) (conn, error) {
						cancel()
						<-ctx.Done()
						return conn{}, errors.New("dial: interrupted")
					})
					return err
				}}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			rt, err := Start(ctx, Options{Name: "svc", OpsAddr: testenv.FreeAddr(t), Grace: time.Second})
			require.NoError(t, err)
			for _, p := range tt.parts(cancel) {
				rt.Go(p)
			}
			err = rt.Wait()
			if tt.wantErr == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.wantErr)
			if tt.wantMsg != "" {
				require.EqualError(t, err, tt.wantMsg)
			}
		})
	}
}

// TestRuntimeStopTimeout: parts that outlive their drain make Wait give up
// with ErrStopTimeout, closing the servers anyway.
func TestRuntimeStopTimeout(t *testing.T) {
	defer func(m time.Duration) { drainMargin = m }(drainMargin)
	drainMargin = 0
	release := make(chan struct{})
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	opsAddr := testenv.FreeAddr(t)
	rt, err := Start(ctx, Options{Name: "svc", OpsAddr: opsAddr, Grace: time.Second, Drain: 50 * time.Millisecond})
	require.NoError(t, err)
	rt.Go(func(context.Context) error { <-release; return nil }) // ignores the stop
	cancel()
	require.ErrorIs(t, rt.Wait(), ErrStopTimeout)
	code, _ := get("http://" + opsAddr + "/healthz")
	require.Equal(t, 0, code)
}

// TestStartListenFails: a port in use fails the start with nothing left
// open.
func TestStartListenFails(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	apiAddr := testenv.FreeAddr(t)

	_, err = Start(context.Background(), Options{Name: "svc", APIAddr: apiAddr, OpsAddr: taken.Addr().String()})
	require.ErrorContains(t, err, "listen on "+taken.Addr().String())

	ln, err := net.Listen("tcp", apiAddr)
	require.NoError(t, err, "the API listener bound first was closed")
	require.NoError(t, ln.Close())
}

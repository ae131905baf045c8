package testenv_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/testenv"
)

// fakeTB records how a call ended a test instead of ending it. Cleanups
// run when the function given to runFake returns.
type fakeTB struct {
	testing.TB
	mu       sync.Mutex
	failed   bool
	skipped  bool
	msgs     []string
	cleanups []func()
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Logf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.msgs = append(f.msgs, fmt.Sprintf(format, args...))
}
func (f *fakeTB) Errorf(format string, args ...any) {
	f.Logf(format, args...)
	f.mu.Lock()
	f.failed = true
	f.mu.Unlock()
}
func (f *fakeTB) Failed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}
func (f *fakeTB) FailNow() {
	f.mu.Lock()
	f.failed = true
	f.mu.Unlock()
	runtime.Goexit()
}
func (f *fakeTB) Fatalf(format string, args ...any) { f.Errorf(format, args...); runtime.Goexit() }
func (f *fakeTB) Skipf(format string, args ...any) {
	f.Logf(format, args...)
	f.mu.Lock()
	f.skipped = true
	f.mu.Unlock()
	runtime.Goexit()
}
func (f *fakeTB) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

func (f *fakeTB) logs() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.msgs, "\n")
}

// runFake runs fn with a fakeTB in its own goroutine (FailNow and SkipNow
// end it), then its cleanups, last first, and returns the record.
func runFake(t *testing.T, fn func(testing.TB)) *fakeTB {
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
	return f
}

func TestRequire(t *testing.T) {
	missing := errors.New("not installed: run scripts/install-x.sh")
	tests := []struct {
		name          string
		ci            string
		err           error
		failed, skip  bool
		wantInMessage string
	}{
		{"present", "true", nil, false, false, ""},
		{"missing locally skips", "", missing, false, true, "install-x.sh"},
		{"missing in CI fails", "true", missing, true, false, "install-x.sh"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(testenv.EnvCI, tt.ci)
			f := runFake(t, func(tb testing.TB) { testenv.Require(tb, "x", tt.err) })
			require.Equal(t, tt.failed, f.failed)
			require.Equal(t, tt.skip, f.skipped)
			require.Contains(t, f.logs(), tt.wantInMessage)
		})
	}
}

func TestRepoRoot(t *testing.T) {
	root, err := testenv.RepoRoot()
	require.NoError(t, err)
	require.FileExists(t, root+"/go.work")
	t.Chdir(t.TempDir())
	_, err = testenv.RepoRoot()
	require.ErrorIs(t, err, testenv.ErrNoRepoRoot)
}

func TestFreePorts(t *testing.T) {
	ports, err := testenv.FreePorts(3)
	require.NoError(t, err)
	require.Len(t, ports, 3)
	require.NotEqual(t, ports[0], ports[1])
	require.NotEqual(t, ports[1], ports[2])
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(ports[0]))
	require.NoError(t, err, "a returned port can be bound")
	require.NoError(t, l.Close())
	require.True(t, strings.HasPrefix(testenv.FreeAddr(t), "127.0.0.1:"))

	// Each is reserved from the machine's other test processes: its lock
	// file is held (a second lock on it, as another process would take,
	// is refused).
	for _, p := range ports {
		f, err := os.Open(filepath.Join(os.TempDir(), "outpost-test-ports", strconv.Itoa(p)))
		require.NoError(t, err)
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		require.ErrorIs(t, err, syscall.EWOULDBLOCK, "port %d is not reserved", p)
		require.NoError(t, f.Close())
	}

	// One at a time, each port closed before the next is asked for, as
	// the servers of one test get theirs: none is handed out twice.
	seen := map[int]bool{}
	for range 200 {
		p := testenv.FreePort(t)
		require.False(t, seen[p], "port %d handed out twice", p)
		seen[p] = true
	}
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
			b := &testenv.SyncBuffer{Limit: tt.limit}
			var wg sync.WaitGroup
			var bad atomic.Int32
			for range 100 {
				wg.Go(func() {
					if n, err := b.Write([]byte("x")); err != nil || n != 1 {
						bad.Add(1)
					}
				})
			}
			wg.Wait()
			require.Zero(t, bad.Load(), "every write reports its whole length")
			require.Len(t, b.String(), tt.want)
		})
	}
}

func TestClient(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/missing" {
			w.WriteHeader(http.StatusNotFound)
		}
		_, _ = fmt.Fprintf(w, `{"method":%q,"tenant":%q,"extra":%q,"type":%q,"body":%q,"auth":%q}`,
			r.Method, r.Header.Get("X-Tenant"), r.Header.Get("X-Extra"), r.Header.Get("Content-Type"), body, r.Header.Get("Authorization"))
	}))
	defer srv.Close()
	type echo struct {
		Method, Tenant, Extra, Type, Body, Auth string
	}
	c := &testenv.Client{Base: srv.URL, Header: map[string]string{"X-Tenant": "acme"}}
	tests := []struct {
		name string
		body any
		want string
	}{
		{"none", nil, ""},
		{"string as is", `{"a":1}`, `{"a":1}`},
		{"bytes as is", []byte("raw"), "raw"},
		{"value as JSON", map[string]int{"n": 2}, `{"n":2}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := testenv.DoJSON[echo](t, c, http.MethodPost, "/x", tt.body, http.StatusOK)
			require.Equal(t, echo{Method: "POST", Tenant: "acme", Type: "application/json", Body: tt.want}, got)
		})
	}
	code, data, err := c.Send(context.Background(), http.MethodGet, "/missing", nil, map[string]string{"X-Extra": "1"})
	require.NoError(t, err, "a status is no error")
	require.Equal(t, http.StatusNotFound, code)
	require.Equal(t, "1", testenv.DecodeJSON[echo](t, data).Extra)
	require.Empty(t, testenv.DecodeJSON[echo](t, data).Auth, "no token, no Authorization")

	bearer := &testenv.Client{Base: srv.URL, Token: "opk_x"}
	require.Equal(t, "Bearer opk_x", testenv.DoJSON[echo](t, bearer, http.MethodGet, "/x", nil, http.StatusOK).Auth)

	dead := &testenv.Client{Base: "http://" + testenv.FreeAddr(t), Timeout: time.Second}
	_, _, err = dead.Try(http.MethodGet, "/", nil)
	require.Error(t, err, "nothing listens there")
	_, _, err = c.Try(http.MethodPost, "/x", func() {})
	require.Error(t, err, "a body that is not JSON")
}

func TestDelivery(t *testing.T) {
	ctx := context.Background()
	msg := queue.Message{Subject: "outpost.acme.jobs.p", Data: []byte("x")}
	tests := []struct {
		name   string
		settle func(*testenv.Delivery) error
		want   testenv.Settlement
	}{
		{"ack", func(d *testenv.Delivery) error { return d.Ack(ctx) }, testenv.Settlement{Op: testenv.OpAck}},
		{"nak", func(d *testenv.Delivery) error { return d.Nak(ctx, time.Second) }, testenv.Settlement{Op: testenv.OpNak, Delay: time.Second}},
		{"term", func(d *testenv.Delivery) error { return d.Term(ctx, "bad") }, testenv.Settlement{Op: testenv.OpTerm, Reason: "bad"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := testenv.NewDelivery(msg, 0)
			require.Equal(t, 1, d.Attempt())
			require.NotNil(t, d.Header())
			require.Equal(t, msg.Subject, d.Subject())
			require.Equal(t, msg.Data, d.Data())
			_, ok := d.WaitSettled(10 * time.Millisecond)
			require.False(t, ok)
			require.NoError(t, d.InProgress(ctx))
			require.NoError(t, tt.settle(d))
			got, ok := d.WaitSettled(time.Second)
			require.True(t, ok)
			require.Equal(t, tt.want, got)
			require.ErrorIs(t, d.Ack(ctx), queue.ErrAlreadyAcked, "settled once")
			require.Equal(t, tt.want, d.Settlement(), "the second settle is not recorded")
			require.Equal(t, 1, d.InProgressCount())
		})
		t.Run(tt.name+" superseded", func(t *testing.T) {
			d := testenv.NewDelivery(msg, 2)
			d.Supersede()
			require.ErrorIs(t, d.InProgress(ctx), queue.ErrSuperseded)
			require.ErrorIs(t, tt.settle(d), queue.ErrSuperseded)
			_, ok := d.WaitSettled(10 * time.Millisecond)
			require.False(t, ok, "a superseded delivery was settled")
			require.Zero(t, d.InProgressCount())
		})
	}
}

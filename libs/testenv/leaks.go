package testenv

import (
	"fmt"
	"net/http"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// VerifyNoLeaks runs a package's tests and fails the run when they left
// goroutines behind, for the TestMain of every package whose code starts
// goroutines:
//
//	func TestMain(m *testing.M) { testenv.VerifyNoLeaks(m) }
//
// opts name goroutines to ignore (goleak.IgnoreTopFunction), each with a
// comment saying why it may outlive the tests.
func VerifyNoLeaks(m *testing.M, opts ...goleak.Option) {
	os.Exit(CheckLeaks(m.Run(), opts...))
}

// CheckLeaks is VerifyNoLeaks for a TestMain that does more after m.Run
// (such as stopping shared servers, which must come first): given m.Run's
// exit code, it returns it, or 1 when goroutines were left behind. A
// failed run is returned as it is, its own failures being the news. The
// idle keep-alive connections of http.DefaultTransport, which tests use
// through http.Get and the like, are closed first.
func CheckLeaks(code int, opts ...goleak.Option) int {
	if code != 0 {
		return code
	}
	if t, ok := http.DefaultTransport.(*http.Transport); ok {
		t.CloseIdleConnections()
	}
	if err := goleak.Find(opts...); err != nil {
		fmt.Fprintf(os.Stderr, "goleak: the tests left goroutines behind: %v\n", err)
		return 1
	}
	return code
}

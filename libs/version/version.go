// Package version holds the version of the Outpost binaries. Release builds
// (make images, make build) set Version and Revision with the linker:
//
//	go build -ldflags "-X github.com/outposthq/outpost/libs/version.Version=v1.2.3 \
//	  -X github.com/outposthq/outpost/libs/version.Revision=<git sha>"
//
// A plain go build leaves them empty, and Get falls back to what the Go
// toolchain recorded in the binary's build information.
package version

import (
	"flag"
	"fmt"
	"io"
	"runtime/debug"
)

// Version is the release version, set with -ldflags -X at build time.
var Version string

// Revision is the source control revision, set with -ldflags -X at build time.
var Revision string

// Get returns the binary's version: Version when it was set at build time,
// else the main module's version from the build information, else "devel".
func Get() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// String is the one line a -version flag prints: the program name, its
// version and, when known, the revision it was built from.
func String(program string) string {
	if Revision != "" {
		return fmt.Sprintf("%s %s (revision %s)", program, Get(), Revision)
	}
	return fmt.Sprintf("%s %s", program, Get())
}

// Flag registers -version on fs (flag.CommandLine when nil). After parsing,
// call PrintIfRequested with the result.
func Flag(fs *flag.FlagSet) *bool {
	if fs == nil {
		fs = flag.CommandLine
	}
	return fs.Bool("version", false, "print the version and exit")
}

// PrintIfRequested writes String(program) to w when requested is set and
// reports whether it did, so that main can exit.
func PrintIfRequested(requested *bool, w io.Writer, program string) bool {
	if requested == nil || !*requested {
		return false
	}
	_, _ = fmt.Fprintln(w, String(program))
	return true
}

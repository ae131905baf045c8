package version

import (
	"bytes"
	"flag"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestString(t *testing.T) {
	tests := []struct {
		name, version, revision, want string
	}{
		{name: "release", version: "v1.2.3", revision: "abc123", want: "scheduler v1.2.3 (revision abc123)"},
		{name: "no revision", version: "v1.2.3", want: "scheduler v1.2.3"},
		{name: "unset", want: "scheduler devel"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			oldV, oldR := Version, Revision
			t.Cleanup(func() { Version, Revision = oldV, oldR })
			Version, Revision = tt.version, tt.revision
			require.Equal(t, tt.want, String("scheduler"))
		})
	}
}

func TestFlag(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		want  string
		asked bool
	}{
		{name: "asked", args: []string{"-version"}, want: "x v9 (revision r)\n", asked: true},
		{name: "not asked", args: nil, want: "", asked: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			oldV, oldR := Version, Revision
			t.Cleanup(func() { Version, Revision = oldV, oldR })
			Version, Revision = "v9", "r"
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			v := Flag(fs)
			require.NoError(t, fs.Parse(tt.args))
			var out bytes.Buffer
			require.Equal(t, tt.asked, PrintIfRequested(v, &out, "x"))
			require.Equal(t, tt.want, out.String())
		})
	}
}

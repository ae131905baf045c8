package cluster

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWarningsAreLoggedOnce(t *testing.T) {
	var buf bytes.Buffer
	r := &Resolver{Log: slog.New(slog.NewJSONHandler(&buf, nil))}
	for range 3 {
		r.HandleWarningHeader(299, "-", "v1 Endpoints is deprecated in v1.33+")
	}
	r.HandleWarningHeader(299, "-", "another warning")
	r.HandleWarningHeader(199, "-", "not a warning code we log")
	require.Equal(t, 1, strings.Count(buf.String(), "v1 Endpoints is deprecated"))
	require.Equal(t, 2, strings.Count(buf.String(), `"msg":"api server warning"`))

	(&Resolver{}).HandleWarningHeader(299, "-", "no logger: dropped, no panic")
}

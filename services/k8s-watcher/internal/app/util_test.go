package app

import (
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func itoa(i int) string { return strconv.Itoa(i) }

func replaceServer(t *testing.T, kubeconfig, from, to string) string {
	t.Helper()
	require.Contains(t, kubeconfig, from)
	return strings.ReplaceAll(kubeconfig, from, to)
}

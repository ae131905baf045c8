//go:build !linux

package kubetest

import (
	"os"
	"syscall"
)

// sysProcAttr has no parent-death signal outside Linux: children are only
// stopped by Cluster.Stop.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// tempBase is the default temp folder.
func tempBase() string { return os.TempDir() }

// processAlive always says yes outside Linux, so no folder is swept.
func processAlive(int) bool { return true }

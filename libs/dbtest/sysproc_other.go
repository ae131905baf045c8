//go:build !linux

package dbtest

import "syscall"

// sysProcAttr runs a child in its own process group as cred's user. There
// is no parent-death signal outside Linux: a server outlives a killed test
// process there.
func sysProcAttr(cred *syscall.Credential, _ syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Credential: cred}
}

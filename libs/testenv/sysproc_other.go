//go:build !linux

package testenv

import "syscall"

// sysProcAttr runs a child in a process group of its own, as cred's user.
// There is no parent-death signal outside Linux: a child outlives a killed
// test process there unless it watches its standard input (Spec.OpenStdin).
func sysProcAttr(cred *syscall.Credential, _ syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Credential: cred}
}

package testenv

import "syscall"

// sysProcAttr runs a child in a process group of its own, as cred's user
// (nil: the test process's), with sig as its parent-death signal: the kernel
// sends it when the test process dies without stopping the child (a panic,
// a timeout, kill -9). Go sets the parent-death signal after the user
// change, which would otherwise clear it.
func sysProcAttr(cred *syscall.Credential, sig syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: sig, Credential: cred}
}

package dbtest

import "syscall"

// sysProcAttr runs a child in its own process group as cred's user, with
// sig as its parent-death signal (Go sets it after the user change, which
// would otherwise clear it).
func sysProcAttr(cred *syscall.Credential, sig syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: sig, Credential: cred}
}

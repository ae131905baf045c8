package kubetest

import (
	"errors"
	"os"
	"syscall"
)

// tempBase is where cluster folders go: /dev/shm when it has room (etcd
// fsyncs every write, a no-op in memory), else the default temp folder.
func tempBase() string {
	var st syscall.Statfs_t
	if err := syscall.Statfs("/dev/shm", &st); err == nil && st.Bavail*uint64(st.Bsize) > 1<<30 {
		if f, err := os.CreateTemp("/dev/shm", "kubetest-probe-"); err == nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
			return "/dev/shm"
		}
	}
	return os.TempDir()
}

// processAlive reports whether a process with that pid exists (signal 0).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

package testenv_test

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/outposthq/outpost/libs/testenv"
)

// envChild makes the test binary play a child process of the tests.
const envChild = "TESTENV_CHILD"

// childSpec runs the test binary as a child in role.
func childSpec(name, role string) testenv.Spec {
	return testenv.Spec{Name: name, Path: os.Args[0], Env: append(os.Environ(), envChild+"="+role)}
}

// child plays role and returns the exit status:
//   - serve: prints "ready", exits 0 on SIGTERM after printing "bye";
//   - stubborn: prints "ready" and ignores SIGTERM;
//   - fail: prints "failing" and exits 3;
//   - stdin: prints "ready" and exits when its standard input ends or on
//     SIGTERM;
//   - group: starts a serve child that stays in its process group, prints
//     "grandchild <pid>", and serves;
//   - parent: launches a serve child with testenv.Launch, prints
//     "grandchild <pid>" and serves.
func child(role string) int {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	switch role {
	case "serve":
		fmt.Println("ready")
		<-term
		fmt.Println("bye")
		return 0
	case "stubborn":
		fmt.Println("ready")
		<-time.After(time.Hour)
		return 0
	case "fail":
		fmt.Println("failing")
		return 3
	case "stdin":
		fmt.Println("ready")
		closed := make(chan struct{})
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			close(closed)
		}()
		select {
		case <-closed:
			fmt.Println("stdin closed")
		case <-term:
		}
		return 0
	case "group":
		spec := childSpec("grandchild", "serve")
		cmd := exec.Command(spec.Path)
		cmd.Env = spec.Env
		if err := cmd.Start(); err != nil {
			fmt.Println("start:", err)
			return 1
		}
		fmt.Println("grandchild " + strconv.Itoa(cmd.Process.Pid))
		<-term
		return 0
	case "parent":
		p, err := testenv.Launch(childSpec("grandchild", "serve"))
		if err != nil {
			fmt.Println("launch:", err)
			return 1
		}
		fmt.Println("grandchild " + strconv.Itoa(p.Pid()))
		<-term
		return 0
	}
	fmt.Println("unknown role", role)
	return 2
}

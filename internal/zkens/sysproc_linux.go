package zkens

import "syscall"

// procAttr: Pdeathsig kills the JVM if the test binary dies without running cleanups (a
// timeout panic, a SIGKILL); Setpgid keeps terminal signals meant for `go test` off the
// JVM's own handlers so that we decide how it stops.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}

// sigStop and sigCont pause and resume a member.
const sigStop, sigCont = syscall.SIGSTOP, syscall.SIGCONT

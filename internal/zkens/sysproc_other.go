//go:build !linux && !windows

package zkens

import "syscall"

// procAttr: without Pdeathsig (Linux only), a JVM outlives a test binary that dies
// without running its cleanups.
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// sigStop and sigCont pause and resume a member.
const sigStop, sigCont = syscall.SIGSTOP, syscall.SIGCONT

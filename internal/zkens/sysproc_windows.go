package zkens

import "syscall"

func procAttr() *syscall.SysProcAttr { return nil }

// sigStop and sigCont: Windows cannot pause a process with a signal; Pause and Resume
// fail there.
const sigStop, sigCont = syscall.Signal(-1), syscall.Signal(-1)

//go:build linux

package proxy

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// again reports a non-blocking read or write that should just be retried later.
func again(err error) bool { return errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) }

// osErr names a failed system call the way net errors read.
func osErr(op string, err error) error {
	var en syscall.Errno
	if errors.As(err, &en) && (en == unix.ECONNRESET || en == unix.EPIPE) {
		return &net.OpError{Op: op, Net: "tcp", Err: err}
	}
	return fmt.Errorf("%s: %w", op, err)
}

// detach takes a connected socket out of Go's poller: the relay loop owns a duplicate of
// its descriptor (non-blocking, like the original) and the net.Conn is closed.
func detach(nc net.Conn) (int, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		nc.Close()
		return -1, fmt.Errorf("%T has no descriptor", nc)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		nc.Close()
		return -1, err
	}
	fd := -1
	var derr error
	if err := raw.Control(func(f uintptr) { fd, derr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		nc.Close()
		return -1, err
	}
	nc.Close()
	if derr != nil {
		return -1, fmt.Errorf("dup: %w", derr)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// sockRead and sockWrite are recvfrom(2) and sendto(2) on a non-blocking socket, as
// HAProxy calls them: they go straight to the socket layer, without read(2)'s and
// write(2)'s file bookkeeping, and never block, so they skip the runtime's bookkeeping
// for system calls that might.
func sockRead(fd int, p []byte) (int, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)),
		unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

func sockWrite(fd int, p []byte) (int, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)),
		unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// closeFD closes a descriptor that never reached a loop.
func closeFD(fd int) { unix.Close(fd) }

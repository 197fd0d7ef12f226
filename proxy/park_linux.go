//go:build linux

package proxy

import (
	"errors"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// How a relay loop waits in Go's poller instead of in epoll_wait: always with a single P
// (parkWait), and when idle otherwise (parkIdle). The loop itself is in loop_linux.go.

// parkWait is wait with a single P: when nothing is ready it parks the goroutine in Go's
// poller until the epoll descriptor is readable (events are ready) or the sweep is due.
func (l *loop) parkWait() (int, error) {
	if w := l.rest(); w > 0 {
		l.doze(w)
	}
	n, err := unix.EpollWait(l.epfd, l.events, 0)
	l.now = time.Now()
	l.observe(l.now)
	if n > 0 || err != nil && !errors.Is(err, unix.EINTR) {
		return max(n, 0), err
	}
	if !l.parkUntil.Equal(l.nextSweep) {
		l.park.SetReadDeadline(l.nextSweep)
		l.parkUntil = l.nextSweep
	}
	return l.parked(l.parkRaw)
}

// parked waits in Go's poller on raw (the epoll descriptor, or a duplicate of it) until
// events are ready or its read deadline passes, and returns the events tryPoll took.
func (l *loop) parked(raw syscall.RawConn) (int, error) {
	l.ready, l.pollErr = 0, nil
	err := raw.Read(l.poll)
	l.now = time.Now()
	l.observe(l.now)
	if l.ready > 0 || l.pollErr != nil {
		return l.ready, l.pollErr
	}
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		return 0, nil
	}
	return 0, err
}

// tryPoll runs whenever Go's poller reports the epoll descriptor readable: true once
// events are ready (or epoll_wait failed), false to park again. It is bound once (l.poll)
// so that parking allocates nothing.
func (l *loop) tryPoll(uintptr) bool {
	n, err := unix.EpollWait(l.epfd, l.events, 0)
	if errors.Is(err, unix.EINTR) {
		return false
	}
	l.ready, l.pollErr = max(n, 0), err
	return n > 0 || err != nil
}

// parkIdle is wait for a loop that saw nothing for a whole sweep period: it parks in
// Go's poller on a duplicate of its epoll descriptor until events come or the sweep is
// due, so that no P sits in a system call. An idle loop that blocked in epoll_wait
// instead would have its P taken back by sysmon every 10 ms, and sysmon would then poll
// every 20 µs for a while: 600 wakeups a second for an idle zkgate (BENCHMARKS.md). A
// busy loop does not park: each park and wakeup restarts sysmon's fast polling.
func (l *loop) parkIdle() (int, error) {
	l.yielded = l.now
	if n, err := l.epollWait(0); n > 0 || err != nil {
		return n, err
	}
	fd, err := unix.FcntlInt(uintptr(l.epfd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return l.epollWait(int(sweepPeriod / time.Millisecond))
	}
	// The duplicate shares the epoll descriptor's O_NONBLOCK (set in newLoop), so Go's
	// poller takes it; closing it takes it out of the poller again.
	f := os.NewFile(uintptr(fd), "epoll")
	defer f.Close()
	raw, err := f.SyscallConn()
	if err != nil {
		return l.epollWait(int(sweepPeriod / time.Millisecond))
	}
	f.SetReadDeadline(l.nextSweep)
	return l.parked(raw)
}
